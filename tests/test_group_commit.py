"""Group commit keeps every promise: one transaction for many requests, and an answer per request only
after that transaction's fate is known (the real app in process, on a SQLite file)."""

from __future__ import annotations

import asyncio
import contextlib
import os
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


async def test_a_202_waits_for_the_fsync_that_covers_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert is committed (another connection reads it) while the WAL's fsync is held back: the 202 is
    not sent until that fsync returns."""
    database = tmp_path / "events.db"
    synced, entered = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync

    def held_fdatasync(descriptor: int) -> None:
        entered.set()
        synced.wait(30)
        real_fdatasync(descriptor)

    async with running_app(database_url=f"sqlite:///{database}") as running:
        monkeypatch.setattr(os, "fdatasync", held_fdatasync)
        posting = asyncio.ensure_future(running.client.post("/events", json={"event_id": "held"}))
        try:
            assert await asyncio.to_thread(entered.wait, 10)

            def status() -> str | None:
                with contextlib.closing(sqlite3.connect(database)) as conn:
                    row = conn.execute("SELECT status FROM events WHERE event_id = 'held'").fetchone()
                return None if row is None else str(row[0])

            assert await asyncio.to_thread(status) == "accepted"  # committed before the fsync began
            await asyncio.sleep(0.3)
            assert not posting.done()
        finally:
            synced.set()
        assert (await posting).status_code == 202
