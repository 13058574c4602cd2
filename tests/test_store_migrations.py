"""Migrations: a database made by eventctl before ordering keys, schedules and the attempt history upgrades
at start without loss, on both stores. ``tests/fixtures/*_v2.sql`` are dumps of such databases, made by that
code, with an event in every status (one of them claimed by a process that died)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventctl.domain import AttemptOutcome, Event, NewEvent, Status
from eventctl.store import Store, open_store
from eventctl.store.postgres_schema import MIGRATIONS as POSTGRES_MIGRATIONS
from eventctl.store.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS
from tests.inprocess import running_app
from tests.store_fixtures import LEASE

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"
STORED = {  # event id: (status, attempts, last_error, payload), as the old code left them
    "v2-processed": (Status.PROCESSED, 1, None, b'{"order":1}'),
    "v2-failed": (Status.FAILED, 1, "PermanentError: card declined", b'{"order":2}'),
    "v2-retrying": (Status.RETRYING, 1, "RuntimeError: timeout", b'{"order":3}'),
    "v2-processing": (Status.PROCESSING, 1, None, b'{"order":4}'),
    "v2-accepted": (Status.ACCEPTED, 0, None, b'{"nested":{"a":[1,2,3]},"text":"caf\\u00e9"}'),
}


@pytest.fixture
def old_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "sqlite_v2.sql").read_text())
    return f"sqlite:///{path}"


@pytest.fixture
async def old_postgres(pg_url: str) -> str:
    conn = await asyncpg.connect(pg_url)  # its search_path is the test's own schema
    try:
        await conn.execute((FIXTURES / "postgres_v2.sql").read_text())
    finally:
        await conn.close()
    return pg_url


async def events_of(store: Store) -> dict[str, Event]:
    found = {event_id: await store.get(event_id) for event_id in STORED}
    return {event_id: event for event_id, event in found.items() if event is not None}


def shape(event: Event) -> tuple[Any, ...]:
    return event.status, event.attempts, event.last_error, event.payload


async def assert_upgraded_without_loss(store: Store, processing_after_open: Status) -> None:
    """Every old event is there as it was (the one held by the dead process: ``processing_after_open``), with
    no key and no history, and the store goes on with old and new events alike."""
    events = await events_of(store)
    assert {event_id: shape(event) for event_id, event in events.items()} == {
        **STORED,
        "v2-processing": (processing_after_open, 1, None, b'{"order":4}'),
    }
    assert all((event.ordering_key, event.blocked_by) == (None, None) for event in events.values())
    assert events["v2-processed"].processed_at is not None
    assert events["v2-processed"].received_at < events["v2-accepted"].received_at
    assert await store.attempts("v2-processed") == []
    duplicate = await store.add(NewEvent("v2-failed", b"{}"))
    assert duplicate is not None
    assert duplicate.status is Status.FAILED

    claims = {claim.event_id: claim for claim in await store.claim(10, LEASE)}
    assert sorted(claims) == ["v2-accepted", "v2-processing", "v2-retrying"]
    assert claims["v2-processing"].traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert (claims["v2-processing"].attempt, claims["v2-retrying"].attempt) == (2, 2)
    for claim in claims.values():
        assert await store.complete(claim)
    attempts = await store.attempts("v2-processing")
    assert attempts is not None
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, AttemptOutcome.LOST), (2, AttemptOutcome.PROCESSED)]
    assert await store.replay("v2-failed") is Status.FAILED
    assert await store.add(NewEvent("new-1", b"{}", ordering_key="k")) is None
    assert await store.add(NewEvent("new-2", b"{}", ordering_key="k")) is None
    follower = await store.get("new-2")
    assert follower is not None
    assert follower.blocked_by == "new-1"
    assert sorted(claim.event_id for claim in await store.claim(10, LEASE)) == ["new-1", "v2-failed"]


async def test_a_sqlite_database_of_schema_version_2_upgrades_at_start_without_loss(old_sqlite: str) -> None:
    store = open_store(old_sqlite)
    await store.open()
    try:
        # A SQLite file belongs to one process: the claim found at start is released, its attempt lost.
        await assert_upgraded_without_loss(store, processing_after_open=Status.ACCEPTED)
    finally:
        await store.close()
    with sqlite3.connect(old_sqlite.removeprefix("sqlite:///")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(SQLITE_MIGRATIONS)


async def test_a_postgres_database_of_schema_version_2_upgrades_at_start_without_loss(old_postgres: str) -> None:
    store = open_store(old_postgres)
    await store.open()
    try:
        # Another instance may still hold a claim: it stays processing until its lease runs out (it has).
        await assert_upgraded_without_loss(store, processing_after_open=Status.PROCESSING)
    finally:
        await store.close()
    conn = await asyncpg.connect(old_postgres)
    try:
        assert await conn.fetchval("SELECT max(version) FROM eventctl_schema") == len(POSTGRES_MIGRATIONS)
    finally:
        await conn.close()


async def test_two_postgres_instances_starting_on_an_old_database_upgrade_it_once(old_postgres: str) -> None:
    first, second = open_store(old_postgres), open_store(old_postgres)
    try:
        await first.open()
        await second.open()
        assert len(await events_of(second)) == len(STORED)
    finally:
        await first.close()
        await second.close()


async def test_the_service_starts_on_an_old_sqlite_database_and_serves_its_events(old_sqlite: str) -> None:
    async with running_app(database_url=old_sqlite, handler="sleep", processing_delay_ms=0) as running:
        failed = await running.client.get("/events/v2-failed")
        assert failed.status_code == 200
        assert (failed.json()["status"], failed.json()["last_error"]) == ("failed", "PermanentError: card declined")
        listing = await running.client.get("/events", params={"limit": 10})
        assert {item["event_id"] for item in listing.json()["items"]} == set(STORED)
