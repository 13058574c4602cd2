"""The real worker on a real store, with handlers written in the test: what each attempt saw, and when."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from eventctl.domain import Status
from eventctl.handlers import Delivery, Handler
from eventctl.metrics import Metrics
from eventctl.store import Store
from eventctl.supervision import Supervisor
from eventctl.worker import Backoff, Worker


def start_worker(
    store: Store, handler: Handler, *, concurrency: int = 16, max_attempts: int = 3, lease_seconds: float = 30
) -> Worker:
    metrics = Metrics()
    worker = Worker(
        store,
        handler,
        concurrency=concurrency,
        max_attempts=max_attempts,
        backoff=Backoff(0.01, 0.01),
        lease_seconds=lease_seconds,
        metrics=metrics,
        supervisor=Supervisor(metrics.background_restarts, lambda reason: None),
    )
    worker.start()
    return worker


@dataclass(frozen=True)
class Run:
    event_id: str
    attempt: int
    started: float  # time.time()
    ended: float


@dataclass
class Recorder:
    """A handler that records every attempt; ``work`` decides what an attempt does (default: nothing)."""

    work: Callable[[Delivery], Awaitable[None]] | None = None
    runs: list[Run] = field(default_factory=list)

    async def __call__(self, delivery: Delivery) -> None:
        started = time.time()
        try:
            if self.work is not None:
                await self.work(delivery)
        finally:
            self.runs.append(Run(delivery.event_id, delivery.attempt, started, time.time()))

    def ids(self) -> list[str]:
        return [run.event_id for run in self.runs]


async def wait_for_status(store: Store, event_id: str, *statuses: Status, seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while True:
            event = await store.get(event_id)
            if event is not None and event.status in statuses:
                return
            await asyncio.sleep(0.01)
