"""Group commit keeps every promise: one transaction for many requests, and an answer per request only
after that transaction's fate is known."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import httpx
import pytest

from tests.conftest import ServerFactory

pytestmark = pytest.mark.anyio


async def test_a_failed_transaction_answers_503_to_every_request_in_it_and_stores_none(
    servers: ServerFactory,
) -> None:
    """Another process holds the database's write lock past the writer's busy timeout, so the batch's
    transaction fails: every request in it gets 503 with Retry-After, none 202, and nothing is stored."""
    server = servers.start(PROCESSING_DELAY_MS=0)
    database = servers.database_url.removeprefix("sqlite:///")
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
    locked.wait(10)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            responses = await asyncio.gather(
                *(client.post("/events", json={"event_id": f"blocked{i}"}) for i in range(50))
            )
    finally:
        release.set()
        holder.join()
    assert {response.status_code for response in responses} == {503}
    assert all(int(response.headers["retry-after"]) >= 1 for response in responses)
    for i in range(50):
        assert server.client.get(f"/events/blocked{i}").status_code == 404
    assert server.client.post("/events", json={"event_id": "blocked0"}).status_code == 202  # it recovers
