"""Several real ``eventctl serve`` instances on one PostgreSQL database: one truth (SPEC §1, §4)."""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import (
    SCRIPTED,
    ServerFactory,
    ServerProcess,
    SettingValue,
    wait_for_status,
    wait_until,
)
from tests.postgres_support import PrivatePostgres

pytestmark = pytest.mark.anyio

EVENTS = 900


def start_instances(
    servers: ServerFactory, count: int, tmp_path: Path, **settings: SettingValue
) -> list[ServerProcess]:
    """``count`` instances sharing ``DATABASE_URL``, started together; instance i logs its attempts to
    ``attempts-i.jsonl``."""
    return started_together(
        [
            servers.start_with(
                {"HANDLER": SCRIPTED, "ATTEMPT_LOG": tmp_path / f"attempts-{i}.jsonl", **settings}, wait_ready=False
            )
            for i in range(count)
        ]
    )


def started_together(starting: list[ServerProcess]) -> list[ServerProcess]:
    for server in starting:
        server.wait_listening()
    return starting


def listening(server: ServerProcess) -> bool:
    return "eventctl listening" in server.log


def is_ready(server: ServerProcess) -> bool:
    return server.client.get("/ready").status_code == 200


def stored_statuses(client: httpx.Client) -> dict[str, str]:
    """Every stored event's status, read a page of 500 at a time."""
    statuses: dict[str, str] = {}
    cursor = None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = client.get("/events", params=params).json()
        statuses.update((item["event_id"], item["status"]) for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return statuses


def attempts_by_instance(tmp_path: Path, count: int) -> list[list[dict[str, Any]]]:
    logs = [tmp_path / f"attempts-{i}.jsonl" for i in range(count)]
    return [[orjson.loads(line) for line in log.read_bytes().splitlines()] if log.exists() else [] for log in logs]


async def test_500_concurrent_posts_of_one_id_over_three_instances_give_one_202(
    servers: ServerFactory, pg_url: str, tmp_path: Path
) -> None:
    instances = start_instances(servers, 3, tmp_path, DATABASE_URL=pg_url)
    limits = httpx.Limits(max_connections=500)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{instances[i % 3].url}/events", json={"event_id": "one-truth", "payload": {"i": i}})
                for i in range(500)
            )
        )
    assert collections.Counter(r.status_code for r in responses) == {202: 1, 409: 499}


async def test_900_events_over_three_instances_are_each_processed_once_by_all_of_them(
    servers: ServerFactory, pg_url: str, tmp_path: Path
) -> None:
    """Enough events that every instance's claims race the others' all the time (three workers of eight
    slots, handlers of 2 ms): no event is claimed twice, none is missed, and every instance takes part."""
    instances = start_instances(servers, 3, tmp_path, DATABASE_URL=pg_url, WORKER_CONCURRENCY=8)
    payload = {"sleep_s": 0.002}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=48)) as client:
        semaphore = asyncio.Semaphore(48)

        async def post(i: int) -> int:
            async with semaphore:
                url = f"{instances[i % 3].url}/events"
                return (await client.post(url, json={"event_id": f"e{i}", "payload": payload})).status_code

        codes = await asyncio.gather(*(post(i) for i in range(EVENTS)))
    assert set(codes) == {202}

    def all_processed() -> bool:
        page = instances[0].client.get("/events", params={"status": "processed", "limit": 1}).json()
        processed = sum(1 for _ in itertools.chain.from_iterable(attempts_by_instance(tmp_path, 3)))
        return bool(page["items"]) and processed >= EVENTS

    wait_until(all_processed, timeout=120, message=f"{EVENTS} events to be processed")
    wait_until(lambda: instances[0].client.get("/events", params={"status": "accepted"}).json()["items"] == [])
    per_instance = attempts_by_instance(tmp_path, 3)
    assert all(per_instance), [len(attempts) for attempts in per_instance]  # every instance processed some
    attempts = [entry for entries in per_instance for entry in entries]
    assert len(attempts) == EVENTS
    assert {entry["event_id"] for entry in attempts} == {f"e{i}" for i in range(EVENTS)}
    assert {entry["attempt"] for entry in attempts} == {1}
    for i in range(0, EVENTS, 45):
        event = instances[i % 3].client.get(f"/events/e{i}").json()
        assert (event["status"], event["attempts"]) == ("processed", 1)


async def test_events_held_by_a_killed_instance_are_processed_by_the_others(
    servers: ServerFactory, pg_url: str, tmp_path: Path
) -> None:
    [doomed] = start_instances(servers, 1, tmp_path, DATABASE_URL=pg_url, LEASE_SECONDS=2)
    for i in range(6):  # the first attempt hangs: the doomed instance holds all six when it dies
        doomed.client.post("/events", json={"event_id": f"held{i}", "payload": {"sleep_s": 600, "sleep_attempts": 1}})
    for i in range(6):
        wait_for_status(doomed.client, f"held{i}", "processing")
    survivors = started_together(
        [
            servers.start(
                wait_ready=False,
                HANDLER=SCRIPTED,
                DATABASE_URL=pg_url,
                LEASE_SECONDS=2,
                ATTEMPT_LOG=tmp_path / f"attempts-{i}.jsonl",
            )
            for i in (1, 2)
        ]
    )
    doomed.kill()
    for i in range(6):
        event = wait_for_status(survivors[i % 2].client, f"held{i}", "processed", timeout=60)
        assert event["attempts"] == 2
    _, *survivor_attempts = attempts_by_instance(tmp_path, 3)
    assert sorted(e["event_id"] for entries in survivor_attempts for e in entries) == [f"held{i}" for i in range(6)]


async def test_three_instances_starting_together_on_an_empty_database_make_one_schema(
    servers: ServerFactory, pg_url: str
) -> None:
    starting = [servers.start(wait_ready=False, DATABASE_URL=pg_url) for _ in range(3)]
    for server in starting:
        wait_until(functools.partial(listening, server), message="every instance to start")
        assert "Traceback" not in server.log
        assert "ERROR" not in server.log
    conn = await asyncpg.connect(pg_url)
    try:
        versions = [row["version"] for row in await conn.fetch("SELECT version FROM eventctl_schema ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == list(range(1, len(versions) + 1))
    assert versions


async def test_postgresql_stopped_under_load_loses_no_accepted_event_and_service_recovers_by_itself(
    servers: ServerFactory, private_postgres: PrivatePostgres
) -> None:
    """A claim whose completion the outage cut off is taken again when its lease ends: a short one, so that
    the wait for every event to be processed is seconds, not the default 30."""
    settings: dict[str, SettingValue] = {
        "DATABASE_URL": private_postgres.url,
        "PROCESSING_DELAY_MS": 0,
        "LEASE_SECONDS": 2,
    }
    instances = started_together([servers.start_with(settings, wait_ready=False) for _ in range(2)])
    accepted: set[str] = set()
    codes: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()
    counter = itertools.count()

    async def sender(client: httpx.AsyncClient, url: str) -> None:
        while not stop.is_set():
            event_id = f"load{next(counter)}"
            response = await client.post(f"{url}/events", json={"event_id": event_id})
            codes[response.status_code] += 1
            if response.status_code == 202:
                accepted.add(event_id)
            elif response.status_code == 503:
                assert response.headers["retry-after"]
                assert response.headers["content-type"] == "application/problem+json"
                await asyncio.sleep(0.05)

    async with httpx.AsyncClient(timeout=30) as client:
        senders = [asyncio.create_task(sender(client, instances[i % 2].url)) for i in range(16)]
        await asyncio.sleep(1)
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(1)
        ready_codes = {(await client.get(f"{server.url}/ready")).status_code for server in instances}
        await asyncio.to_thread(private_postgres.start)
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*senders)

    assert ready_codes == {503}  # not ready while the database was down
    assert set(codes) <= {202, 503}  # never a 500
    assert codes[503] > 0, "the outage was not felt"
    for server in instances:
        wait_until(functools.partial(is_ready, server), message="ready again")
        assert server.client.post("/events", json={"event_id": f"after-{server.url}"}).status_code == 202
    client0 = instances[0].client
    assert accepted <= stored_statuses(client0).keys()  # nothing accepted was lost

    def all_processed() -> bool:  # one listing per poll, not one per accepted event
        statuses = stored_statuses(client0)
        return all(statuses[event_id] == "processed" for event_id in accepted)

    wait_until(
        all_processed,
        timeout=60,
        message="every accepted event to be processed after the outage",
    )
