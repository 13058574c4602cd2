"""Ordering keys in the store (SPEC §12), on every store: one at a time per key, in acceptance order; a key's
head is the only one of its events ever due; a failed head blocks its key until replayed or deleted."""

from __future__ import annotations

import asyncio

import pytest

from eventctl.domain import EventFilter, Status
from eventctl.store import Store, open_store
from tests.store_fixtures import LEASE, claim_one, claimed_ids, event, sleep_until_due, store, store_url

__all__ = ["store", "store_url"]  # fixtures

pytestmark = pytest.mark.anyio

PER_PRODUCER = 100


async def test_only_the_head_of_a_key_is_due_and_its_followers_wait_behind_it(store: Store) -> None:
    for event_id in ("a1", "a2", "a3"):
        await store.add(event(event_id, "k"))
    await store.add(event("plain"))
    assert await claimed_ids(store) == ["a1", "plain"]
    follower = await store.get("a2")
    assert follower is not None
    assert follower.status is Status.ACCEPTED
    assert follower.ordering_key == "k"
    assert follower.blocked_by == "a1"
    assert follower.next_attempt_at is None  # it has no time of its own until it is the head
    head = await store.get("a1")
    assert head is not None
    assert head.blocked_by is None
    plain = await store.get("plain")
    assert plain is not None
    assert (plain.ordering_key, plain.blocked_by) == (None, None)


async def test_completing_the_head_makes_the_next_event_due_in_acceptance_order(store: Store) -> None:
    for i in range(4):
        await store.add(event(f"e{i}", "k"))
    order = []
    for i in range(4):
        claim = await claim_one(store, f"e{i}")
        order.append(claim.event_id)
        assert await store.complete(claim)
    assert order == ["e0", "e1", "e2", "e3"]
    assert await store.claim(10, LEASE) == []


async def test_keys_do_not_wait_for_each_other_nor_plain_events_for_keys(store: Store) -> None:
    await store.add(event("a1", "a"))
    await store.add(event("a2", "a"))
    await store.add(event("b1", "b"))
    await store.add(event("plain"))
    assert await claimed_ids(store) == ["a1", "b1", "plain"]


async def test_a_retrying_head_holds_its_key_until_its_next_attempt(store: Store) -> None:
    await store.add(event("h", "k"))
    await store.add(event("f", "k"))
    head = await claim_one(store, "h")
    assert await store.retry(head, "RuntimeError: once", 1.0)
    assert await store.claim(10, LEASE) == []
    follower = await store.get("f")
    assert follower is not None
    assert follower.blocked_by == "h"
    await sleep_until_due(store)
    again = await claim_one(store, "h")
    assert again.attempt == 2
    assert await store.complete(again)
    await claim_one(store, "f")


async def test_a_failed_head_blocks_its_key_until_it_is_replayed_and_then_runs_first(store: Store) -> None:
    await store.add(event("h", "k"))
    await store.add(event("f1", "k"))
    assert await store.fail(await claim_one(store, "h"), "PermanentError: no")
    await store.add(event("f2", "k"))  # accepted while the key is blocked: it waits too
    assert await store.claim(10, LEASE) == []
    assert (await store.queue_stats()).blocked_keys == 1
    for follower in ("f1", "f2"):
        waiting = await store.get(follower)
        assert waiting is not None
        assert (waiting.status, waiting.blocked_by) == (Status.ACCEPTED, "h")
    assert await store.replay("h") is Status.FAILED
    assert (await store.queue_stats()).blocked_keys == 0
    assert await store.complete(await claim_one(store, "h"))
    assert await store.complete(await claim_one(store, "f1"))
    await claim_one(store, "f2")


async def test_deleting_a_failed_head_lets_its_followers_run_in_order(store: Store) -> None:
    await store.add(event("h", "k"))
    await store.add(event("f1", "k"))
    await store.add(event("f2", "k"))
    assert await store.fail(await claim_one(store, "h"), "PermanentError: no")
    assert await store.delete("h") is Status.FAILED
    assert (await store.queue_stats()).blocked_keys == 0
    follower = await store.get("f2")
    assert follower is not None
    assert follower.blocked_by == "f1"
    assert await store.complete(await claim_one(store, "f1"))
    await claim_one(store, "f2")


async def test_deleting_a_waiting_head_or_a_follower_keeps_the_order_of_the_rest(store: Store) -> None:
    for event_id in ("e1", "e2", "e3", "e4"):
        await store.add(event(event_id, "k"))
    assert await store.delete("e3") is Status.ACCEPTED  # a follower: the head does not change
    assert await store.delete("e1") is Status.ACCEPTED  # the head, not yet claimed: the next one is due
    assert await store.complete(await claim_one(store, "e2"))
    await claim_one(store, "e4")


async def test_released_and_lost_heads_stay_the_heads_of_their_keys(store: Store) -> None:
    await store.add(event("h", "k"))
    await store.add(event("f", "k"))
    await store.release([await claim_one(store, "h")])
    lost = await store.claim(10, 0.05)
    assert [claim.event_id for claim in lost] == ["h"]
    await asyncio.sleep(0.1)
    again = await claim_one(store, "h")  # the lease ran out: due again, and still first
    assert await store.complete(again)
    await claim_one(store, "f")


async def test_a_scheduled_head_holds_its_key_until_its_time(store: Store) -> None:
    await store.add(event("h", "k", delay=1.0))
    await store.add(event("f", "k"))
    assert await store.claim(10, LEASE) == []
    follower = await store.get("f")
    assert follower is not None
    assert follower.blocked_by == "h"
    await sleep_until_due(store)
    assert await store.complete(await claim_one(store, "h"))
    await claim_one(store, "f")


async def test_a_follower_scheduled_later_than_its_turn_becomes_due_at_its_own_time(store: Store) -> None:
    await store.add(event("h", "k"))
    await store.add(event("later", "k", delay=1.0))
    assert await store.complete(await claim_one(store, "h"))
    assert await store.claim(10, LEASE) == []
    later = await store.get("later")
    assert later is not None
    assert (later.blocked_by, later.next_attempt_at is not None) == (None, True)
    await sleep_until_due(store)
    await claim_one(store, "later")


async def test_a_key_whose_events_are_all_processed_takes_a_new_event_as_its_head(store: Store) -> None:
    await store.add(event("old", "k"))
    assert await store.complete(await claim_one(store, "old"))
    await store.add(event("new", "k"))
    await claim_one(store, "new")


async def test_a_batch_keeps_the_order_of_its_keyed_events(store: Store) -> None:
    await store.add_many([event("b1", "k"), event("plain"), event("b2", "k"), event("c1", "other")])
    assert await claimed_ids(store) == ["b1", "c1", "plain"]
    follower = await store.get("b2")
    assert follower is not None
    assert follower.blocked_by == "b1"


async def test_a_batch_whose_first_keyed_item_is_taken_makes_the_next_item_the_head(store: Store) -> None:
    await store.add(event("taken"))
    results = await store.add_many([event("taken", "k"), event("second", "k"), event("third", "k")])
    assert [result is None for result in results] == [False, True, True]
    assert await claimed_ids(store) == ["second", "taken"]


async def test_a_thousand_waiting_events_of_one_key_are_not_due(store: Store) -> None:
    """Parked events are not in the due index: claims and the next due time see only the head."""
    await store.add_many([event(f"k{i:04d}", "long") for i in range(1000)])
    await store.add(event("plain"))
    due_in = await store.next_due_in()
    assert due_in == 0
    assert await claimed_ids(store) == ["k0000", "plain"]
    assert await store.next_due_in() is not None  # the leases of the two claims
    stats = await store.queue_stats()
    assert stats.depths[Status.ACCEPTED] == 999
    assert stats.oldest_waiting_age == 0.0


async def test_concurrent_adds_and_completions_of_one_key_keep_one_head_in_order(store_url: str) -> None:
    """Events of one key keep arriving while heads complete: never two claimed at once, none stranded, and
    they run in acceptance order. On PostgreSQL three stores share the database, as three instances do."""
    stores = [open_store(store_url) for _ in range(3 if store_url.startswith("postgresql") else 1)]
    for one in stores:
        await one.open()
    ran: list[str] = []
    in_flight: set[str] = set()
    try:

        async def produce(source: Store, tag: str) -> None:
            for i in range(PER_PRODUCER):
                assert await source.add(event(f"{tag}{i:03d}", "busy")) is None

        async def consume(worker: Store) -> None:
            loop = asyncio.get_running_loop()
            idle_since = loop.time()
            while loop.time() - idle_since < 1.0:
                for claim in await worker.claim(10, LEASE):
                    assert not in_flight, (claim.event_id, in_flight)
                    in_flight.add(claim.event_id)
                    ran.append(claim.event_id)
                    await asyncio.sleep(0)
                    in_flight.discard(claim.event_id)
                    assert await worker.complete(claim)
                    idle_since = loop.time()
                await asyncio.sleep(0)

        producers = [produce(one, f"p{n}-") for n, one in enumerate(stores)]
        await asyncio.gather(*producers, *(consume(one) for one in stores))
        page = await stores[0].list_events(EventFilter(ordering_key="busy"), 500, None)
    finally:
        for one in stores:
            await one.close()
    accepted = [item.event_id for item in reversed(page.items)]  # the listing is newest first
    assert len(accepted) == PER_PRODUCER * len(stores)
    assert ran == accepted
