"""The stores the store-level tests run on: a SQLite file, ``memory://`` and PostgreSQL (a schema of the
test's own). A test module imports ``store_url`` and ``store`` to run every test on all three."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventctl.domain import Claim, NewEvent
from eventctl.store import Store, open_store

LEASE = 30.0


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else "memory://"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.open()
    yield store
    await store.close()


def event(event_id: str, key: str | None = None, *, delay: float | None = None, payload: bytes = b"{}") -> NewEvent:
    """A new event, keyed by ``key`` and due ``delay`` seconds from now when given."""
    deliver_at = None if delay is None else datetime.now(UTC) + timedelta(seconds=delay)
    return NewEvent(event_id, payload, deliver_at=deliver_at, ordering_key=key)


async def claimed_ids(store: Store, limit: int = 100) -> list[str]:
    return sorted(claim.event_id for claim in await store.claim(limit, LEASE))


async def claim_one(store: Store, event_id: str) -> Claim:
    """Claim what is due and return the claim of ``event_id``, which must be the only thing due."""
    claims = await store.claim(100, LEASE)
    assert [claim.event_id for claim in claims] == [event_id]
    return claims[0]


async def sleep_until_due(store: Store) -> None:
    """Sleep until the store's next event is due (a little past it), which must be in the future."""
    due_in = await store.next_due_in()
    assert due_in is not None
    assert due_in > 0
    await asyncio.sleep(due_in + 0.02)
