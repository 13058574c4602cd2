"""The SQLite store's SQL: its dialect, the statements run per event (built once: sqlite3 caches statements
by their text) and the multi-statement steps that writer operations share. Times are integer microseconds
since the Unix epoch."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from eventctl.domain import EventFilter, NewEvent, Status
from eventctl.store.base import LOST_ERROR
from eventctl.store.query import Bind, Dialect, Positions, like_contains, prefix_successor

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class SqliteDialect(Dialect):
    events = "events"
    attempts = "attempts"

    def placeholder(self, position: int) -> str:
        return "?"  # positional: values are bound in the order their markers appear

    def to_db_time(self, moment: datetime) -> int:
        return to_us(moment)

    def from_db_time(self, value: Any) -> datetime:
        return from_us(value)

    def from_db_payload(self, value: Any) -> bytes:
        return bytes(value)

    def contains_ignoring_case(self, column: str, text: str, bind: Bind) -> str:
        return f"{column} LIKE {bind(like_contains(text))} ESCAPE '\\'"  # LIKE ignores the case of ASCII letters

    def starts_with(self, column: str, prefix: str, bind: Bind) -> str:
        # A range of the unique index on event_id, whose BINARY collation is code point order.
        lower = f"{column} >= {bind(prefix)}"
        successor = prefix_successor(prefix)
        return lower if successor is None else f"{lower} AND {column} < {bind(successor)}"


SQL = SqliteDialect()
WAITING = f"('{Status.ACCEPTED}', '{Status.RETRYING}')"

SELECT_EVENT = f"SELECT {SQL.event_columns} FROM events e WHERE e.event_id = ?"
INSERT_PLAIN = (
    "INSERT INTO events (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent)"
    f" VALUES (?, ?, '{Status.ACCEPTED}', 0, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)


@functools.lru_cache(maxsize=64)
def insert_plain_many(count: int) -> str:
    """``INSERT_PLAIN`` for ``count`` events in one statement, returning the ids it stored."""
    head, _, values = INSERT_PLAIN.removesuffix(" ON CONFLICT (event_id) DO NOTHING").partition(" VALUES ")
    return f"{head} VALUES {','.join([values] * count)} ON CONFLICT (event_id) DO NOTHING RETURNING event_id"


INSERT = (
    "INSERT INTO events (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent,"
    f" ordering_key, deliver_at) VALUES (?, ?, '{Status.ACCEPTED}', 0, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO NOTHING"
)
CLAIM = (
    f"UPDATE events SET status = '{Status.PROCESSING}', attempts = attempts + 1,"
    " claim_token = ?, due_at = ?, updated_at = ?"
    " WHERE seq IN (SELECT seq FROM events WHERE due_at <= ? ORDER BY due_at LIMIT ?)"
    " RETURNING event_id, payload, attempts, traceparent, ordering_key"
)
_FENCE = f" WHERE event_id = ? AND status = '{Status.PROCESSING}' AND claim_token = ?"
# With the history, an outcome writes its attempt's record onto the row (see the schema): the attempt began
# when it was claimed, which updated_at still says (SET reads the row as it was).
_RECORD = "attempt_started_at = updated_at, attempt_duration_ms = ?, attempt_response_status = ?,"


def outcome_statements(history: bool) -> tuple[str, str, str]:
    """(complete, retry, fail). Parameters: ``[duration, response,]`` then as each statement says."""
    record = _RECORD if history else ""
    fence = f" claim_token = NULL, updated_at = ?{_FENCE}"
    return (
        f"UPDATE events SET {record} status = '{Status.PROCESSED}', processed_at = ?, due_at = NULL,"
        f" last_error = NULL,{fence}",
        f"UPDATE events SET {record} status = '{Status.RETRYING}', due_at = ?, last_error = ?,{fence}",
        f"UPDATE events SET {record} status = '{Status.FAILED}', due_at = NULL, last_error = ?,{fence}",
    )


RELEASE = (
    f"UPDATE events SET status = '{Status.ACCEPTED}', due_at = ?, attempts = attempts - 1, claim_token = NULL,"
    f" updated_at = ?{_FENCE} RETURNING seq"
)
REPLAY = (
    f"UPDATE events SET status = '{Status.ACCEPTED}', attempts = 0, due_at = ?, updated_at = ?, processed_at = NULL"
)
INSERT_ATTEMPT = (
    "INSERT INTO attempts (event_seq, attempt, started_at, finished_at, outcome, error, duration_ms, response_status)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A failed event about to be replayed: its attempt's record moves from the row to the attempts table.
ARCHIVE_FAILED = (
    "INSERT INTO attempts (event_seq, attempt, started_at, finished_at, outcome, error, duration_ms, response_status)"
    " SELECT seq, attempts, attempt_started_at, updated_at, status, last_error, attempt_duration_ms,"
    f" attempt_response_status FROM events WHERE status = '{Status.FAILED}' AND attempt_started_at IS NOT NULL AND"
)
# Claiming an event moves the record of its previous attempt off the row: a retrying event's, or, for a
# lease that ran out, the lost attempt's (begun at the claim, updated_at; ended unseen). A trigger, so that
# claims (a hot path) need no statement of their own for it, and plain first claims only test its WHEN. It
# watches attempts, which claims change and outcomes do not: completions do not even test it.
HISTORY_TRIGGER = f"""
CREATE TRIGGER events_attempt_history AFTER UPDATE OF attempts ON events
WHEN NEW.status = '{Status.PROCESSING}' AND (OLD.status = '{Status.PROCESSING}'
    OR (OLD.status = '{Status.RETRYING}' AND OLD.attempt_started_at IS NOT NULL))
BEGIN
    INSERT INTO attempts (event_seq, attempt, started_at, finished_at, outcome, error, duration_ms, response_status)
    SELECT OLD.seq, OLD.attempts, OLD.updated_at, NULL, 'lost', '{LOST_ERROR}', NULL, NULL
    WHERE OLD.status = '{Status.PROCESSING}'
    UNION ALL
    SELECT OLD.seq, OLD.attempts, OLD.attempt_started_at, OLD.updated_at, OLD.status, OLD.last_error,
        OLD.attempt_duration_ms, OLD.attempt_response_status
    WHERE OLD.status = '{Status.RETRYING}';
END
"""
NO_HISTORY_TRIGGER = "DROP TRIGGER IF EXISTS events_attempt_history"
# The key's first unfinished event, if it is parked, becomes due: at its deliver_at, or now if that passed.
_PROMOTE = (
    "UPDATE events SET due_at = max(coalesce(deliver_at, :now), :now), updated_at = :now"
    " WHERE seq = (SELECT seq FROM events WHERE ordering_key = :key"
    f" AND status <> '{Status.PROCESSED}' ORDER BY seq LIMIT 1)"
    f" AND status = '{Status.ACCEPTED}' AND due_at IS NULL"
)


def insert_values(event: NewEvent, now: int) -> tuple[Any, ...]:
    """A keyed event is inserted parked (``promote`` then makes its key's head due); a scheduled one is due
    at its ``deliver_at``, which is kept while it is still ahead."""
    deliver = None if event.deliver_at is None else to_us(event.deliver_at)
    if deliver is not None and deliver <= now:
        deliver = None
    due = None if event.ordering_key is not None else (deliver or now)
    return (event.event_id, event.payload, now, now, due, event.traceparent, event.ordering_key, deliver)


def promote(conn: sqlite3.Connection, keys: Iterable[str], now: int) -> None:
    conn.executemany(_PROMOTE, [{"now": now, "key": key} for key in keys])


def delete_events(conn: sqlite3.Connection, condition: str, params: Sequence[Any], now: int) -> list[Status]:
    """Delete the events ``condition`` selects with their attempts, and let their keys go on; their statuses."""
    rows = conn.execute(f"DELETE FROM events WHERE {condition} RETURNING seq, status, ordering_key", params).fetchall()
    conn.executemany("DELETE FROM attempts WHERE event_seq = ?", [(row[0],) for row in rows])
    promote(conn, {row[2] for row in rows if row[2] is not None}, now)
    return [Status(row[1]) for row in rows]


def positions(conn: sqlite3.Connection, filter: EventFilter) -> Positions:
    """The (first, end) positions of the events received within the filter's times. The store stamps
    received_at in acceptance order, never backwards (see ``SqliteStore``), so they are one range of seq,
    found by bisection along the primary key."""
    if filter.received_since is None and filter.received_until is None:
        return None
    first = None if filter.received_since is None else _first_received_at_or_after(conn, to_us(filter.received_since))
    end = None if filter.received_until is None else _first_received_at_or_after(conn, to_us(filter.received_until))
    return first, end


def _first_received_at_or_after(conn: sqlite3.Connection, moment: int) -> int:
    """The position of the first event received at ``moment`` or later (one past the last if none)."""
    # Two statements: SQLite finds a bare min() or max() of the key in one step, but not both at once.
    low = conn.execute("SELECT min(seq) FROM events").fetchone()[0]
    if low is None:  # no events: every position is "one past the last"
        return 0
    high = conn.execute("SELECT max(seq) FROM events").fetchone()[0] + 1
    while low < high:  # the answer is in [low, high]
        middle = (low + high) // 2
        seq, received_at = conn.execute(
            "SELECT seq, received_at FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", (middle,)
        ).fetchone()  # a row: high is max(seq) + 1 or the seq of a row
        if received_at >= moment:
            high = middle  # no rows lie in [middle, seq): as a position, middle is seq (and it always moves)
        else:
            low = seq + 1
    return int(low)


def status_of(conn: sqlite3.Connection, event_id: str) -> Status | None:
    row = conn.execute("SELECT status FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else Status(row[0])


# How many of the newest events an id_prefix page is first looked for among.
PREFIX_WINDOW = 5000


def prefix_page_among_the_newest(
    conn: sqlite3.Connection, filter: EventFilter, limit: int, before: int | None, bounds: Positions
) -> list[Any]:
    """The page of an id_prefix filter if it lies among the newest ``PREFIX_WINDOW`` positions, else fewer
    rows. SQLite cannot tell a prefix that half the events share from one that ten do, and would read the
    whole range of the id index to sort it; a prefix common among recent events is found here at once, by
    the primary key alone, and only a rarer one is looked up by the range."""
    top = (before - 1) if before is not None else conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    if top is None:
        return []
    first, end = bounds or (None, None)
    window = (max(first or 0, top - PREFIX_WINDOW + 1), end)
    params: list[Any] = []
    statement = SQL.page_statement(filter, before, limit, params, window, source="NOT INDEXED")
    return conn.execute(statement, params).fetchall()


def batch(conn: sqlite3.Connection, filter: EventFilter, limit: int) -> tuple[str, list[Any]]:
    """A query of the positions of up to ``limit`` events ``filter`` selects, oldest first, and its values."""
    params: list[Any] = []
    where = SQL.where(filter, params, None, positions(conn, filter))
    return f"SELECT e.seq FROM events e {where} ORDER BY e.seq LIMIT ?", [*params, limit]


@contextlib.contextmanager
def atomically(conn: sqlite3.Connection) -> Iterator[None]:
    """All or none of the statements inside: the writer's contract for an operation."""
    conn.execute("SAVEPOINT operation")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # the failure may have ended the transaction already
            conn.execute("ROLLBACK TO operation")
            conn.execute("RELEASE operation")
        raise
    conn.execute("RELEASE operation")
