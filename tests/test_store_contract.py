"""The store contract: every store passes these same tests (``store/base.py`` lists the promises)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventctl.domain import EventFilter, NewEvent, Status
from eventctl.errors import ConfigError
from eventctl.store import Store, open_store
from tests.store_fixtures import LEASE, store, store_url

__all__ = ["store", "store_url"]  # fixtures

pytestmark = pytest.mark.anyio


async def test_add_stores_an_accepted_event_with_its_payload(store: Store) -> None:
    assert await store.add(NewEvent("e1", b'{"a":1}')) is None
    event = await store.get("e1")
    assert event is not None
    assert event.status is Status.ACCEPTED
    assert event.payload == b'{"a":1}'
    assert event.attempts == 0
    assert event.next_attempt_at is not None
    assert event.processed_at is None


async def test_add_of_a_taken_id_stores_nothing_and_returns_the_holder(store: Store) -> None:
    await store.add(NewEvent("e1", b"1"))
    existing = await store.add(NewEvent("e1", b"2"))
    assert existing is not None
    assert existing.payload == b"1"
    assert existing.status is Status.ACCEPTED


async def test_concurrent_adds_of_one_id_store_it_once(store: Store) -> None:
    results = await asyncio.gather(*(store.add(NewEvent("same", str(i).encode())) for i in range(100)))
    assert sum(result is None for result in results) == 1


async def test_get_of_an_unknown_id_is_none(store: Store) -> None:
    assert await store.get("nope") is None


async def test_claim_takes_oldest_due_first_up_to_the_limit_and_counts_an_attempt(store: Store) -> None:
    for i in range(5):
        await store.add(NewEvent(f"e{i}", b"{}"))
    claims = await store.claim(3, LEASE)
    assert sorted(claim.event_id for claim in claims) == ["e0", "e1", "e2"]
    assert all(claim.attempt == 1 for claim in claims)
    event = await store.get("e0")
    assert event is not None
    assert event.status is Status.PROCESSING
    assert event.attempts == 1
    assert event.next_attempt_at is None
    assert sorted(claim.event_id for claim in await store.claim(10, LEASE)) == ["e3", "e4"]
    assert await store.claim(10, LEASE) == []


async def test_complete_marks_processed_while_the_claim_holds(store: Store) -> None:
    await store.add(NewEvent("e1", b"{}"))
    [claim] = await store.claim(1, LEASE)
    assert await store.complete(claim) is True
    event = await store.get("e1")
    assert event is not None
    assert event.status is Status.PROCESSED
    assert event.processed_at is not None
    assert await store.complete(claim) is False


async def test_a_lost_claim_changes_nothing(store: Store) -> None:
    await store.add(NewEvent("e1", b"{}"))
    [stale] = await store.claim(1, 0.05)
    await asyncio.sleep(0.1)
    [fresh] = await store.claim(1, LEASE)  # the lease ran out: due again
    assert fresh.attempt == 2
    assert fresh.token != stale.token
    assert await store.complete(stale) is False
    assert await store.fail(stale, "late") is False
    assert await store.retry(stale, "late", 0) is False
    event = await store.get("e1")
    assert event is not None
    assert event.status is Status.PROCESSING
    assert await store.complete(fresh) is True


async def test_concurrent_completions_each_get_their_own_answer(store: Store) -> None:
    """Completions are written in batches; inside one, a lost claim is refused while the others land."""
    for i in range(50):
        await store.add(NewEvent(f"e{i}", b"{}"))
    [stale] = await store.claim(1, 0.05)
    await asyncio.sleep(0.1)
    claims = await store.claim(50, LEASE)  # e0 again (lease ran out), and the other 49
    assert len(claims) == 50
    answers = await asyncio.gather(store.complete(stale), *(store.complete(claim) for claim in claims))
    assert answers == [False] + [True] * 50
    for i in range(50):
        event = await store.get(f"e{i}")
        assert event is not None
        assert event.status is Status.PROCESSED


async def test_renew_keeps_a_claim_from_expiring(store: Store) -> None:
    await store.add(NewEvent("e1", b"{}"))
    [claim] = await store.claim(1, 0.2)
    for _ in range(4):
        await asyncio.sleep(0.1)
        await store.renew({claim.token}, 0.2)
    assert await store.claim(1, LEASE) == []
    assert await store.complete(claim) is True


async def test_retry_makes_the_event_due_after_the_delay_with_the_error_kept(store: Store) -> None:
    await store.add(NewEvent("e1", b"{}"))
    [claim] = await store.claim(1, LEASE)
    assert await store.retry(claim, "Boom: once", 0.2) is True
    event = await store.get("e1")
    assert event is not None
    assert event.status is Status.RETRYING
    assert event.last_error == "Boom: once"
    assert event.next_attempt_at is not None
    assert await store.claim(1, LEASE) == []
    due_in = await store.next_due_in()
    assert due_in is not None
    assert 0 < due_in <= 0.2
    await asyncio.sleep(0.25)
    [again] = await store.claim(1, LEASE)
    assert again.attempt == 2


async def test_fail_dead_letters_the_event(store: Store) -> None:
    await store.add(NewEvent("e1", b"{}"))
    [claim] = await store.claim(1, LEASE)
    assert await store.fail(claim, "PermanentError: no") is True
    event = await store.get("e1")
    assert event is not None
    assert event.status is Status.FAILED
    assert event.last_error == "PermanentError: no"
    assert await store.claim(1, LEASE) == []
    assert await store.next_due_in() is None


async def test_release_gives_claims_back_as_accepted_without_counting_the_attempt(store: Store) -> None:
    await store.add(NewEvent("e1", b"{}"))
    [claim] = await store.claim(1, LEASE)
    await store.release([claim])
    event = await store.get("e1")
    assert event is not None
    assert event.status is Status.ACCEPTED
    assert event.attempts == 0
    [again] = await store.claim(1, LEASE)
    assert again.attempt == 1


async def test_prune_deletes_processed_events_before_the_cutoff_a_batch_at_a_time(store: Store) -> None:
    for event_id in ("p0", "p1", "p2", "p3", "p4", "dead"):
        await store.add(NewEvent(event_id, b"{}"))
    claims = await store.claim(6, LEASE)
    for claim in claims:
        assert await (store.fail(claim, "no") if claim.event_id == "dead" else store.complete(claim))
    await store.add(NewEvent("waiting", b"{}"))
    assert await store.prune_processed(datetime.now(UTC) - timedelta(hours=1), 10) == 0  # none is that old
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    assert [await store.prune_processed(cutoff, 3) for _ in range(3)] == [3, 2, 0]
    for i in range(5):
        assert await store.get(f"p{i}") is None
    dead, waiting = await store.get("dead"), await store.get("waiting")
    assert dead is not None
    assert dead.status is Status.FAILED
    assert waiting is not None
    assert waiting.status is Status.ACCEPTED
    assert await store.add(NewEvent("p0", b"{}")) is None  # a pruned event's id is free again


async def test_wait_for_work_returns_when_an_event_is_added(store: Store) -> None:
    await asyncio.sleep(0.1)
    await store.wait_for_work(0)  # consume any wake-up from opening (a PostgreSQL listener announces itself)
    waiter = asyncio.create_task(store.wait_for_work(None))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.add(NewEvent("e1", b"{}"))
    await asyncio.wait_for(waiter, 5)


async def test_next_due_in_is_zero_for_waiting_events_and_none_when_empty(store: Store) -> None:
    assert await store.next_due_in() is None
    await store.add(NewEvent("e1", b"{}"))
    assert await store.next_due_in() == 0


async def test_pruning_deletes_processed_events_older_than_the_cutoff_at_most_a_batch_at_a_time(
    store: Store,
) -> None:
    for i in range(5):
        await store.add(NewEvent(f"e{i}", b"{}"))
    await store.add(NewEvent("waiting", b"{}"))
    for claim in await store.claim(5, LEASE):
        assert await store.complete(claim)
    cutoff = datetime.now(UTC) + timedelta(seconds=5)
    assert await store.prune_processed(datetime.now(UTC) - timedelta(seconds=60), 10) == 0
    assert await store.prune_processed(cutoff, 2) == 2
    assert await store.prune_processed(cutoff, 2) == 2
    assert await store.prune_processed(cutoff, 2) == 1
    assert await store.prune_processed(cutoff, 2) == 0
    assert await store.get("waiting") is not None


async def test_ping_answers_when_open(store: Store) -> None:
    await store.ping()


async def test_reopening_a_file_keeps_events_and_releases_orphaned_claims(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = open_store(url)
    await first.open()
    await first.add(NewEvent("done", b"{}"))
    await first.add(NewEvent("held", b"{}"))
    [claim_done] = await first.claim(1, LEASE)
    await first.complete(claim_done)
    await first.claim(1, LEASE)  # "held" is claimed, then the process "dies" holding it
    await first.close()

    second = open_store(url)
    await second.open()
    try:
        held = await second.get("held")
        assert held is not None
        assert held.status is Status.ACCEPTED
        assert held.attempts == 1  # the dead process may have run it: the attempt stays counted
        done = await second.get("done")
        assert done is not None
        assert done.status is Status.PROCESSED
        assert await second.add(NewEvent("done", b"{}")) is not None
        [claim] = await second.claim(5, LEASE)
        assert claim.event_id == "held"
    finally:
        await second.close()


async def test_a_sqlite_file_belongs_to_one_store_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = open_store(url)
    await first.open()
    try:
        with pytest.raises(ConfigError, match="in use"):
            await open_store(url).open()
    finally:
        await first.close()


@pytest.mark.parametrize(
    "url", ["postgres-ish://x", "sqlite://relative.db", "sqlite:///x.db?journal=off", "sqlite:///x.db?synchronous=off"]
)
def test_unknown_store_urls_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        open_store(url)


async def test_time_filters_on_an_empty_store_match_nothing(store: Store) -> None:
    now = datetime.now(UTC)
    within = EventFilter(received_since=now - timedelta(hours=1), received_until=now)
    assert (await store.list_events(within, 10, None)).items == []
    assert await store.count_matching(within) == 0
    assert await store.delete_matching(EventFilter(received_until=now), 10) == 0


async def test_time_filters_find_their_range_across_the_gaps_that_deletes_leave(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(10):
        await store.add(NewEvent(f"gap-{n}", b"{}"))
    for n in range(3, 9):
        assert await store.delete(f"gap-{n}") is not None
    after = datetime.now(UTC) + timedelta(seconds=1)
    since = await asyncio.wait_for(store.list_events(EventFilter(received_since=before), 20, None), 10)
    assert [event.event_id for event in since.items] == ["gap-9", "gap-2", "gap-1", "gap-0"]
    assert (await asyncio.wait_for(store.list_events(EventFilter(received_since=after), 20, None), 10)).items == []
    assert await asyncio.wait_for(store.count_matching(EventFilter(received_until=after)), 10) == 4
