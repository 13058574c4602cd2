"""Processing (SPEC §3): retries with backoff, dead letters, replay, leases and the concurrency bound, on the
real worker and a real store in process; restarts and kills on real servers."""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import sqlite3
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventctl.domain import NewEvent, Status
from eventctl.handlers import Delivery
from eventctl.worker import Backoff
from tests.conftest import SCRIPTED, ServerFactory, ServerProcess
from tests.conftest import wait_for_status as wait_for_server_status
from tests.conftest import wait_until as wait_until_on_server
from tests.inprocess import RecordingHandler, RunningWorker, running_app, running_worker, wait_for_status, wait_until

pytestmark = pytest.mark.anyio

QUICK_RETRIES: dict[str, Any] = {"retry_backoff_ms": 10, "retry_backoff_max_ms": 50}


@pytest.mark.parametrize("handler", [SCRIPTED, "tests.scripted_handlers:scripted_sync"])
async def test_a_handler_failing_k_times_then_succeeding_ends_processed_with_k_plus_1_attempts(handler: str) -> None:
    async with running_app(handler=handler, max_attempts=5, **QUICK_RETRIES) as running:
        for k in range(4):
            await running.client.post("/events", json={"event_id": f"k{k}", "payload": {"fail_times": k}})
        for k in range(4):
            event = await wait_for_status(running.client, f"k{k}", "processed")
            assert event["attempts"] == k + 1
            assert event["last_error"] is None


async def test_a_handler_that_always_fails_dead_letters_after_exactly_max_attempts() -> None:
    async with running_app(handler=SCRIPTED, max_attempts=3, **QUICK_RETRIES) as running:
        await running.client.post("/events", json={"event_id": "doomed", "payload": {"fail_times": 1000}})
        event = await wait_for_status(running.client, "doomed", "failed")
    assert event["attempts"] == 3
    assert event["last_error"] == "RuntimeError: scripted failure on attempt 3"
    assert event["next_attempt_at"] is None
    assert event["processed_at"] is None


async def test_a_permanent_error_fails_the_event_after_one_attempt() -> None:
    async with running_app(handler=SCRIPTED, max_attempts=5) as running:
        await running.client.post("/events", json={"event_id": "hopeless", "payload": {"permanent": True}})
        event = await wait_for_status(running.client, "hopeless", "failed")
    assert event["attempts"] == 1
    assert event["last_error"].startswith("PermanentError:")


async def test_while_retrying_the_event_shows_its_next_attempt_and_last_error() -> None:
    async with running_app(
        handler=SCRIPTED, max_attempts=2, retry_backoff_ms=600_000, retry_backoff_max_ms=600_000
    ) as running:
        await running.client.post("/events", json={"event_id": "later", "payload": {"fail_times": 1}})
        event = await wait_for_status(running.client, "later", "retrying")
    assert event["attempts"] == 1
    assert event["last_error"] == "RuntimeError: scripted failure on attempt 1"
    assert event["next_attempt_at"] >= event["updated_at"]


async def test_replaying_a_failed_event_processes_it(tmp_path: Path) -> None:
    fixed = tmp_path / "bug-fixed"
    async with running_app(handler=SCRIPTED, max_attempts=2, retry_backoff_ms=10, retry_backoff_max_ms=10) as running:
        client = running.client
        await client.post("/events", json={"event_id": "fixme", "payload": {"fail_unless_exists": str(fixed)}})
        await wait_for_status(client, "fixme", "failed")
        fixed.touch()
        response = await client.post("/events/fixme/replay")
        assert response.status_code == 202
        assert response.json() == {"event_id": "fixme", "status": "accepted"}
        assert response.headers["location"] == "/events/fixme"
        event = await wait_for_status(client, "fixme", "processed")
    assert event["attempts"] == 1  # attempts start again from zero on replay


async def test_replay_of_an_unknown_or_unfailed_event_is_refused() -> None:
    async with running_app() as running:
        client = running.client
        await client.post("/events", json={"event_id": "fine"})
        await wait_for_status(client, "fine", "processed")
        not_failed = await client.post("/events/fine/replay")
        assert not_failed.status_code == 409
        assert not_failed.headers["content-type"] == "application/problem+json"
        assert not_failed.json()["event_status"] == "processed"
        unknown = await client.post("/events/ghost/replay")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 70])
def test_backoff_is_uniform_up_to_base_times_two_to_the_attempt_and_never_beyond_the_cap(attempt: int) -> None:
    """Full jitter: the wait after attempt n is uniform in [0, min(cap, base * 2**(n-1))]. Over 4,000 draws
    (from a seeded generator, so the test is repeatable) the mean is within 5% of half the ceiling, and the
    draws use the whole range."""
    backoff = Backoff(base_seconds=0.2, max_seconds=0.8, rng=random.Random(attempt))
    ceiling = min(0.8, 0.2 * 2 ** (attempt - 1))
    delays = [backoff.delay(attempt) for _ in range(4000)]
    assert all(0 <= delay <= ceiling for delay in delays)
    assert abs(statistics.mean(delays) - ceiling / 2) < 0.05 * ceiling
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling


async def all_final(running: RunningWorker, event_ids: list[str]) -> bool:
    for event_id in event_ids:
        event = await running.store.get(event_id)
        if event is None or event.status not in (Status.PROCESSED, Status.FAILED):
            return False
    return True


async def test_the_worker_waits_the_backoff_between_attempts_and_the_waits_grow() -> None:
    """The gap before attempt n+1 stays under its ceiling (plus scheduling slack), and the mean gap across
    40 events grows from one attempt to the next until the cap (a false failure has a chance of about 1e-5)."""
    base, cap = 0.2, 0.8
    handler = RecordingHandler()
    async with running_worker(handler, concurrency=64, max_attempts=5, backoff=Backoff(base, cap)) as running:
        event_ids = [f"b{i}" for i in range(40)]
        for event_id in event_ids:
            await running.store.add(NewEvent(event_id, orjson.dumps({"fail_times": 4})))
        await wait_until(lambda: all_final(running, event_ids), message="every event to be processed")
        for event_id in event_ids:
            event = await running.store.get(event_id)
            assert event is not None
            assert (event.status, event.attempts) == (Status.PROCESSED, 5)

    gaps_by_attempt: dict[int, list[float]] = collections.defaultdict(list)
    for event_id in event_ids:
        attempts = handler.of(event_id)
        assert [attempt.attempt for attempt in attempts] == [1, 2, 3, 4, 5]
        for earlier, later in itertools.pairwise(attempts):
            gaps_by_attempt[earlier.attempt].append(later.started - earlier.finished)
    scheduling_slack = 1.0  # claim and wake-up latency on a busy machine, added to every gap
    for attempt, gaps in gaps_by_attempt.items():
        ceiling = min(cap, base * 2 ** (attempt - 1))
        assert all(0 <= gap <= ceiling + scheduling_slack for gap in gaps), (attempt, max(gaps))
    means = [statistics.mean(gaps_by_attempt[attempt]) for attempt in (1, 2, 3)]
    assert means[0] < means[1] < means[2], means


def test_restart_while_retrying_retries_after_the_restart_with_attempts_counted_on(
    servers: ServerFactory, tmp_path: Path
) -> None:
    attempt_log = tmp_path / "attempts.jsonl"

    def start() -> ServerProcess:
        return servers.start(
            HANDLER=SCRIPTED, ATTEMPT_LOG=str(attempt_log), RETRY_BACKOFF_MS=2000, RETRY_BACKOFF_MAX_MS=2000
        )

    server = start()
    server.client.post("/events", json={"event_id": "persistent", "payload": {"fail_times": 2}})
    wait_until_on_server(lambda: attempt_log.exists(), message="the first attempt to run")
    server.kill()
    killed_at = time.time()

    restarted = start()
    event = wait_for_server_status(restarted.client, "persistent", "processed")
    assert event["attempts"] == 3  # not reset by the restart
    attempts = [orjson.loads(line) for line in attempt_log.read_bytes().splitlines()]
    assert attempts[0]["attempt"] == 1
    assert attempts[0]["time"] < killed_at
    # The final, successful attempt is the third, and it ran after the restart.
    assert attempts[-1]["attempt"] == 3
    assert attempts[-1]["time"] > killed_at


def test_kill_9_during_a_slow_handler_runs_the_event_again_after_restart(servers: ServerFactory) -> None:
    server = servers.start(HANDLER=SCRIPTED)
    server.client.post("/events", json={"event_id": "slow", "payload": {"sleep_s": 60, "sleep_attempts": 1}})
    wait_for_server_status(server.client, "slow", "processing")
    server.kill()

    restarted = servers.start(HANDLER=SCRIPTED)
    event = wait_for_server_status(restarted.client, "slow", "processed")
    assert event["attempts"] == 2


async def test_a_running_handler_keeps_its_lease_alive() -> None:
    """A handler that runs for four leases is not claimed a second time: its lease is renewed."""
    handler = RecordingHandler()
    async with running_worker(handler, lease_seconds=0.3) as running:
        await running.store.add(NewEvent("long", orjson.dumps({"sleep_s": 1.2})))
        await wait_until(lambda: all_final(running, ["long"]), message="the event to be processed")
        event = await running.store.get("long")
    assert event is not None
    assert event.attempts == 1
    assert len(handler.of("long")) == 1


def test_a_handler_that_cannot_be_imported_stops_the_start_with_one_line(servers: ServerFactory) -> None:
    server = servers.start(wait_ready=False, HANDLER="tests.no_such_module:handler")
    assert server.wait(timeout=30) != 0
    assert "invalid HANDLER='tests.no_such_module:handler'" in server.log
    assert "Traceback" not in server.log


async def test_no_more_handlers_run_at_once_than_worker_concurrency() -> None:
    """Nine events that each take a fifth of a second, three slots: three run at once, never more."""
    handler = RecordingHandler()
    async with running_worker(handler, concurrency=3) as running:
        event_ids = [f"c{i}" for i in range(9)]
        for event_id in event_ids:
            await running.store.add(NewEvent(event_id, orjson.dumps({"sleep_s": 0.2})))
        await wait_until(lambda: all_final(running, event_ids), message="every event to be processed")
    assert len(handler.attempts) == 9
    assert handler.most_at_once == 3


async def test_a_store_that_cannot_write_for_a_while_delays_processing_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds the SQLite file's write lock past the busy timeout just as a handler
    finishes: its outcome cannot be recorded, and the worker cannot claim either. Both are retried, not
    fatal; once the lock is gone the event, whose lease ran out, runs again and is processed."""
    database = tmp_path / "events.db"
    proceed = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            await proceed.wait()

    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        blocker.execute("ROLLBACK")
        blocker.close()

    async with running_worker(handler, store_url=f"sqlite:///{database}", lease_seconds=1) as running:
        await running.store.add(NewEvent("stalled", b"{}"))
        await wait_until(lambda: handler_started(running), message="the first attempt to start")
        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        try:
            await asyncio.to_thread(locked.wait, 10)
            proceed.set()
            await wait_until(
                lambda: (
                    "could not record the outcome" in caplog.text and "store unavailable, claiming again" in caplog.text
                ),
                within=60,
                message="the worker to meet the locked store while recording and while claiming",
            )
        finally:
            release.set()
            await asyncio.to_thread(holder.join)
        await wait_until(lambda: all_final(running, ["stalled"]), message="the event to be processed")
        event = await running.store.get("stalled")
    assert event is not None
    assert (event.status, event.attempts) == (Status.PROCESSED, 2)


async def handler_started(running: RunningWorker) -> bool:
    event = await running.store.get("stalled")
    return event is not None and event.status is Status.PROCESSING
