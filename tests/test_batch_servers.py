"""``POST /events/batch`` on real servers keeps every guarantee of ``POST /events``: killed with SIGKILL under
a batch load it loses no item a received answer reported 202 (and keeps a batch's accepted items together),
and concurrent batches over two instances sharing PostgreSQL give exactly one 202 per id."""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory

pytestmark = pytest.mark.anyio

BATCH = 20


async def _post_batches_until_killed(url: str, kill: asyncio.Event) -> tuple[set[str], list[list[str]]]:
    """Post batches of distinct events from 8 connections until ``kill`` is set; return the ids that a
    received answer reported 202, and the batches whose answer never came."""
    accepted: set[str] = set()
    unanswered: list[list[str]] = []
    counter = itertools.count()

    async def sender(client: httpx.AsyncClient) -> None:
        while True:
            ids = [f"kb_{next(counter)}" for _ in range(BATCH)]
            events = [{"event_id": event_id, "payload": {"id": event_id}} for event_id in ids]
            try:
                response = await client.post("/events/batch", json={"events": events})
            except httpx.TransportError:
                unanswered.append(ids)
                return
            if response.status_code == 200:
                accepted.update(r["event_id"] for r in response.json()["results"] if r["status"] == 202)
            if kill.is_set():
                return

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(8)))
    return accepted, unanswered


async def test_sigkill_during_a_batch_load_loses_no_item_reported_202(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=100, WORKER_CONCURRENCY=4)
    kill = asyncio.Event()
    posting = asyncio.create_task(_post_batches_until_killed(server.url, kill))
    await asyncio.sleep(1.5)
    server.signal(signal.SIGKILL)
    kill.set()
    accepted, unanswered = await posting
    server.wait(10)
    assert len(accepted) > 5 * BATCH, "the load did not get going before the kill"

    client = servers.start(PROCESSING_DELAY_MS=600_000).client
    missing = [event_id for event_id in accepted if client.get(f"/events/{event_id}").status_code != 200]
    assert missing == []
    for ids in unanswered:  # committed together: all of a batch, or none of it
        stored = sum(client.get(f"/events/{event_id}").status_code == 200 for event_id in ids)
        assert stored in (0, BATCH), f"{stored} of an unanswered batch of {BATCH} were stored"


async def post_until_answered(client: httpx.AsyncClient, url: str, ids: list[str]) -> httpx.Response:
    """Post the batch; a 503 (nothing of it stored) is retried as a client would, after a short pause.

    Overlapping batches can deadlock in PostgreSQL (each holds an id the other inserts); the database aborts
    one of them, whose batch is then a 503 with nothing stored."""
    for _ in range(20):
        response = await client.post(url, json={"events": [{"event_id": event_id} for event_id in ids]})
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.05)
    return response


async def test_concurrent_overlapping_batches_over_two_instances_give_one_202_per_id(
    servers: ServerFactory, pg_url: str, tmp_path: Path
) -> None:
    instances = [servers.start(DATABASE_URL=pg_url, PROCESSING_DELAY_MS=600_000) for _ in range(2)]
    pool = [f"overlap_{i}" for i in range(60)]
    shuffled = random.Random(7)
    batches = [shuffled.sample(pool, 20) for _ in range(12)]
    batches += [pool[i : i + 20] for i in range(0, len(pool), 20)]  # every id is sent at least once
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(post_until_answered(client, f"{instances[i % 2].url}/events/batch", ids) for i, ids in enumerate(batches))
        )
    accepted = collections.Counter(
        result["event_id"] for response in responses for result in response.json()["results"] if result["status"] == 202
    )
    assert accepted == collections.Counter(pool)
    duplicates = sum(response.json()["duplicates"] for response in responses)
    assert duplicates == sum(len(ids) for ids in batches) - len(pool)
