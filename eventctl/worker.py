"""The in-process worker: claims due events from the store and runs the handler on them.

It runs at most ``concurrency`` handlers at once, claims in batches sized to its free slots, sleeps until
the store says work arrived (or the next retry is due), and keeps the leases of its claims alive until
their outcomes are recorded. Every outcome is written through the claim's fence, so a worker that lost its
claim changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from eventctl.domain import Claim
from eventctl.errors import PermanentError, StoreUnavailable
from eventctl.handlers import Delivery, Handler
from eventctl.metrics import Metrics
from eventctl.store import Store
from eventctl.tracing import Tracing

log = logging.getLogger(__name__)

STORE_RETRY_SECONDS = 1.0  # pause after the store failed to answer, before asking again
MAX_ERROR_CHARS = 2000  # last_error keeps the start of a long message
# An event that is due but was not claimed is held by another instance's claim in flight: look again soon,
# but not in a busy loop.
MIN_WAIT_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time up to min(cap, base * 2**(n-1))."""

    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** min(attempt - 1, 64))
        return random.uniform(0, ceiling)


class Worker:
    """Processes events until ``stop``; see the module docstring."""

    def __init__(
        self,
        store: Store,
        handler: Handler,
        *,
        concurrency: int,
        max_attempts: int,
        backoff: Backoff,
        lease_seconds: float,
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._handler = handler
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._lease_seconds = lease_seconds
        self._metrics = metrics
        self._tracing = tracing
        self._outcome_counters = {"processed": metrics.processed, "retried": metrics.retried, "failed": metrics.failed}
        # Every claim held, until its outcome is recorded: leases renewed, released at stop.
        self._active: dict[asyncio.Task[None], Claim] = {}
        # Handlers running now: what ``concurrency`` bounds. A handler's slot frees as soon as it returns, so
        # the next claim travels to the store together with the previous outcomes, not after them.
        self._running = 0
        # A busy worker claims again once a quarter of its slots are free, not at every freed slot: one
        # claim of many events costs the store about what a claim of one does.
        self._refill_at = max(1, concurrency // 4)
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done() and not self._stopping

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name="eventctl-worker")
        self._renew_task = asyncio.create_task(self._renew_loop(), name="eventctl-lease-renewal")

    async def stop(self, grace_seconds: float) -> None:
        """Claim nothing new, give running handlers ``grace_seconds``, then cancel them and release
        their claims back to ``accepted``. Safe to call more than once."""
        self._stopping = True
        self._slot_freed.set()
        self._store.notify_work()
        if self._loop_task is not None:
            await asyncio.wait([self._loop_task])  # a loop that died has already logged why
        if self._active:
            log.info("waiting up to %gs for %d running handlers", grace_seconds, len(self._active))
            await asyncio.wait(self._active, timeout=grace_seconds)
        unfinished = dict(self._active)
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
            claims = list(unfinished.values())
            log.warning("released %d unfinished events back to accepted", len(claims))
            try:
                await self._store.release(claims)
            except StoreUnavailable as exc:
                log.error("could not release %d claims (their leases will expire): %s", len(claims), exc)
        if self._renew_task is not None:
            self._renew_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renew_task

    async def _claim_loop(self) -> None:
        try:
            while not self._stopping:
                await self._claim_once()
        except Exception:
            log.exception("the worker stopped on an unexpected error; /ready now answers 503")
            raise

    async def _claim_once(self) -> None:
        free = self._concurrency - self._running
        if free < self._refill_at:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            return
        try:
            claims = await self._store.claim(free, self._lease_seconds)
            drained = len(claims) < free
            next_due = await self._store.next_due_in() if drained else None
        except StoreUnavailable as exc:
            log.warning("store unavailable, claiming again in %gs: %s", STORE_RETRY_SECONDS, exc)
            await asyncio.sleep(STORE_RETRY_SECONDS)
            return
        for claim in claims:
            task = asyncio.create_task(self._process(claim), name=f"eventctl-event-{claim.event_id}")
            self._active[task] = claim
            self._running += 1
            task.add_done_callback(self._forget)
        if drained and not self._stopping:
            # Nothing more is due now: sleep until an event is committed or the next one falls due. The cap
            # catches what no wake-up announces, such as the lease of another instance that died.
            wait = (
                self._lease_seconds if next_due is None else min(max(next_due, MIN_WAIT_SECONDS), self._lease_seconds)
            )
            await self._store.wait_for_work(wait)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._active.pop(task, None)

    def _free_slot(self) -> None:
        self._running -= 1
        if self._concurrency - self._running >= self._refill_at:  # wake the claim loop only when it would claim
            self._slot_freed.set()

    async def _process(self, claim: Claim) -> None:
        extra = _log_context(claim)
        started = time.perf_counter()
        error = await self._attempt(claim)
        change: Awaitable[bool]
        if error is None:
            outcome, change = "processed", self._store.complete(claim)
            log.debug("event processed", extra=extra)
        elif isinstance(error, PermanentError):
            outcome, change = "failed", self._store.fail(claim, _describe(error))
            log.warning("permanent error, event failed: %s", _describe(error), extra=extra)
        elif claim.attempt >= self._max_attempts:
            outcome, change = "failed", self._store.fail(claim, _describe(error))
            log.warning("attempt failed, no attempts left, event failed: %s", _describe(error), extra=extra)
        else:
            delay = self._backoff.delay(claim.attempt)
            outcome, change = "retried", self._store.retry(claim, _describe(error), delay)
            log.info("attempt failed, retrying in %.3fs: %s", delay, _describe(error), extra=extra)
        self._metrics.processing_duration.labels(outcome).observe(time.perf_counter() - started)
        if await self._record(change, claim):
            self._outcome_counters[outcome].inc()

    async def _attempt(self, claim: Claim) -> Exception | None:
        """Run the handler once: what it raised, or None. Its slot frees as soon as it is done."""
        span = (
            self._tracing.processing_span(claim.event_id, claim.attempt, claim.traceparent)
            if self._tracing is not None
            else contextlib.nullcontext()
        )
        try:
            with span:
                await self._handler(Delivery(claim.event_id, claim.payload, claim.attempt))
        except Exception as exc:
            return exc
        finally:
            self._free_slot()
        return None

    async def _record(self, change: Awaitable[bool], claim: Claim) -> bool:
        """Await a fenced state change; a lost claim or a store failure leaves the event to its lease."""
        try:
            changed = await change
        except StoreUnavailable as exc:
            log.error(
                "could not record the outcome; the event will run again after its lease: %s",
                exc,
                extra=_log_context(claim),
            )
            return False
        if not changed:
            log.warning("claim was lost before the outcome was recorded (lease expired?)", extra=_log_context(claim))
        return changed

    async def _renew_loop(self) -> None:
        interval = self._lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            tokens = {claim.token for claim in self._active.values()}
            try:
                await self._store.renew(tokens, self._lease_seconds)
            except StoreUnavailable as exc:
                log.warning("could not renew leases: %s", exc)


def _log_context(claim: Claim) -> dict[str, object]:
    return {"event_id": claim.event_id, "attempt": claim.attempt}


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]
