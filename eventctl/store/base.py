"""The store interface: the database is the queue.

Every implementation keeps the same promises, proven by one contract suite (``tests/test_store_contract.py``):

- ``add`` is insert-if-absent decided by the database, and returns only after the event is committed.
- A claim moves due events to ``processing`` under a lease and a fencing ``token``; ``complete``, ``retry``,
  ``fail`` and ``release`` change an event only while that token still holds it, and say whether it did.
- Events become due in ``due`` order: the time they were accepted, their retry time, or their lease expiry.
- ``wait_for_work`` returns as soon as an event is committed, so workers never poll on a tick.

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
from collections.abc import Collection
from datetime import datetime

from eventctl.domain import Claim, Event, EventPage, QueueStats, Status


class Store(abc.ABC):
    """Durable storage of events and their processing state."""

    def __init__(self) -> None:
        self._work_available = asyncio.Event()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema, and recover what a dead process left behind."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release every connection."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the store answers; raise ``StoreUnavailable`` when it does not."""

    @abc.abstractmethod
    async def add(self, event_id: str, payload: bytes, traceparent: str | None = None) -> Event | None:
        """Store a new ``accepted`` event and return ``None`` once it is committed. ``traceparent`` is
        handed to every claim of the event, so that processing joins the trace that accepted it.

        If ``event_id`` is taken, store nothing and return the event that holds it.
        """

    @abc.abstractmethod
    async def get(self, event_id: str) -> Event | None:
        """The event with this id, or ``None``."""

    @abc.abstractmethod
    async def list_events(self, status: Status | None, limit: int, before: int | None) -> EventPage:
        """Up to ``limit`` events, newest first, optionally of one ``status``, older than the ``before``
        position that a previous page returned as ``next_before``."""

    @abc.abstractmethod
    async def replay(self, event_id: str) -> Status | None:
        """Put a ``failed`` event back to ``accepted`` with its attempts reset.

        Returns the status the event had (``FAILED`` means it was replayed), or ``None`` if it is unknown.
        """

    @abc.abstractmethod
    async def prune_processed(self, processed_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` events processed before ``processed_before``; return how many went."""

    @abc.abstractmethod
    async def queue_stats(self) -> QueueStats:
        """How many events are ``accepted``, ``processing``, ``retrying`` and ``failed`` (the statuses that
        form queues) and the age of the oldest due one, read from indexes: the cost grows with the queues,
        not with the processed history."""

    @abc.abstractmethod
    async def claim(self, limit: int, lease_seconds: float) -> list[Claim]:
        """Move up to ``limit`` due events, oldest due first, to ``processing`` and return them.

        Each claim counts as an attempt. An event whose lease ran out is due again.
        """

    @abc.abstractmethod
    async def renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        """Extend the lease of every event still held by one of ``tokens``."""

    @abc.abstractmethod
    async def complete(self, claim: Claim) -> bool:
        """Mark the event ``processed``. False if the claim no longer holds it."""

    @abc.abstractmethod
    async def retry(self, claim: Claim, error: str, delay_seconds: float) -> bool:
        """Mark the event ``retrying``, due again after ``delay_seconds``. False if the claim was lost."""

    @abc.abstractmethod
    async def fail(self, claim: Claim, error: str) -> bool:
        """Mark the event ``failed`` (dead-lettered) with ``error``. False if the claim was lost."""

    @abc.abstractmethod
    async def release(self, claims: Collection[Claim]) -> None:
        """Give unfinished claims back as ``accepted``, due now; the interrupted attempt is not counted."""

    @abc.abstractmethod
    async def next_due_in(self) -> float | None:
        """Seconds until the earliest waiting or leased event is due (0 if overdue), ``None`` if none."""

    def notify_work(self) -> None:
        """Wake every waiting worker of this process: something became due."""
        self._work_available.set()

    async def wait_for_work(self, max_wait: float | None) -> None:
        """Return when ``notify_work`` was called since the last return, or after ``max_wait`` seconds.
        A wake-up may be spurious: callers look for work and wait again."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._work_available.wait()
        self._work_available.clear()
