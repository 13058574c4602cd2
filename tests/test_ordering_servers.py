"""Ordering keys with real ``eventctl serve`` processes (SPEC §12): one at a time per key in acceptance
order across three instances sharing PostgreSQL; and after a kill -9 in the middle of a key, its head runs
again and the key goes on in order, on SQLite (restarted) and on PostgreSQL (another instance takes over)."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from eventctl.domain import AttemptOutcome
from eventctl.store import open_store
from tests.conftest import SCRIPTED, ServerFactory, ServerProcess, event_status, wait_until

pytestmark = pytest.mark.anyio

WORK_SECONDS = 0.05  # each keyed event's handler time: the next one of its key may start only after it


def attempt_log(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def wait_for_all(server: ServerProcess, event_ids: list[str], status: str = "processed") -> None:
    def done() -> bool:
        return all(event_status(server.client, event_id) == status for event_id in event_ids)

    wait_until(done, timeout=120, message=f"{len(event_ids)} events to be {status}")


async def test_three_instances_on_postgres_run_each_key_one_at_a_time_in_order(
    servers: ServerFactory, pg_url: str, tmp_path: Path
) -> None:
    logs = [tmp_path / f"attempts-{i}.jsonl" for i in range(3)]
    instances = [servers.start(DATABASE_URL=pg_url, HANDLER=SCRIPTED, ATTEMPT_LOG=str(log)) for log in logs]
    keys = [f"customer-{name}" for name in "abc"]
    accepted: dict[str, list[str]] = defaultdict(list)
    async with httpx.AsyncClient(timeout=30) as client:

        async def send_key(key: str) -> None:
            for i in range(12):  # one after the other: each 202 is the acceptance order
                event_id = f"{key}-{i:02d}"
                url = f"{instances[i % 3].url}/events"
                body = {"event_id": event_id, "ordering_key": key, "payload": {"sleep_s": WORK_SECONDS}}
                assert (await client.post(url, json=body)).status_code == 202
                accepted[key].append(event_id)

        async def send_plain() -> None:
            for i in range(30):
                body = {"event_id": f"plain-{i:02d}", "payload": {"sleep_s": WORK_SECONDS}}
                assert (await client.post(f"{instances[i % 3].url}/events", json=body)).status_code == 202

        await asyncio.gather(*(send_key(key) for key in keys), send_plain())
    every_id = [*itertools.chain.from_iterable(accepted.values()), *(f"plain-{i:02d}" for i in range(30))]
    wait_for_all(instances[0], every_id)

    runs = sorted((entry for log in logs for entry in attempt_log(log)), key=lambda entry: entry["time"])
    instances_of_keyed = {
        i for i, log in enumerate(logs) for e in attempt_log(log) if e["event_id"] in accepted[keys[0]]
    }
    for key in keys:
        keyed = [entry for entry in runs if entry["event_id"].startswith(f"{key}-")]
        assert [entry["event_id"] for entry in keyed] == accepted[key]
        for earlier, later in itertools.pairwise(keyed):  # each started after the one before had worked
            assert later["time"] - earlier["time"] >= WORK_SECONDS * 0.9, (earlier, later)
    assert len(runs) == len(every_id)  # each once: nothing ran twice
    assert len(instances_of_keyed) > 1  # a key's events were processed by more than one instance


def scripted_key(key: str, head_seconds: float) -> list[dict[str, Any]]:
    """A head that works ``head_seconds`` on its first attempt (and at once on the next), then followers."""
    head = {"event_id": f"{key}-head", "ordering_key": key, "payload": {"sleep_s": head_seconds, "sleep_attempts": 1}}
    followers = [{"event_id": f"{key}-f{i}", "ordering_key": key} for i in range(1, 4)]
    return [head, *followers]


async def test_after_a_kill_mid_key_on_sqlite_the_restarted_server_runs_the_head_again_then_the_rest(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "attempts.jsonl"
    server = servers.start(HANDLER=SCRIPTED, ATTEMPT_LOG=str(log))
    bodies = scripted_key("k", head_seconds=60)
    for body in bodies:
        assert server.client.post("/events", json=body).status_code == 202
    wait_until(lambda: len(attempt_log(log)) == 1, message="the head to start")
    server.kill()

    restarted = servers.start(HANDLER=SCRIPTED, ATTEMPT_LOG=str(log))
    ids = [body["event_id"] for body in bodies]
    wait_for_all(restarted, ids)
    assert [(entry["event_id"], entry["attempt"]) for entry in attempt_log(log)] == [
        ("k-head", 1),
        ("k-head", 2),
        ("k-f1", 1),
        ("k-f2", 1),
        ("k-f3", 1),
    ]
    restarted.signal(signal.SIGTERM)
    assert restarted.wait(timeout=30) == 0
    store = open_store(servers.database_url)  # the file is free again: read the history it kept
    await store.open()
    try:
        attempts = await store.attempts("k-head")
    finally:
        await store.close()
    assert attempts is not None
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, AttemptOutcome.LOST), (2, AttemptOutcome.PROCESSED)]


async def test_after_a_kill_mid_key_on_postgres_another_instance_runs_the_head_again_then_the_rest(
    servers: ServerFactory, pg_url: str, tmp_path: Path
) -> None:
    logs = [tmp_path / f"attempts-{i}.jsonl" for i in range(2)]

    def start(log: Path) -> ServerProcess:
        return servers.start(DATABASE_URL=pg_url, HANDLER=SCRIPTED, LEASE_SECONDS=2, ATTEMPT_LOG=str(log))

    first = start(logs[0])
    bodies = scripted_key("k", head_seconds=60)
    assert first.client.post("/events", json=bodies[0]).status_code == 202
    wait_until(lambda: len(attempt_log(logs[0])) == 1, message="the head to start on the first instance")
    second = start(logs[1])
    for body in bodies[1:]:
        assert second.client.post("/events", json=body).status_code == 202
    first.kill()

    ids = [body["event_id"] for body in bodies]
    wait_for_all(second, ids)
    assert [(entry["event_id"], entry["attempt"]) for entry in attempt_log(logs[1])] == [
        ("k-head", 2),
        ("k-f1", 1),
        ("k-f2", 1),
        ("k-f3", 1),
    ]
    store = open_store(pg_url)
    await store.open()
    try:
        attempts = await store.attempts("k-head")
    finally:
        await store.close()
    assert attempts is not None
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, AttemptOutcome.LOST), (2, AttemptOutcome.PROCESSED)]
