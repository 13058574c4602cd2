"""The in-process worker: claims due events from the store and runs the handler on them.

It runs at most ``concurrency`` handlers at once, claims in batches sized to its free slots, sleeps until
the store says work arrived (or the next retry is due), and keeps the leases of its claims alive until
their outcomes are recorded. Every outcome is written through the claim's fence, with the attempt's record
(how long the handler took, and the webhook's answer), so a worker that lost its claim changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable
from dataclasses import dataclass, field

from eventctl.domain import AttemptReport, Claim
from eventctl.errors import PermanentError, StoreUnavailable
from eventctl.handlers import Delivery, Handler, reported_response_status
from eventctl.metrics import Metrics
from eventctl.store import Store
from eventctl.supervision import Supervised, Supervisor, describe_error
from eventctl.tracing import Tracing

log = logging.getLogger(__name__)

STORE_RETRY_SECONDS = 1.0  # pause after the store failed to answer, before asking again
# An event that is due but was not claimed is held by another instance's claim in flight: look again soon,
# but not in a busy loop.
MIN_WAIT_SECONDS = 0.01
# At stop, after the grace and the cancellation: how long handlers that ignore their cancellation are waited
# for before their events are released all the same.
HARD_STOP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time up to min(cap, base * 2**(n-1)).
    ``rng`` draws the random part (seed one to make the delays repeatable)."""

    base_seconds: float
    max_seconds: float
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** min(attempt - 1, 64))
        return self.rng.uniform(0, ceiling)


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
        supervisor: Supervisor,
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._handler = handler
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._lease_seconds = lease_seconds
        self._metrics = metrics
        self._supervisor = supervisor
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
        self._hurry = asyncio.Event()  # set by stop_now: the grace is over
        self._claiming: Supervised | None = None
        self._renewing: Supervised | None = None

    @property
    def running(self) -> bool:
        """True while the claim loop runs: not before ``start``, not once stopping, and not while the loop
        is down after a failure, waiting to be restarted."""
        return self._claiming is not None and self._claiming.up and not self._stopping

    def start(self) -> None:
        self._claiming = self._supervisor.start("claim_loop", self._claim_loop)
        self._renewing = self._supervisor.start("lease_renewal", self._renew_loop)

    def stop_now(self) -> None:
        """End the grace of ``stop`` at once (now, or as soon as it starts): a second shutdown signal."""
        self._hurry.set()

    async def stop(self, grace_seconds: float) -> None:
        """Claim nothing new and give running handlers ``grace_seconds`` (less if ``stop_now`` is called);
        then cancel those still running, wait at most ``HARD_STOP_SECONDS`` for the ones that ignore it, and
        release every claim whose outcome was not recorded back to ``accepted`` (the attempt not counted).

        It returns within about ``grace_seconds + HARD_STOP_SECONDS`` plus one store round trip, whatever
        the handlers do. A sync handler cannot be interrupted: its thread is abandoned and may still finish
        its work after its event was released. Safe to call more than once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        self._stopping = True
        self._slot_freed.set()
        self._store.notify_work()
        if self._claiming is not None:
            if self._claiming.up:
                # It returns at once unless a claim is on its way: the claimed events then get the grace too.
                await self._wait({self._claiming.task}, deadline - loop.time())
            await self._claiming.stop()  # and if it was waiting to restart after a failure, it stays down
        if self._active:
            log.info("waiting up to %gs for %d running handlers", max(0.0, deadline - loop.time()), len(self._active))
            await self._wait(set(self._active), deadline - loop.time())
        unfinished = dict(self._active)
        for task in unfinished:
            task.cancel()
        if unfinished:
            _, ignoring = await asyncio.wait(unfinished, timeout=HARD_STOP_SECONDS)
            if ignoring:
                log.warning(
                    "%d handlers ignored their cancellation; their events are released all the same", len(ignoring)
                )
            await self._release(list(unfinished.values()))
        if self._renewing is not None:
            await self._renewing.stop()

    async def _wait(self, tasks: set[asyncio.Task[None]], seconds: float) -> None:
        """Wait until ``tasks`` are done, ``seconds`` passed, or ``stop_now`` was called."""
        if not tasks or seconds <= 0:
            return
        all_done = asyncio.ensure_future(asyncio.wait(tasks))  # cancelling it leaves the tasks alone
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait({all_done, hurried}, timeout=seconds, return_when=FIRST_COMPLETED)
        finally:
            all_done.cancel()
            hurried.cancel()

    async def _release(self, claims: list[Claim]) -> None:
        try:
            await self._store.release(claims)
        except StoreUnavailable as exc:
            log.error("could not release %d claims (their leases will expire): %s", len(claims), exc)
        except Exception:  # stop must return whatever happens: the leases are the safety net
            log.exception("could not release %d claims (their leases will expire)", len(claims))
        else:
            log.warning("released %d unfinished events back to accepted", len(claims))

    async def _claim_loop(self) -> None:
        while not self._stopping:
            await self._claim_once()

    async def _claim_once(self) -> None:
        free = self._concurrency - self._running
        if free < self._refill_at:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            return
        try:
            claims = await self._store.claim(free, self._lease_seconds)
            for claim in claims:
                task = asyncio.create_task(self._process(claim), name=f"eventctl-event-{claim.event_id}")
                self._active[task] = claim
                self._running += 1
                task.add_done_callback(self._forget)
            if len(claims) < free and not self._stopping:
                # Nothing more is due now: sleep until an event is committed or the next one falls due. The
                # cap catches what no wake-up announces, such as the lease of another instance that died.
                next_due = await self._store.next_due_in()
                wait = self._lease_seconds if next_due is None else max(next_due, MIN_WAIT_SECONDS)
                await self._store.wait_for_work(min(wait, self._lease_seconds))
        except StoreUnavailable as exc:
            log.warning("store unavailable, claiming again in %gs: %s", STORE_RETRY_SECONDS, exc)
            await asyncio.sleep(STORE_RETRY_SECONDS)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._active.pop(task, None)

    def _free_slot(self) -> None:
        self._running -= 1
        if self._concurrency - self._running >= self._refill_at:  # wake the claim loop only when it would claim
            self._slot_freed.set()

    async def _process(self, claim: Claim) -> None:
        """Run one attempt and record its outcome. It never ends with an exception for nobody to retrieve:
        a bug met while recording is logged with its traceback, and the event is left to its lease (so it
        runs again: at least once)."""
        try:
            started = time.perf_counter()
            error = await self._attempt(claim)
            seconds = time.perf_counter() - started
            report = AttemptReport(seconds * 1000, reported_response_status())
            outcome, change = self._outcome(claim, error, report)
            self._metrics.processing_duration.labels(outcome).observe(seconds)
            if await self._record(change, claim):
                self._outcome_counters[outcome].inc()
        except Exception:
            log.exception(
                "could not record the outcome of the attempt; the event runs again after its lease",
                extra=_log_context(claim),
            )

    async def _attempt(self, claim: Claim) -> BaseException | None:
        """Run the handler once: what it raised, or None. Whatever a handler raises is a failed attempt
        (``SystemExit``, ``KeyboardInterrupt``, a ``CancelledError`` of its own); only the cancellation of
        this task, by ``stop``, goes on as a cancellation. The handler's slot frees as soon as it is done."""
        span = (
            self._tracing.processing_span(claim.event_id, claim.attempt, claim.traceparent)
            if self._tracing is not None
            else contextlib.nullcontext()
        )
        try:
            with span:
                await self._handler(Delivery(claim.event_id, claim.payload, claim.attempt))
        except BaseException as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # we are stopping: the attempt is not counted
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise asyncio.CancelledError from exc
            return exc
        finally:
            self._free_slot()
        return None

    def _outcome(self, claim: Claim, error: BaseException | None, report: AttemptReport) -> tuple[str, Awaitable[bool]]:
        """What the attempt's outcome is, and the fenced change that records it with the attempt."""
        extra = _log_context(claim)
        if error is None:
            log.debug("event processed", extra=extra)
            return "processed", self._store.complete(claim, report)
        reason = describe_error(error)
        if isinstance(error, PermanentError):
            log.warning("permanent error, event failed: %s", reason, extra=extra)
            return "failed", self._store.fail(claim, reason, report)
        if claim.attempt >= self._max_attempts:
            log.warning("attempt failed, no attempts left, event failed: %s", reason, extra=extra)
            return "failed", self._store.fail(claim, reason, report)
        delay = self._backoff.delay(claim.attempt)
        log.info("attempt failed, retrying in %.3fs: %s", delay, reason, extra=extra)
        return "retried", self._store.retry(claim, reason, delay, report)

    async def _record(self, change: Awaitable[bool], claim: Claim) -> bool:
        """Await a fenced state change; a lost claim or an unavailable store leaves the event to its lease."""
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
