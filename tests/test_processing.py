"""Processing (SPEC §3) with real handlers on real servers: retries with backoff, dead letters, replay,
leases and restarts."""

from __future__ import annotations

import collections
import itertools
import statistics
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import SCRIPTED, ServerFactory, wait_for_status, wait_until


@pytest.mark.parametrize("handler", [SCRIPTED, "tests.scripted_handlers:scripted_sync"])
def test_a_handler_failing_k_times_then_succeeding_ends_processed_with_k_plus_1_attempts(
    servers: ServerFactory, handler: str
) -> None:
    server = servers.start(HANDLER=handler, MAX_ATTEMPTS=5, RETRY_BACKOFF_MS=10, RETRY_BACKOFF_MAX_MS=50)
    for k in range(4):
        server.client.post("/events", json={"event_id": f"k{k}", "payload": {"fail_times": k}})
    for k in range(4):
        event = wait_for_status(server.client, f"k{k}", "processed")
        assert event["attempts"] == k + 1
        assert event["last_error"] is None


def test_a_handler_that_always_fails_dead_letters_after_exactly_max_attempts(servers: ServerFactory) -> None:
    server = servers.start(HANDLER=SCRIPTED, MAX_ATTEMPTS=3, RETRY_BACKOFF_MS=10, RETRY_BACKOFF_MAX_MS=50)
    server.client.post("/events", json={"event_id": "doomed", "payload": {"fail_times": 1000}})
    event = wait_for_status(server.client, "doomed", "failed")
    assert event["attempts"] == 3
    assert event["last_error"] == "RuntimeError: scripted failure on attempt 3"
    assert event["next_attempt_at"] is None
    assert event["processed_at"] is None


def test_a_permanent_error_fails_the_event_after_one_attempt(servers: ServerFactory) -> None:
    server = servers.start(HANDLER=SCRIPTED, MAX_ATTEMPTS=5)
    server.client.post("/events", json={"event_id": "hopeless", "payload": {"permanent": True}})
    event = wait_for_status(server.client, "hopeless", "failed")
    assert event["attempts"] == 1
    assert event["last_error"].startswith("PermanentError:")


def test_while_retrying_the_event_shows_its_next_attempt_and_last_error(servers: ServerFactory) -> None:
    server = servers.start(HANDLER=SCRIPTED, MAX_ATTEMPTS=2, RETRY_BACKOFF_MS=600_000, RETRY_BACKOFF_MAX_MS=600_000)
    server.client.post("/events", json={"event_id": "later", "payload": {"fail_times": 1}})
    event = wait_for_status(server.client, "later", "retrying")
    assert event["attempts"] == 1
    assert event["last_error"] == "RuntimeError: scripted failure on attempt 1"
    assert event["next_attempt_at"] >= event["updated_at"]


def test_replaying_a_failed_event_processes_it(servers: ServerFactory, tmp_path: Path) -> None:
    fixed = tmp_path / "bug-fixed"
    server = servers.start(HANDLER=SCRIPTED, MAX_ATTEMPTS=2, RETRY_BACKOFF_MS=10, RETRY_BACKOFF_MAX_MS=10)
    server.client.post("/events", json={"event_id": "fixme", "payload": {"fail_unless_exists": str(fixed)}})
    wait_for_status(server.client, "fixme", "failed")
    fixed.touch()
    response = server.client.post("/events/fixme/replay")
    assert response.status_code == 202
    assert response.json() == {"event_id": "fixme", "status": "accepted"}
    assert response.headers["location"] == "/events/fixme"
    event = wait_for_status(server.client, "fixme", "processed")
    assert event["attempts"] == 1  # attempts start again from zero on replay


def test_replay_of_an_unknown_or_unfailed_event_is_refused(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=0)
    server.client.post("/events", json={"event_id": "fine"})
    wait_for_status(server.client, "fine", "processed")
    not_failed = server.client.post("/events/fine/replay")
    assert not_failed.status_code == 409
    assert not_failed.headers["content-type"] == "application/problem+json"
    assert not_failed.json()["event_status"] == "processed"
    unknown = server.client.post("/events/ghost/replay")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


def _attempt_times(log_path: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = collections.defaultdict(list)
    for line in log_path.read_bytes().splitlines():
        entry = orjson.loads(line)
        times[entry["event_id"]].append(entry["time"])
    return times


def test_backoff_gaps_grow_and_stay_within_the_configured_bounds(servers: ServerFactory, tmp_path: Path) -> None:
    """Full jitter: the gap before attempt n+1 is uniform in [0, min(cap, base * 2**(n-1))]. Individual gaps
    are random, so the test checks every gap against its ceiling and the mean gap across 40 events, which
    doubles from one attempt to the next until the cap (the chance of a false failure is about 1e-5)."""
    attempt_log = tmp_path / "attempts.jsonl"
    base, cap = 0.2, 0.8
    server = servers.start(
        HANDLER=SCRIPTED,
        ATTEMPT_LOG=attempt_log,
        MAX_ATTEMPTS=5,
        RETRY_BACKOFF_MS=int(base * 1000),
        RETRY_BACKOFF_MAX_MS=int(cap * 1000),
        WORKER_CONCURRENCY=64,
    )
    event_ids = [f"b{i}" for i in range(40)]
    for event_id in event_ids:
        server.client.post("/events", json={"event_id": event_id, "payload": {"fail_times": 4}})
    for event_id in event_ids:
        assert wait_for_status(server.client, event_id, "processed")["attempts"] == 5

    gaps_by_attempt: dict[int, list[float]] = collections.defaultdict(list)
    for times in _attempt_times(attempt_log).values():
        assert len(times) == 5
        for attempt, (earlier, later) in enumerate(itertools.pairwise(times), start=1):
            gaps_by_attempt[attempt].append(later - earlier)
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
    settings = {"HANDLER": SCRIPTED, "ATTEMPT_LOG": attempt_log, "RETRY_BACKOFF_MS": 2000, "RETRY_BACKOFF_MAX_MS": 2000}
    server = servers.start(**settings)
    server.client.post("/events", json={"event_id": "persistent", "payload": {"fail_times": 2}})
    wait_until(lambda: attempt_log.exists(), message="the first attempt to run")
    server.kill()
    killed_at = time.time()

    restarted = servers.start(**settings)
    event = wait_for_status(restarted.client, "persistent", "processed")
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
    wait_for_status(server.client, "slow", "processing")
    server.kill()

    restarted = servers.start(HANDLER=SCRIPTED)
    event = wait_for_status(restarted.client, "slow", "processed")
    assert event["attempts"] == 2


def test_a_running_handler_keeps_its_lease_alive(servers: ServerFactory, tmp_path: Path) -> None:
    """A handler that runs for three leases is not claimed a second time: its lease is renewed."""
    attempt_log = tmp_path / "attempts.jsonl"
    server = servers.start(HANDLER=SCRIPTED, ATTEMPT_LOG=attempt_log, LEASE_SECONDS=2)
    server.client.post("/events", json={"event_id": "long", "payload": {"sleep_s": 7}})
    event = wait_for_status(server.client, "long", "processed")
    assert event["attempts"] == 1
    assert len(_attempt_times(attempt_log)["long"]) == 1


def test_a_handler_that_cannot_be_imported_stops_the_start_with_one_line(servers: ServerFactory) -> None:
    server = servers.start(wait_ready=False, HANDLER="tests.no_such_module:handler")
    assert server.wait(timeout=30) != 0
    assert "invalid HANDLER='tests.no_such_module:handler'" in server.log
    assert "Traceback" not in server.log


def test_no_more_handlers_run_at_once_than_worker_concurrency(servers: ServerFactory, tmp_path: Path) -> None:
    """With three slots and handlers that take half a second, the n-th handler to start cannot start before
    one of the three started before it has finished."""
    attempt_log = tmp_path / "attempts.jsonl"
    server = servers.start(HANDLER=SCRIPTED, ATTEMPT_LOG=attempt_log, WORKER_CONCURRENCY=3)
    event_ids = [f"c{i}" for i in range(9)]
    for event_id in event_ids:
        server.client.post("/events", json={"event_id": event_id, "payload": {"sleep_s": 0.5}})
    for event_id in event_ids:
        wait_for_status(server.client, event_id, "processed")
    starts = sorted(times[0] for times in _attempt_times(attempt_log).values())
    assert len(starts) == 9
    for earlier, later in zip(starts[:-3], starts[3:], strict=True):
        assert later >= earlier + 0.45, (earlier, later)
