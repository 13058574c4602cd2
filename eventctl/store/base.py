"""The store interface: the database is the queue.

Every implementation keeps the same promises, proven by one contract suite (``tests/test_store_contract.py``):

- ``add`` and ``add_many`` are insert-if-absent decided by the database, and return only after the events
  are committed (``add_many``'s all together, or none).
- A claim moves due events to ``processing`` under a lease and a fencing ``token``; ``complete``, ``retry``,
  ``fail`` and ``release`` change an event only while that token still holds it, and say whether it did.
- Events become due in ``due`` order: the time they were accepted (or asked to run at, ``deliver_at``),
  their retry time, or their lease expiry.
- Ordering keys: of a key's unfinished events (any status but ``processed``), only the earliest accepted
  (the head) is ever due; the others are parked (``accepted``, not due, ``blocked_by`` the head). When the
  head is processed or deleted, the next one becomes due (at its own ``deliver_at``, if that is later). A
  ``failed`` head holds the key until it is replayed (it runs first again) or deleted.
- Every attempt is recorded with its outcome, in the same write as the outcome: processed, retrying and
  failed by ``complete``, ``retry`` and ``fail``; released by ``release``; lost (its lease ran out) when the
  event is claimed again, and on SQLite for the claims found at start. An event's attempts go with it.
- ``wait_for_work`` returns as soon as an event is committed, so workers never poll on a tick.

The public methods here hold those rules that need no SQL (batching, wake-ups, which statuses a bulk action
may touch); each backend gives the hooks (``_insert``, ``_write_outcomes``, ...) that do the SQL, and shares
the column list, the row mapping and the filter builder of ``store/query.py``.

One rule for errors, on every path of every store (each driver applies it in one place):

- A failure of the database or of the way to it is raised as ``StoreUnavailable``: a connection lost or
  refused, a pool closed or exhausted, too many connections, a timeout, an I/O error, a full disk, a
  database locked past the busy timeout, a read-only database or transaction, a serialization failure or
  deadlock, the server shutting down. Retrying later may succeed: the API answers 503 with ``Retry-After``,
  and the worker and the background tasks wait and try again.
- Anything else is a bug (our SQL is wrong, an integrity error we did not expect, a Python exception in our
  code): it propagates as itself, never wrapped, so that whoever catches it logs it with its traceback (the
  API answers a 500 problem, the worker leaves the event to its lease, the supervisor restarts the loop).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from eventctl.domain import (
    Attempt,
    AttemptReport,
    BulkAction,
    Claim,
    Event,
    EventFilter,
    EventPage,
    NewEvent,
    QueueStats,
    Status,
)
from eventctl.store.batching import BatchedWrite

RELEASED_ERROR = "released unfinished at shutdown"
LOST_ERROR = "the lease ran out before an outcome was recorded"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt, to be written through the claim's fence with its attempt record."""

    claim: Claim
    status: Status  # PROCESSED, RETRYING or FAILED: also the attempt's outcome
    error: str | None
    delay_seconds: float  # RETRYING: how long until the next attempt is due
    report: AttemptReport | None


def is_plain(event: NewEvent) -> bool:
    """Whether ``event`` has neither a key nor a schedule: the hot path, which pays for neither."""
    return event.ordering_key is None and event.deliver_at is None


class Store(abc.ABC):
    """Durable storage of events and their processing state. ``attempt_history=False`` records no
    attempts (``attempts`` then lists none)."""

    def __init__(self, *, attempt_history: bool = True) -> None:
        self._work_available = asyncio.Event()
        self._history = attempt_history
        # Outcomes that arrive while one batch is being written go together in the next: one store round
        # trip for the batch instead of one per event (completions are the most frequent write after inserts).
        self._outcomes = BatchedWrite(self._write_outcomes, name=f"eventctl-{type(self).__name__}-outcomes")

    # -- lifecycle -------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema, and recover what a dead process left behind."""

    async def close(self) -> None:
        """Finish pending writes (outcomes already handed over are written, not dropped) and release every
        connection."""
        await self._outcomes.flush()
        await self._close()

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the store answers; raise ``StoreUnavailable`` when it does not."""

    # -- events ----------------------------------------------------------------------------------------

    async def add(self, event: NewEvent) -> Event | None:
        """Store ``event`` and return ``None`` once it is committed; if its id is taken, store nothing and
        return the event that holds it. Its ``traceparent`` is handed to every claim of it, so that
        processing joins the trace that accepted it."""
        [existing] = await self._insert((event,))
        if existing is None:
            self._announce_work()
        return existing

    async def add_many(self, events: Sequence[NewEvent]) -> list[Event | None]:
        """Store ``events`` (distinct ids) in one transaction: all of them or, on failure, none. Result
        ``i`` is ``None`` when item ``i`` was stored, else the event holding its id. Events of one key are
        accepted in the order given."""
        if not events:
            return []
        results = await self._insert(events)
        if any(result is None for result in results):
            self._announce_work()
        return results

    @abc.abstractmethod
    async def get(self, event_id: str) -> Event | None:
        """The event with this id, or ``None``."""

    async def list_events(self, filter: EventFilter, limit: int, before: int | None) -> EventPage:
        """Up to ``limit`` events that ``filter`` selects, newest first, older than the ``before`` position
        that a previous page returned as ``next_before``."""
        rows = await self._select(filter, limit + 1, before)
        items = [event for _, event in rows[:limit]]
        return EventPage(items, rows[limit - 1][0] if len(rows) > limit else None)

    @abc.abstractmethod
    async def attempts(self, event_id: str) -> list[Attempt] | None:
        """The event's recorded attempts, oldest first; ``None`` if there is no such event."""

    @abc.abstractmethod
    async def count_matching(self, filter: EventFilter) -> int:
        """How many events ``filter`` selects."""

    async def replay(self, event_id: str) -> Status | None:
        """Put a ``failed`` event back to ``accepted`` with its attempts reset, due now.

        Returns the status the event had (``FAILED`` means it was replayed), or ``None`` if it is unknown.
        A failed head of an ordering key is still its key's head: it runs before the key's later events.
        """
        before = await self._replay(event_id)
        if before is Status.FAILED:
            self._announce_work()
        return before

    async def delete(self, event_id: str) -> Status | None:
        """Delete the event and its attempts, unless it is ``processing``; its id is free again. Returns the
        status it had (``PROCESSING``: not deleted), or ``None`` if it is unknown. Deleting a key's head makes
        the next event of the key due."""
        before = await self._delete(event_id)
        if before not in (None, Status.PROCESSING):
            self._announce_work()
        return before

    async def replay_matching(self, filter: EventFilter, limit: int) -> int:
        """Replay up to ``limit`` of the ``failed`` events ``filter`` selects (one bounded batch; call again
        until it returns less than ``limit``); return how many were replayed."""
        narrowed = filter.within(BulkAction.REPLAY.statuses)
        if narrowed is None:
            return 0
        changed = await self._replay_matching(narrowed, limit)
        if changed:
            self._announce_work()
        return changed

    async def delete_matching(self, filter: EventFilter, limit: int) -> int:
        """Delete up to ``limit`` of the ``processed`` and ``failed`` events ``filter`` selects, with their
        attempts (one bounded batch, as ``replay_matching``); return how many were deleted."""
        narrowed = filter.within(BulkAction.DELETE.statuses)
        if narrowed is None:
            return 0
        changed = await self._delete_matching(narrowed, limit)
        if changed:
            self._announce_work()  # a deleted failed head lets its key go on
        return changed

    @abc.abstractmethod
    async def prune_processed(self, processed_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` events processed before ``processed_before``, with their attempts; return
        how many went."""

    @abc.abstractmethod
    async def queue_stats(self) -> QueueStats:
        """How many events are ``accepted``, ``processing``, ``retrying`` and ``failed`` (the statuses that
        form queues), the age of the oldest due one, how many are scheduled and how many keys are blocked,
        read from indexes: the cost grows with the queues, not with the processed history."""

    # -- the worker's side -----------------------------------------------------------------------------

    async def claim(self, limit: int, lease_seconds: float) -> list[Claim]:
        """Move up to ``limit`` due events, oldest due first, to ``processing`` and return them.

        Each claim counts as an attempt. An event whose lease ran out is due again; claiming it records the
        attempt that held it as lost.
        """
        return await self._claim(limit, lease_seconds, random.getrandbits(62))

    async def renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        """Extend the lease of every event still held by one of ``tokens``."""
        if tokens:
            await self._renew(tokens, lease_seconds)

    async def complete(self, claim: Claim, report: AttemptReport | None = None) -> bool:
        """Mark the event ``processed`` and record the attempt. False if the claim no longer holds it."""
        completed = await self._outcomes(Outcome(claim, Status.PROCESSED, None, 0.0, report))
        if completed and claim.ordering_key is not None:
            self._announce_work()  # the key's next event may be due now, on any instance
        return completed

    async def retry(self, claim: Claim, error: str, delay_seconds: float, report: AttemptReport | None = None) -> bool:
        """Mark the event ``retrying``, due again after ``delay_seconds``, and record the attempt. False if
        the claim was lost."""
        changed = await self._outcomes(Outcome(claim, Status.RETRYING, error, delay_seconds, report))
        if changed:
            self.notify_work()  # this process's worker may plan a shorter sleep
        return changed

    async def fail(self, claim: Claim, error: str, report: AttemptReport | None = None) -> bool:
        """Mark the event ``failed`` (dead-lettered) with ``error`` and record the attempt. False if the
        claim was lost. A failed head holds its key."""
        return await self._outcomes(Outcome(claim, Status.FAILED, error, 0.0, report))

    async def release(self, claims: Collection[Claim]) -> None:
        """Give unfinished claims back as ``accepted``, due now; the interrupted attempt is recorded as
        released and not counted."""
        if claims:
            await self._release(claims)
            self._announce_work()

    @abc.abstractmethod
    async def next_due_in(self) -> float | None:
        """Seconds until the earliest waiting or leased event is due (0 if overdue), ``None`` if none."""

    # -- wake-ups --------------------------------------------------------------------------------------

    def notify_work(self) -> None:
        """Wake every waiting worker of this process: something became due."""
        self._work_available.set()

    def _announce_work(self) -> None:
        """Something was committed that may be due: wake this process's worker, and (where instances share
        the store) the others'."""
        self.notify_work()

    async def wait_for_work(self, max_wait: float | None) -> None:
        """Return when ``notify_work`` was called since the last return, or after ``max_wait`` seconds.
        A wake-up may be spurious: callers look for work and wait again."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._work_available.wait()
        self._work_available.clear()

    # -- the backend's hooks ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release every connection; nothing is pending any more."""

    @abc.abstractmethod
    async def _insert(self, events: Sequence[NewEvent]) -> list[Event | None]:
        """Insert-if-absent ``events`` in one transaction, keyed ones parked and their keys' heads made due;
        per item ``None`` (stored) or the event holding its id."""

    @abc.abstractmethod
    async def _select(self, filter: EventFilter, limit: int, before: int | None) -> list[tuple[int, Event]]:
        """Up to ``limit`` (position, event) pairs of the events ``filter`` selects, newest first."""

    @abc.abstractmethod
    async def _replay(self, event_id: str) -> Status | None:
        """``replay``'s change: the status the event had, ``FAILED`` if it was replayed."""

    @abc.abstractmethod
    async def _delete(self, event_id: str) -> Status | None:
        """``delete``'s change, with the key's next event made due."""

    @abc.abstractmethod
    async def _replay_matching(self, filter: EventFilter, limit: int) -> int:
        """Replay up to ``limit`` failed events ``filter`` selects (its statuses are only ``failed``)."""

    @abc.abstractmethod
    async def _delete_matching(self, filter: EventFilter, limit: int) -> int:
        """Delete up to ``limit`` events ``filter`` selects (its statuses are only deletable ones), with
        their attempts, their keys' next events made due."""

    @abc.abstractmethod
    async def _claim(self, limit: int, lease_seconds: float, token: int) -> list[Claim]:
        """``claim``'s change, under ``token``, recording the lost attempt of each reclaimed lease."""

    @abc.abstractmethod
    async def _renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        """``renew``'s change, for a non-empty ``tokens``."""

    @abc.abstractmethod
    async def _write_outcomes(self, outcomes: list[Outcome]) -> list[bool]:
        """Write each outcome through its claim's fence (the event still ``processing`` under that token),
        with its attempt record, and make due the next event of each processed head's key; all in one
        transaction. Per outcome, whether the fence held."""

    @abc.abstractmethod
    async def _release(self, claims: Collection[Claim]) -> None:
        """``release``'s change, through each claim's fence, with each released attempt's record."""
