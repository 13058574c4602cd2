"""The worker with ordering keys and schedules (SPEC §12), on a real store of each kind: per key one at a
time in acceptance order, keys and plain events side by side; a blocked key waits for its replay or delete;
a delay is never run early, and is run on time."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from eventctl.domain import NewEvent, Status
from eventctl.errors import PermanentError
from eventctl.handlers import Delivery
from eventctl.store import Store
from tests.store_fixtures import event, store, store_url
from tests.worker_support import Recorder, start_worker, wait_for_status

__all__ = ["store", "store_url"]  # fixtures

pytestmark = pytest.mark.anyio

# How late a scheduled event may start here: its wake-up is exact, the rest is a busy machine's slack. A
# worker that missed the wake-up would start it only at its idle cap, the lease (30 s).
ON_TIME_SECONDS = 5.0


async def test_three_keys_run_one_at_a_time_in_order_with_plain_events_mixed_in(store: Store) -> None:
    rng = random.Random(15)

    async def work(delivery: Delivery) -> None:
        await asyncio.sleep(rng.uniform(0, 0.01))

    recorder = Recorder(work)
    keys = ("customer-a", "customer-b", "customer-c")
    events = [event(f"{key}-{i:02d}", key) for i in range(15) for key in keys]
    events += [event(f"plain-{i:02d}") for i in range(30)]
    rng.shuffle(events)  # keys interleaved with each other and with plain events, in acceptance order
    worker = start_worker(store, recorder)
    try:
        for start in range(0, len(events), 10):  # in batches while the worker runs
            await store.add_many(events[start : start + 10])
        for item in events:
            await wait_for_status(store, item.event_id, Status.PROCESSED)
    finally:
        await worker.stop(grace_seconds=5)

    runs_by_key = defaultdict(list)
    for run in recorder.runs:
        runs_by_key[run.event_id.rpartition("-")[0]].append(run)
    for key in keys:
        accepted = [item.event_id for item in events if item.ordering_key == key]
        runs = runs_by_key[key]
        assert [run.event_id for run in runs] == accepted
        for earlier, later in itertools.pairwise(runs):
            assert later.started >= earlier.ended, f"{later.event_id} started before {earlier.event_id} ended"
    assert sorted(run.event_id for run in runs_by_key["plain"]) == [f"plain-{i:02d}" for i in range(30)]
    assert all(run.attempt == 1 for run in recorder.runs)
    # The keys did not wait for each other: their events ran interleaved.
    order = [run.event_id.rpartition("-")[0] for run in recorder.runs if run.event_id.startswith("customer")]
    assert order != sorted(order)


@pytest.mark.parametrize("unblock", ["replay", "delete"])
async def test_a_blocked_key_holds_its_followers_until_the_head_is_replayed_or_deleted(
    store: Store, unblock: str
) -> None:
    fail_once = {"head"}

    async def work(delivery: Delivery) -> None:
        if delivery.event_id in fail_once:
            fail_once.discard(delivery.event_id)
            raise PermanentError("card declined")

    recorder = Recorder(work)
    worker = start_worker(store, recorder)
    try:
        await store.add_many([event("head", "k"), event("f1", "k"), event("f2", "k"), event("other")])
        await wait_for_status(store, "head", Status.FAILED)
        await wait_for_status(store, "other", Status.PROCESSED)
        await asyncio.sleep(0.2)  # time the followers would have needed to run, were they not blocked
        for follower in ("f1", "f2"):
            waiting = await store.get(follower)
            assert waiting is not None
            assert (waiting.status, waiting.blocked_by) == (Status.ACCEPTED, "head")
        assert (await store.queue_stats()).blocked_keys == 1
        if unblock == "replay":
            assert await store.replay("head") is Status.FAILED
        else:
            assert await store.delete("head") is Status.FAILED
        await wait_for_status(store, "f2", Status.PROCESSED)
    finally:
        await worker.stop(grace_seconds=5)
    keyed = [event_id for event_id in recorder.ids() if event_id != "other"]
    assert keyed == (["head", "head", "f1", "f2"] if unblock == "replay" else ["head", "f1", "f2"])


async def test_a_delay_is_never_run_early_and_is_run_on_time(store: Store) -> None:
    recorder = Recorder()
    worker = start_worker(store, recorder)
    now = datetime.now(UTC)
    times = {"in-1s": now + timedelta(seconds=1), "in-2s": now + timedelta(seconds=2)}
    try:
        await store.add(event("at-once"))
        for event_id, deliver_at in times.items():
            await store.add(NewEvent(event_id, b"{}", deliver_at=deliver_at))
        await store.add(NewEvent("keyed-in-1s", b"{}", deliver_at=times["in-1s"], ordering_key="k"))
        for event_id in ("in-2s", "keyed-in-1s"):
            await wait_for_status(store, event_id, Status.PROCESSED, seconds=30)
    finally:
        await worker.stop(grace_seconds=5)
    started = {run.event_id: run.started for run in recorder.runs}
    assert started["at-once"] < times["in-1s"].timestamp()
    for event_id, deliver_at in {**times, "keyed-in-1s": times["in-1s"]}.items():
        assert started[event_id] >= deliver_at.timestamp(), f"{event_id} ran early"
        assert started[event_id] - deliver_at.timestamp() < ON_TIME_SECONDS, f"{event_id} ran late"
