"""Scheduled events in the store (SPEC §12), on every store: an event with a ``deliver_at`` ahead is
``accepted`` with ``next_attempt_at`` at that time, is not claimed before it, and is due at it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from eventctl.domain import NewEvent, Status
from eventctl.store import Store
from tests.store_fixtures import LEASE, claim_one, claimed_ids, event, sleep_until_due, store, store_url

__all__ = ["store", "store_url"]  # fixtures

pytestmark = pytest.mark.anyio


async def test_a_scheduled_event_waits_with_its_time_and_is_due_at_it(store: Store) -> None:
    deliver_at = datetime.now(UTC) + timedelta(seconds=1)
    assert await store.add(NewEvent("later", b"{}", deliver_at=deliver_at)) is None
    waiting = await store.get("later")
    assert waiting is not None
    assert waiting.status is Status.ACCEPTED
    assert waiting.next_attempt_at == deliver_at
    assert await store.claim(10, LEASE) == []
    due_in = await store.next_due_in()
    assert due_in is not None
    assert 0 < due_in <= 1
    await sleep_until_due(store)
    assert datetime.now(UTC) >= deliver_at
    await claim_one(store, "later")


async def test_a_deliver_at_in_the_past_is_due_at_once(store: Store) -> None:
    await store.add(event("past", delay=-3600))
    await claim_one(store, "past")


async def test_scheduled_events_are_counted_until_their_time(store: Store) -> None:
    await store.add_many([event("later", delay=60), event("now"), event("past", delay=-60)])
    stats = await store.queue_stats()
    assert stats.scheduled == 1
    assert stats.depths[Status.ACCEPTED] == 3
    assert stats.oldest_waiting_age >= 0
    assert await claimed_ids(store) == ["now", "past"]
    assert (await store.queue_stats()).scheduled == 1
    await store.delete("later")
    assert (await store.queue_stats()).scheduled == 0


async def test_an_earlier_event_is_claimed_before_a_later_scheduled_one(store: Store) -> None:
    await store.add(event("soon", delay=0.3))
    await store.add(event("sooner", delay=0.1))
    await asyncio.sleep(0.5)
    claims = await store.claim(1, LEASE)
    assert [claim.event_id for claim in claims] == ["sooner"]  # due order, not acceptance order
    await claim_one(store, "soon")


async def test_adding_a_scheduled_event_wakes_a_waiting_worker(store: Store) -> None:
    """So that it sleeps until the new, earlier time instead of what it planned before."""
    await asyncio.sleep(0.1)
    await store.wait_for_work(0)  # consume any wake-up from opening (a PostgreSQL listener announces itself)
    waiter = asyncio.create_task(store.wait_for_work(None))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.add(event("later", delay=60))
    await asyncio.wait_for(waiter, 5)
