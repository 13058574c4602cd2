"""A 202 is a promise: killed with SIGKILL at any moment, the server loses nothing it accepted."""

from __future__ import annotations

import asyncio
import itertools
import signal

import httpx
import pytest

from tests.conftest import ServerFactory, event_status, wait_until

pytestmark = pytest.mark.anyio


async def _post_until_killed(server_url: str, kill: asyncio.Event) -> tuple[set[str], set[str]]:
    """Post distinct events from 32 connections until ``kill`` is set; return the ids that got 202 and the
    ids whose answer never came (they may or may not be stored)."""
    accepted: set[str] = set()
    unanswered: set[str] = set()
    counter = itertools.count()

    async def sender(client: httpx.AsyncClient) -> None:
        while True:
            event_id = f"evt_{next(counter)}"
            try:
                response = await client.post("/events", json={"event_id": event_id, "payload": {"id": event_id}})
            except httpx.TransportError:
                unanswered.add(event_id)
                return
            if response.status_code == 202:
                accepted.add(event_id)
            if kill.is_set():
                return

    async with httpx.AsyncClient(base_url=server_url, timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(32)))
    return accepted, unanswered


async def test_sigkill_during_ingest_loses_no_accepted_event(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=100, WORKER_CONCURRENCY=4)
    kill = asyncio.Event()
    posting = asyncio.create_task(_post_until_killed(server.url, kill))
    await asyncio.sleep(1.5)
    server.signal(signal.SIGKILL)
    kill.set()
    accepted, _ = await posting
    server.wait(10)
    assert len(accepted) > 100, "the load did not get going before the kill"

    restarted = servers.start(PROCESSING_DELAY_MS=0)
    client = restarted.client
    missing = [event_id for event_id in accepted if client.get(f"/events/{event_id}").status_code != 200]
    assert missing == []
    for event_id in itertools.islice(accepted, 50):
        assert client.post("/events", json={"event_id": event_id}).status_code == 409
    wait_until(
        lambda: all(event_status(client, event_id) == "processed" for event_id in accepted),
        timeout=60,
        message="every accepted event to be processed after the restart",
    )


def test_events_held_by_a_killed_worker_are_processed_after_restart(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=60_000, WORKER_CONCURRENCY=2)
    for i in range(5):
        assert server.client.post("/events", json={"event_id": f"e{i}"}).status_code == 202
    wait_until(lambda: event_status(server.client, "e0") == "processing", message="e0 to be claimed")
    server.kill()

    restarted = servers.start(PROCESSING_DELAY_MS=0)
    wait_until(
        lambda: all(event_status(restarted.client, f"e{i}") == "processed" for i in range(5)),
        message="all five events to be processed",
    )
    assert restarted.client.get("/events/e0").json()["attempts"] == 2  # the killed attempt counts
    assert restarted.client.get("/events/e4").json()["attempts"] == 1
