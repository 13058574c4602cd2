"""Group commit keeps every promise: one transaction for many requests, and an answer per request only
after that transaction's fate is known (the real app in process, on a SQLite file)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.inprocess import running_app

pytestmark = pytest.mark.anyio


async def test_a_failed_transaction_answers_503_to_every_request_in_it_and_stores_none(tmp_path: Path) -> None:
    """Another connection holds the database's write lock past the writer's busy timeout, so the batch's
    transaction fails: every request in it gets 503 with Retry-After, none 202, and nothing is stored."""
    database = tmp_path / "events.db"
    async with running_app(database_url=f"sqlite:///{database}") as running:
        client = running.client
        locked, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            blocker = sqlite3.connect(database, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(30)
            blocker.execute("ROLLBACK")
            blocker.close()

        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        await asyncio.to_thread(locked.wait, 10)
        try:
            responses = await asyncio.gather(
                *(client.post("/events", json={"event_id": f"blocked{i}"}) for i in range(50))
            )
        finally:
            release.set()
            await asyncio.to_thread(holder.join)
        assert {response.status_code for response in responses} == {503}
        assert all(int(response.headers["retry-after"]) >= 1 for response in responses)
        for i in range(50):
            assert (await client.get(f"/events/blocked{i}")).status_code == 404
        assert (await client.post("/events", json={"event_id": "blocked0"})).status_code == 202  # it recovers
