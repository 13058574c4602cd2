"""Seeing what is stored: keyset pagination and the status filter; and retention, which frees ids. On the
real app in process, with a SQLite file where retention works on one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventctl.domain import NewEvent, Status
from eventctl.store import Store
from tests.conftest import SCRIPTED
from tests.inprocess import event_status, running_app, wait_for_status, wait_until

pytestmark = pytest.mark.anyio


async def walk(client: httpx.AsyncClient, **params: str | int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/events", params=query)).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_250_events_walked_page_by_page_come_once_each_newest_first() -> None:
    async with running_app() as running:
        event_ids = [f"p{i:03d}" for i in range(250)]
        for event_id in event_ids:
            assert (await running.client.post("/events", json={"event_id": event_id})).status_code == 202
        items = await walk(running.client, limit=40)
    assert [item["event_id"] for item in items] == list(reversed(event_ids))
    assert set(items[0]) >= {"event_id", "status", "payload", "attempts", "received_at"}


async def test_the_status_filter_lists_only_that_status() -> None:
    async with running_app(handler=SCRIPTED) as running:
        client = running.client
        for i in range(30):
            payload = {"permanent": True} if i % 3 == 0 else {}
            await client.post("/events", json={"event_id": f"s{i}", "payload": payload})
        for i in range(30):
            await wait_for_status(client, f"s{i}", "processed", "failed")
        failed = await walk(client, status="failed", limit=4)
        assert sorted(item["event_id"] for item in failed) == sorted(f"s{i}" for i in range(0, 30, 3))
        assert {item["status"] for item in failed} == {"failed"}
        assert len(await walk(client, status="processed", limit=7)) == 20
        assert await walk(client, status="retrying") == []


@pytest.mark.parametrize(
    "query",
    [
        {"status": "lost"},
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"cursor": "not-a-cursor"},
        {"cursor": "1" * 19},
    ],
)
async def test_bad_list_parameters_are_400_problems(query: dict[str, str | int]) -> None:
    async with running_app() as running:
        response = await running.client.get("/events", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]


async def test_retention_deletes_processed_events_frees_their_ids_and_keeps_failed_ones(tmp_path: Path) -> None:
    async with running_app(
        handler=SCRIPTED, retention=1.0, database_url=f"sqlite:///{tmp_path / 'events.db'}"
    ) as running:
        client = running.client
        await client.post("/events", json={"event_id": "kept", "payload": {"permanent": True}})
        for i in range(20):
            await client.post("/events", json={"event_id": f"old{i}"})
        await wait_for_status(client, "kept", "failed")

        async def pruned() -> bool:
            statuses = await asyncio.gather(*(event_status(client, f"old{i}") for i in range(20)))
            return all(status is None for status in statuses)

        await wait_until(pruned, message="pruning")
        assert (await client.post("/events", json={"event_id": "old0"})).status_code == 202  # the id is free again
        assert await event_status(client, "kept") == "failed"


async def test_ingest_keeps_answering_while_a_large_prune_runs(tmp_path: Path) -> None:
    """3,000 events expire together; posts made while they are deleted in batches all get 202."""
    database_url = f"sqlite:///{tmp_path / 'events.db'}"
    async with running_app(
        handler=SCRIPTED, retention=2.0, worker_concurrency=64, database_url=database_url
    ) as running:
        client = running.client
        await asyncio.gather(*(running.store.add(NewEvent(f"bulk{i}", b"{}")) for i in range(3000)))
        await wait_until(
            lambda: all_processed(running.store, [f"bulk{i}" for i in range(3000)]), message="the bulk to be processed"
        )

        codes: list[int] = []
        stop = asyncio.Event()

        async def keep_posting() -> None:
            i = 0
            while not stop.is_set():
                codes.append((await client.post("/events", json={"event_id": f"during{i}"})).status_code)
                i += 1

        poster = asyncio.create_task(keep_posting())
        try:
            await wait_until(lambda: bulk_pruned(client), message="the bulk to be pruned")
        finally:
            stop.set()
            await poster
    assert codes
    assert set(codes) == {202}


async def all_processed(store: Store, event_ids: list[str]) -> bool:
    for event_id in event_ids:
        event = await store.get(event_id)
        if event is None or event.status is not Status.PROCESSED:
            return False
    return True


async def bulk_pruned(client: httpx.AsyncClient) -> bool:
    return await event_status(client, "bulk2999") is None
