"""The attempt history in the store (SPEC §12), on every store: every attempt is a record, with its outcome,
error, duration and response status; released and lost attempts too; an event's attempts go with it."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from eventctl.domain import AttemptOutcome, AttemptReport, Status
from eventctl.store import Store, open_store
from tests.store_fixtures import LEASE, claim_one, event, store, store_url

__all__ = ["store", "store_url"]  # fixtures

pytestmark = pytest.mark.anyio


async def test_each_outcome_is_recorded_with_its_error_duration_and_response_oldest_first(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)  # PostgreSQL's clock is the database's
    await store.add(event("e1"))
    first = await claim_one(store, "e1")
    assert await store.retry(first, "WebhookError: HTTP 503", 0, AttemptReport(12.5, 503))
    second = await claim_one(store, "e1")
    assert await store.fail(second, "WebhookError: HTTP 400", AttemptReport(3.0, 400))
    assert await store.replay("e1") is Status.FAILED
    third = await claim_one(store, "e1")
    assert await store.complete(third, AttemptReport(7.25, 204))

    attempts = await store.attempts("e1")
    assert attempts is not None
    assert [(a.attempt, a.outcome, a.error, a.duration_ms, a.response_status) for a in attempts] == [
        (1, AttemptOutcome.RETRYING, "WebhookError: HTTP 503", 12.5, 503),
        (2, AttemptOutcome.FAILED, "WebhookError: HTTP 400", 3.0, 400),
        (1, AttemptOutcome.PROCESSED, None, 7.25, 204),  # a replay starts the count again
    ]
    for attempt in attempts:
        assert attempt.finished_at is not None
        assert before <= attempt.started_at <= attempt.finished_at
    assert attempts[0].finished_at is not None
    assert attempts[0].finished_at <= attempts[1].started_at


async def test_an_attempt_without_a_report_is_recorded_without_duration_or_response(store: Store) -> None:
    await store.add(event("e1"))
    assert await store.complete(await claim_one(store, "e1"))
    [attempt] = await store.attempts("e1") or []
    assert (attempt.outcome, attempt.duration_ms, attempt.response_status) == (AttemptOutcome.PROCESSED, None, None)


async def test_a_released_attempt_is_recorded_and_not_counted(store: Store) -> None:
    await store.add(event("e1"))
    await store.release([await claim_one(store, "e1")])
    again = await claim_one(store, "e1")
    assert again.attempt == 1
    assert await store.complete(again)
    attempts = await store.attempts("e1")
    assert attempts is not None
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, AttemptOutcome.RELEASED), (1, AttemptOutcome.PROCESSED)]
    assert attempts[0].finished_at is not None
    assert attempts[0].error == "released unfinished at shutdown"


async def test_a_lease_that_ran_out_is_recorded_as_lost_when_the_event_is_claimed_again(store: Store) -> None:
    await store.add(event("e1"))
    [stale] = await store.claim(1, 0.05)
    await asyncio.sleep(0.1)
    fresh = await claim_one(store, "e1")
    assert not await store.complete(stale)  # its outcome, late, is fenced out and records nothing
    assert await store.complete(fresh)
    attempts = await store.attempts("e1")
    assert attempts is not None
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, AttemptOutcome.LOST), (2, AttemptOutcome.PROCESSED)]
    lost = attempts[0]
    assert (lost.finished_at, lost.duration_ms) == (None, None)
    assert lost.error == "the lease ran out before an outcome was recorded"
    assert lost.started_at <= attempts[1].started_at


async def test_claims_found_at_start_of_a_sqlite_file_are_recorded_as_lost(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = open_store(url)
    await first.open()
    await first.add(event("held"))
    await first.claim(1, LEASE)  # the process "dies" holding it
    await first.close()
    second = open_store(url)
    await second.open()
    try:
        assert await second.complete(await claim_one(second, "held"))
        attempts = await second.attempts("held")
        assert attempts is not None
        assert [(a.attempt, a.outcome) for a in attempts] == [(1, AttemptOutcome.LOST), (2, AttemptOutcome.PROCESSED)]
    finally:
        await second.close()


async def test_the_attempts_of_an_unknown_event_are_none_and_of_a_new_one_empty(store: Store) -> None:
    assert await store.attempts("nope") is None
    await store.add(event("new"))
    assert await store.attempts("new") == []


async def test_deleting_an_event_removes_its_attempts_and_frees_its_id(store: Store, store_url: str) -> None:
    await store.add(event("e1"))
    assert await store.retry(await claim_one(store, "e1"), "RuntimeError: once", 0)
    assert await store.fail(await claim_one(store, "e1"), "PermanentError: no")
    assert await stored_attempts(store_url) in (1, None)
    assert await store.delete("e1") is Status.FAILED
    assert await store.get("e1") is None
    assert await store.attempts("e1") is None
    assert await stored_attempts(store_url) in (0, None)
    assert await store.add(event("e1")) is None  # the id is free again, and starts with no history
    assert await store.attempts("e1") == []


async def test_retention_removes_the_attempts_with_their_events(store: Store, store_url: str) -> None:
    for i in range(3):
        await store.add(event(f"e{i}"))
    for claim in await store.claim(3, LEASE):
        assert await store.retry(claim, "RuntimeError: once", 0)
    for claim in await store.claim(3, LEASE):
        assert await store.complete(claim)
    for i in range(3):
        assert [a.outcome for a in await store.attempts(f"e{i}") or []] == ["retrying", "processed"]
    assert await stored_attempts(store_url) in (3, None)  # the earlier attempt of each (see the schema)
    assert await store.prune_processed(datetime.now(UTC) + timedelta(seconds=5), 500) == 3
    assert await stored_attempts(store_url) in (0, None)
    for i in range(3):
        assert await store.attempts(f"e{i}") is None


async def test_with_the_history_off_no_attempt_is_recorded(store_url: str) -> None:
    quiet = open_store(store_url, attempt_history=False)
    await quiet.open()
    try:
        await quiet.add(event("e1"))
        [lost] = await quiet.claim(1, 0.05)
        await asyncio.sleep(0.1)
        claim = await claim_one(quiet, "e1")
        await quiet.release([claim])
        assert await quiet.retry(await claim_one(quiet, "e1"), "RuntimeError: once", 0, AttemptReport(1.0))
        assert await quiet.complete(await claim_one(quiet, "e1"), AttemptReport(1.0))
        assert await quiet.attempts("e1") == []
        assert lost.event_id == "e1"
    finally:
        await quiet.close()


async def stored_attempts(store_url: str) -> int | None:
    """How many attempt records the database holds, whatever event they belong to (orphans included);
    ``None`` for ``memory://``, which nothing outside the store can see (its own answers must do there)."""
    if store_url == "memory://":
        return None
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as sqlite:
            count: int = sqlite.execute("SELECT count(*) FROM attempts").fetchone()[0]
        return count
    postgres = await asyncpg.connect(store_url)  # its ?search_path= is the test's schema
    try:
        counted: int = await postgres.fetchval("SELECT count(*) FROM eventctl_attempts")
    finally:
        await postgres.close()
    return counted
