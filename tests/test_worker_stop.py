"""The worker on a real ``memory://`` store: ``stop`` is bounded whatever the handlers do, ``stop_now`` cuts
the grace short, and the retry backoff stays within its bounds."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from eventctl.domain import NewEvent, Status
from eventctl.handlers import CallableHandler, Delivery, Handler
from eventctl.metrics import Metrics
from eventctl.store import Store, open_store
from eventctl.supervision import Supervisor
from eventctl.worker import Backoff, Worker

pytestmark = pytest.mark.anyio

# How long a stop may take beyond its grace here: the hard deadline (1 s) and a busy machine's slack.
STOP_SLACK_SECONDS = 10.0


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    store = open_store("memory://")
    await store.open()
    yield store
    await store.close()


def start_worker(store: Store, handler: Handler) -> Worker:
    metrics = Metrics()
    worker = Worker(
        store,
        handler,
        concurrency=4,
        max_attempts=3,
        backoff=Backoff(0.01, 0.01),
        lease_seconds=30,
        metrics=metrics,
        supervisor=Supervisor(metrics.background_restarts, lambda reason: None),
    )
    worker.start()
    return worker


async def wait_for_status(store: Store, event_id: str, status: Status) -> None:
    async with asyncio.timeout(20):
        while True:
            event = await store.get(event_id)
            if event is not None and event.status is status:
                return
            await asyncio.sleep(0.01)


async def timed(stop: Coroutine[Any, Any, None]) -> float:
    started = time.monotonic()
    await stop
    return time.monotonic() - started


async def test_stop_returns_and_releases_the_claim_when_a_handler_ignores_its_cancellation(store: Store) -> None:
    release_handler = asyncio.Event()

    async def stubborn(delivery: Delivery) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release_handler.wait()  # ignores the cancellation until the test lets it go

    worker = start_worker(store, stubborn)
    await store.add(NewEvent("e1", b"{}"))
    await wait_for_status(store, "e1", Status.PROCESSING)
    try:
        assert await timed(worker.stop(grace_seconds=0.2)) < 0.2 + STOP_SLACK_SECONDS
        event = await store.get("e1")
        assert event is not None
        assert (event.status, event.attempts) == (Status.ACCEPTED, 0)  # released, the attempt not counted
    finally:
        release_handler.set()
        await asyncio.sleep(0.05)  # the handler's task ends before the store closes


async def test_stop_now_cuts_the_grace_short(store: Store) -> None:
    async def slow(delivery: Delivery) -> None:
        await asyncio.sleep(60)

    worker = start_worker(store, slow)
    await store.add(NewEvent("e1", b"{}"))
    await wait_for_status(store, "e1", Status.PROCESSING)
    stopping = asyncio.ensure_future(timed(worker.stop(grace_seconds=600)))
    await asyncio.sleep(0.1)
    assert not stopping.done()  # the grace runs
    worker.stop_now()
    assert await asyncio.wait_for(stopping, timeout=STOP_SLACK_SECONDS) < 0.1 + STOP_SLACK_SECONDS
    event = await store.get("e1")
    assert event is not None
    assert event.status is Status.ACCEPTED


async def test_a_sync_handler_running_past_the_grace_is_abandoned_and_its_late_result_dropped(store: Store) -> None:
    """Its thread cannot be interrupted: the event is released, and what the thread returns later changes
    nothing (the store keeps the released event as it is)."""
    finish = threading.Event()
    finished = threading.Event()

    def blocking(delivery: Delivery) -> None:
        finish.wait(30)
        finished.set()

    worker = start_worker(store, CallableHandler(blocking))
    await store.add(NewEvent("e1", b"{}"))
    await wait_for_status(store, "e1", Status.PROCESSING)
    assert await timed(worker.stop(grace_seconds=0.2)) < 0.2 + STOP_SLACK_SECONDS
    assert not finished.is_set()  # still running in its thread
    finish.set()
    await asyncio.get_running_loop().run_in_executor(None, finished.wait, 10)
    await asyncio.sleep(0.05)  # the thread's late result reaches the loop, and is dropped
    event = await store.get("e1")
    assert event is not None
    assert (event.status, event.attempts) == (Status.ACCEPTED, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_backoff_delays_stay_within_full_jitter_bounds_and_repeat_with_a_seed(seed: int) -> None:
    base, cap = 0.5, 10.0

    def delays(rng: random.Random) -> list[float]:
        backoff = Backoff(base, cap, rng)
        return [backoff.delay(attempt) for attempt in range(1, 200) for _ in range(5)]

    drawn = delays(random.Random(seed))
    assert drawn == delays(random.Random(seed))
    for index, delay in enumerate(drawn):
        attempt = index // 5 + 1
        assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1))
    # Past the cap, the delays spread over the whole range [0, cap], not only its top.
    capped = drawn[50:]
    assert min(capped) < cap / 4 < cap * 3 / 4 < max(capped)
