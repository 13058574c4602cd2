"""The SQL both stores share: the event columns, how a row becomes an ``Event``, and the filter builder.

The two backends differ in how they spell a parameter (``?`` or ``$1``), how they keep times (integer
microseconds or ``timestamptz``) and a few functions; ``Dialect`` holds those differences, and everything
here is written once against it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from eventctl.domain import Attempt, AttemptOutcome, Event, EventFilter, Status

_WAITING = frozenset({Status.ACCEPTED, Status.RETRYING})
Bind = Callable[[Any], str]
Positions = tuple[int | None, int | None] | None


class Row(Protocol):
    """A result row of either driver: a tuple (sqlite3) or a ``Record`` (asyncpg), read by position."""

    def __getitem__(self, index: Any, /) -> Any: ...


class Dialect(abc.ABC):
    """What one backend's SQL looks like."""

    events: str  # the events table
    attempts: str  # the attempts table

    @abc.abstractmethod
    def placeholder(self, position: int) -> str:
        """The parameter marker of the ``position``-th parameter (from 1)."""

    @abc.abstractmethod
    def to_db_time(self, moment: datetime) -> Any:
        """A time as this backend stores it."""

    @abc.abstractmethod
    def from_db_time(self, value: Any) -> datetime:
        """A stored time as a UTC ``datetime``."""

    @abc.abstractmethod
    def from_db_payload(self, value: Any) -> bytes:
        """A stored payload as the JSON text's bytes."""

    @abc.abstractmethod
    def contains_ignoring_case(self, column: str, text: str, bind: Bind) -> str:
        """A condition: ``column`` holds ``text``, case aside, taken literally (``%`` is no wildcard).
        ``bind(value)`` adds a parameter and returns its marker."""

    @abc.abstractmethod
    def starts_with(self, column: str, prefix: str, bind: Bind) -> str:
        """A condition: ``column`` starts with ``prefix``."""

    # -- what follows is built from the above, once for both stores --------------------------------------

    @property
    def event_columns(self) -> str:
        """The columns ``row_to_event`` reads, in its order, for a query ``FROM <events> e``.

        ``blocked_by`` is found only for a parked event (keyed, ``accepted``, not due): the first entry of its
        key in the index of unfinished keyed events, which is the key's head.
        """
        return (
            "e.event_id, e.status, e.payload, e.attempts, e.received_at, e.updated_at, e.processed_at, e.due_at,"
            " e.last_error, e.ordering_key,"
            f" CASE WHEN e.ordering_key IS NOT NULL AND e.status = '{Status.ACCEPTED}' AND e.due_at IS NULL"
            f" THEN (SELECT h.event_id FROM {self.events} h WHERE h.ordering_key = e.ordering_key"
            f" AND h.status <> '{Status.PROCESSED}' ORDER BY h.seq LIMIT 1) END"
        )

    def row_to_event(self, row: Row, offset: int = 0) -> Event:
        """The ``Event`` in ``row[offset:]``, whose columns are ``event_columns``."""
        (event_id, status, payload, attempts, received_at, updated_at, processed_at, due_at, last_error, key,
         blocked_by) = row[offset : offset + 11]  # fmt: skip
        status = Status(status)
        return Event(
            event_id=event_id,
            status=status,
            payload=self.from_db_payload(payload),
            attempts=attempts,
            received_at=self.from_db_time(received_at),
            updated_at=self.from_db_time(updated_at),
            processed_at=None if processed_at is None else self.from_db_time(processed_at),
            # While processing, due_at is the lease expiry, which is no attempt time a reader should see.
            next_attempt_at=self.from_db_time(due_at) if status in _WAITING and due_at is not None else None,
            last_error=last_error,
            ordering_key=key,
            blocked_by=blocked_by,
        )

    @property
    def attempts_statement(self) -> str:
        """An event's attempts, oldest first, for the event id bound three times (``?`` markers are
        positional): those of the attempts table in the order they were recorded, then the latest one, whose
        record is on the event's row while it is processed, retrying or failed (see the schemas); and a last
        row that says the event exists. ``rows_to_attempts`` reads it."""
        done = ", ".join(f"'{status}'" for status in (Status.PROCESSED, Status.RETRYING, Status.FAILED))
        return (
            "SELECT 0 AS part, a.id AS n, a.attempt, a.started_at, a.finished_at, a.outcome, a.error, a.duration_ms,"
            f" a.response_status FROM {self.events} e JOIN {self.attempts} a ON a.event_seq = e.seq"
            f" WHERE e.event_id = {self.placeholder(1)}"
            " UNION ALL SELECT 1, 0, e.attempts, e.attempt_started_at, e.updated_at, e.status, e.last_error,"
            f" e.attempt_duration_ms, e.attempt_response_status FROM {self.events} e"
            f" WHERE e.event_id = {self.placeholder(1)} AND e.attempt_started_at IS NOT NULL AND e.status IN ({done})"
            f" UNION ALL SELECT 2, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM {self.events} e"
            f" WHERE e.event_id = {self.placeholder(1)} ORDER BY part, n"
        )

    def rows_to_attempts(self, rows: Sequence[Row]) -> list[Attempt] | None:
        """The attempts in the rows of ``attempts_statement``; ``None`` if the event does not exist."""
        if not rows:
            return None
        return [self._row_to_attempt(row[2:]) for row in rows if row[0] != 2]

    def _row_to_attempt(self, row: Row) -> Attempt:
        attempt, started_at, finished_at, outcome, error, duration_ms, response_status = row[0:7]
        return Attempt(
            attempt=attempt,
            started_at=self.from_db_time(started_at),
            finished_at=None if finished_at is None else self.from_db_time(finished_at),
            outcome=AttemptOutcome(outcome),
            error=error,
            duration_ms=duration_ms,
            response_status=response_status,
        )

    def page_statement(
        self,
        filter: EventFilter,
        before: int | None,
        limit: int,
        params: list[Any],
        positions: Positions = None,
        source: str = "",
    ) -> str:
        """Up to ``limit`` (seq, ``event_columns``) rows that ``filter`` selects, older than ``before``, newest
        first. The page is chosen on the filter's columns alone (often from an index without a look at the
        table), and only its rows are read whole. ``source`` follows the table's alias in the choosing query
        (an index hint)."""
        where = self.where(filter, params, before, positions)
        params.append(limit)
        return (
            f"SELECT e.seq, {self.event_columns} FROM {self.events} e WHERE e.seq IN (SELECT e.seq FROM"
            f" {self.events} e {source} {where} ORDER BY e.seq DESC LIMIT {self.placeholder(len(params))})"
            " ORDER BY e.seq DESC"
        )

    def where(
        self, filter: EventFilter, params: list[Any], before: int | None = None, positions: Positions = None
    ) -> str:
        """``WHERE ...`` (or nothing) for the events ``filter`` selects, older than position ``before``;
        the values go to the end of ``params``. Each condition has an index to answer it (see the schemas).
        ``positions`` (first, end), where a backend knows them, bound the positions (seq) of every event the
        time filters select, so that the primary key answers them too."""

        def bind(value: Any) -> str:
            params.append(value)
            return self.placeholder(len(params))

        conditions: list[str] = []
        if filter.statuses:
            marks = ", ".join(bind(str(status)) for status in sorted(filter.statuses))
            conditions.append(f"e.status IN ({marks})")
        if filter.ordering_key is not None:
            conditions.append(f"e.ordering_key = {bind(filter.ordering_key)}")
        if filter.received_since is not None:
            conditions.append(f"e.received_at >= {bind(self.to_db_time(filter.received_since))}")
        if filter.received_until is not None:
            conditions.append(f"e.received_at < {bind(self.to_db_time(filter.received_until))}")
        if filter.error is not None:
            contains = self.contains_ignoring_case("e.last_error", filter.error, bind)
            conditions.append(f"e.last_error IS NOT NULL AND {contains}")  # the condition of events_errors
        if filter.id_prefix is not None:
            conditions.append(self.starts_with("e.event_id", filter.id_prefix, bind))
        if before is not None:
            conditions.append(f"e.seq < {bind(before)}")
        if positions is not None:
            first, end = positions
            if first is not None:
                conditions.append(f"e.seq >= {bind(first)}")
            if end is not None:
                conditions.append(f"e.seq < {bind(end)}")
        return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def like_contains(text: str) -> str:
    """The LIKE pattern (escape character ``\\``) that matches any text holding ``text``."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def prefix_successor(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``, in code point order (which
    is the byte order of UTF-8), or ``None`` when there is none."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:  # surrogates are no characters: the next one is U+E000
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None
