"""The SQLite store: the default, for one machine, and ``memory://`` for experiments.

Writes go through one writer thread that commits in batches (see ``sqlite_writer``); reads use their own
connections in a small thread pool, which WAL lets run beside the writer. A file store is owned by one
process (a lock file says so), which is why claims found at start belong to a dead process and are released.
Because every write runs on that one thread, one at a time, moving a key's head needs no lock: nothing can
come between reading the key's state and changing it. Times are stored as integer microseconds since the
Unix epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeVar

from eventctl.domain import QUEUE_STATUSES, Attempt, Claim, Event, EventFilter, NewEvent, QueueStats, Status
from eventctl.errors import ConfigError, StoreUnavailable
from eventctl.store.base import LOST_ERROR, RELEASED_ERROR, Outcome, Store
from eventctl.store.query import Bind, Dialect, like_contains, prefix_successor
from eventctl.store.sqlite_schema import migrate
from eventctl.store.sqlite_writer import SqliteWriter, store_error

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_WAITING = f"('{Status.ACCEPTED}', '{Status.RETRYING}')"


def _now_us() -> int:
    return time.time_ns() // 1000


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class SqliteDialect(Dialect):
    events = "events"
    attempts = "attempts"

    def placeholder(self, position: int) -> str:
        return "?"

    def to_db_time(self, moment: datetime) -> int:
        return _us(moment)

    def from_db_time(self, value: Any) -> datetime:
        return _datetime(value)

    def from_db_payload(self, value: Any) -> bytes:
        return bytes(value)

    def contains_ignoring_case(self, column: str, text: str, bind: Bind) -> str:
        return f"{column} LIKE {bind(like_contains(text))} ESCAPE '\\'"  # LIKE ignores the case of ASCII letters

    def starts_with(self, column: str, prefix: str, bind: Bind) -> str:
        # A range of the unique index on event_id, whose BINARY collation is code point order.
        lower = f"{column} >= {bind(prefix)}"  # bound first: the markers are positional
        successor = prefix_successor(prefix)
        return lower if successor is None else f"{lower} AND {column} < {bind(successor)}"


_SQL = SqliteDialect()


class SqliteStore(Store):
    """Events in one SQLite database file (or in memory when ``path`` is ``None``)."""

    def __init__(self, path: str | None, *, synchronous: str = "FULL", attempt_history: bool = True) -> None:
        super().__init__(attempt_history=attempt_history)
        self._path = path
        self._synchronous = synchronous
        self._writer = SqliteWriter(self._connect_writer)
        self._readers: ThreadPoolExecutor | None = None
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_local = threading.local()
        self._lock_file: IO[bytes] | None = None
        self._closed = False  # reads after close are refused as unavailable, as the writer refuses writes

    # -- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._path is not None:
            self._lock_file = _lock_exclusively(self._path)
            self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eventctl-sqlite-reader")
        try:
            await self._writer.start()
            await self._writer.run(self._release_orphaned_claims)
        except (sqlite3.Error, StoreUnavailable) as exc:
            await self.close()
            raise ConfigError(f"invalid DATABASE_URL: cannot open SQLite database {self._path!r}: {exc}") from None

    async def _close(self) -> None:
        self._closed = True
        await self._writer.stop()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            for conn in self._reader_connections:
                conn.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path or ":memory:", isolation_level=None, check_same_thread=False)
        if self._path is not None:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        migrate(conn)
        conn.execute(_LOST_ATTEMPTS_TRIGGER if self._history else "DROP TRIGGER IF EXISTS events_lost_attempt")
        return conn

    def _reader_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            assert self._path is not None
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._reader_local.conn = conn
            self._reader_connections.append(conn)
        return conn

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on a reader connection; in memory, where only the writer's connection sees the data,
        on the writer."""
        if self._readers is None:
            return await self._writer.run(query)
        if self._closed:
            raise StoreUnavailable("the SQLite store is closed")

        def run() -> T:
            try:
                return query(self._reader_connection())
            except sqlite3.Error as exc:
                error = store_error(exc)
                if error is exc:
                    raise
                raise error from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    def _release_orphaned_claims(self, conn: sqlite3.Connection) -> None:
        """Claims found at start were held by a process that died: their attempts were lost, and the events
        are due again now. The attempt may have run, so it stays counted."""
        with _atomically(conn):
            if self._history:
                conn.execute(
                    f"INSERT INTO attempts (event_seq, attempt, started_at, outcome, error) SELECT seq, attempts,"
                    f" updated_at, 'lost', ? FROM events WHERE status = '{Status.PROCESSING}'",
                    (LOST_ERROR,),
                )
            conn.execute(
                f"UPDATE events SET status = '{Status.ACCEPTED}', claim_token = NULL, due_at = ?"
                f" WHERE status = '{Status.PROCESSING}'",
                (_now_us(),),
            )

    # -- reads ---------------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def get(self, event_id: str) -> Event | None:
        def select(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute(_SELECT_EVENT, (event_id,)).fetchone()
            return None if row is None else _SQL.row_to_event(row)

        return await self._read(select)

    async def _select(self, filter: EventFilter, limit: int, before: int | None) -> list[tuple[int, Event]]:
        params: list[Any] = []
        where = _SQL.where(filter, params, before)
        statement = f"SELECT e.seq, {_SQL.event_columns} FROM events e {where} ORDER BY e.seq DESC LIMIT ?"

        def select(conn: sqlite3.Connection) -> list[tuple[int, Event]]:
            rows = conn.execute(statement, (*params, limit)).fetchall()
            return [(row[0], _SQL.row_to_event(row, 1)) for row in rows]

        return await self._read(select)

    async def count_matching(self, filter: EventFilter) -> int:
        params: list[Any] = []
        statement = f"SELECT count(*) FROM events e {_SQL.where(filter, params)}"
        count: int = await self._read(lambda conn: conn.execute(statement, params).fetchone()[0])
        return count

    async def attempts(self, event_id: str) -> list[Attempt] | None:
        def select(conn: sqlite3.Connection) -> list[Attempt] | None:
            rows = conn.execute(_SELECT_ATTEMPTS, (event_id,)).fetchall()
            if not rows:
                return None
            return [_SQL.row_to_attempt(row) for row in rows if row[0] is not None]

        return await self._read(select)

    async def queue_stats(self) -> QueueStats:
        def count(conn: sqlite3.Connection) -> QueueStats:
            now = _now_us()
            # One index range count per status (events_status_seq), one step along events_due, and the two
            # partial indexes events_scheduled and events_blocked_keys.
            depths = {
                status: conn.execute("SELECT count(*) FROM events WHERE status = ?", (str(status),)).fetchone()[0]
                for status in QUEUE_STATUSES
            }
            oldest = conn.execute(
                f"SELECT due_at FROM events WHERE due_at <= ? AND status IN {_WAITING} ORDER BY due_at LIMIT 1",
                (now,),
            ).fetchone()
            scheduled = conn.execute(
                f"SELECT count(*) FROM events WHERE deliver_at > ? AND status = '{Status.ACCEPTED}'", (now,)
            ).fetchone()[0]
            blocked = conn.execute(
                f"SELECT count(*) FROM events WHERE ordering_key IS NOT NULL AND status = '{Status.FAILED}'"
            ).fetchone()[0]
            age = 0.0 if oldest is None else (now - oldest[0]) / 1_000_000
            return QueueStats(depths, age, scheduled=scheduled, blocked_keys=blocked)

        return await self._read(count)

    async def next_due_in(self) -> float | None:
        def earliest(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT min(due_at) FROM events WHERE due_at IS NOT NULL").fetchone()
            return None if row is None else row[0]

        due = await self._read(earliest)
        return None if due is None else max(0.0, (due - _now_us()) / 1_000_000)

    # -- writes --------------------------------------------------------------------------------------

    async def _insert(self, events: Sequence[NewEvent]) -> list[Event | None]:
        if len(events) == 1 and _is_plain(events[0]):
            return [await self._insert_plain(events[0])]

        def insert(conn: sqlite3.Connection) -> list[Event | None]:
            now = _now_us()
            with _atomically(conn):
                stored = [conn.execute(_INSERT, _insert_values(event, now)).rowcount == 1 for event in events]
                _promote(conn, {event.ordering_key for event in events if event.ordering_key is not None}, now)
            return [
                None if inserted else _SQL.row_to_event(conn.execute(_SELECT_EVENT, (event.event_id,)).fetchone())
                for event, inserted in zip(events, stored, strict=True)
            ]

        return await self._writer.run(insert)

    async def _insert_plain(self, event: NewEvent) -> Event | None:
        """The hot path: one statement, as before keys and schedules existed."""

        def insert(conn: sqlite3.Connection) -> Event | None:
            now = _now_us()
            if conn.execute(_INSERT_PLAIN, (event.event_id, event.payload, now, now, now, event.traceparent)).rowcount:
                return None
            return _SQL.row_to_event(conn.execute(_SELECT_EVENT, (event.event_id,)).fetchone())

        return await self._writer.run(insert)

    async def _replay(self, event_id: str) -> Status | None:
        def replay(conn: sqlite3.Connection) -> Status | None:
            now = _now_us()
            if conn.execute(
                f"{_REPLAY} WHERE event_id = ? AND status = '{Status.FAILED}'", (now, now, event_id)
            ).rowcount:
                return Status.FAILED
            return _status(conn, event_id)

        return await self._writer.run(replay)

    async def _delete(self, event_id: str) -> Status | None:
        def delete(conn: sqlite3.Connection) -> Status | None:
            with _atomically(conn):
                deleted = _delete_events(
                    conn, f"event_id = ? AND status <> '{Status.PROCESSING}'", (event_id,), _now_us()
                )
            return deleted[0] if deleted else _status(conn, event_id)

        return await self._writer.run(delete)

    async def _replay_matching(self, filter: EventFilter, limit: int) -> int:
        params: list[Any] = []
        selected = f"SELECT e.seq FROM events e {_SQL.where(filter, params)} ORDER BY e.seq LIMIT ?"

        def replay(conn: sqlite3.Connection) -> int:
            now = _now_us()
            return conn.execute(f"{_REPLAY} WHERE seq IN ({selected})", (now, now, *params, limit)).rowcount

        return await self._writer.run(replay)

    async def _delete_matching(self, filter: EventFilter, limit: int) -> int:
        params: list[Any] = []
        selected = f"SELECT e.seq FROM events e {_SQL.where(filter, params)} ORDER BY e.seq LIMIT ?"

        def delete(conn: sqlite3.Connection) -> int:
            with _atomically(conn):
                return len(_delete_events(conn, f"seq IN ({selected})", (*params, limit), _now_us()))

        return await self._writer.run(delete)

    async def prune_processed(self, processed_before: datetime, limit: int) -> int:
        cutoff = _us(processed_before)
        selected = (
            f"SELECT seq FROM events WHERE status = '{Status.PROCESSED}' AND processed_at < ?"
            " ORDER BY processed_at LIMIT ?"
        )

        def delete(conn: sqlite3.Connection) -> int:
            with _atomically(conn):
                return len(_delete_events(conn, f"seq IN ({selected})", (cutoff, limit), _now_us()))

        return await self._writer.run(delete)

    async def _claim(self, limit: int, lease_seconds: float, token: int) -> list[Claim]:
        def claim(conn: sqlite3.Connection) -> list[Claim]:
            now = _now_us()
            rows = conn.execute(_CLAIM, (token, now + int(lease_seconds * 1_000_000), now, now, limit)).fetchall()
            claimed_at = _datetime(now)
            return [Claim(r[0], r[1], r[2], token, r[3], r[4], claimed_at) for r in rows]

        return await self._writer.run(claim)

    async def _renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        marks = ",".join("?" * len(tokens))

        def renew(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE events SET due_at = ? WHERE status = '{Status.PROCESSING}' AND claim_token IN ({marks})",
                (_now_us() + int(lease_seconds * 1_000_000), *tokens),
            )

        await self._writer.run(renew)

    async def _write_outcomes(self, outcomes: list[Outcome]) -> list[bool]:
        def write(conn: sqlite3.Connection) -> list[bool]:
            now = _now_us()
            changed: list[bool] = []
            attempts: list[tuple[Any, ...]] = []
            keys: set[str] = set()
            with _atomically(conn):
                for outcome in outcomes:
                    claim = outcome.claim
                    if outcome.status is Status.PROCESSED:
                        row = conn.execute(_COMPLETE, (now, now, claim.event_id, claim.token)).fetchone()
                        if row is not None and claim.ordering_key is not None:
                            keys.add(claim.ordering_key)
                    elif outcome.status is Status.RETRYING:
                        due = now + int(outcome.delay_seconds * 1_000_000)
                        row = conn.execute(_RETRY, (due, outcome.error, now, claim.event_id, claim.token)).fetchone()
                    else:
                        row = conn.execute(_FAIL, (outcome.error, now, claim.event_id, claim.token)).fetchone()
                    changed.append(row is not None)
                    if row is not None and self._history:
                        started = _started_us(claim, now)
                        attempts.append((row[0], claim.attempt, started, now, outcome.status.value, outcome.error,
                                         *_reported(outcome)))  # fmt: skip
                conn.executemany(_INSERT_ATTEMPT, attempts)
                _promote(conn, keys, now)
            return changed

        return await self._writer.run(write)

    async def _release(self, claims: Collection[Claim]) -> None:
        def release(conn: sqlite3.Connection) -> None:
            now = _now_us()
            with _atomically(conn):
                for claim in claims:
                    row = conn.execute(_RELEASE, (now, now, claim.event_id, claim.token)).fetchone()
                    if row is not None and self._history:
                        values = (row[0], claim.attempt, _started_us(claim, now), now, "released", RELEASED_ERROR)
                        conn.execute(_INSERT_ATTEMPT, (*values, None, None))

        await self._writer.run(release)


# Statements run once per event are built once (the statement cache is keyed by their text).
_SELECT_EVENT = f"SELECT {_SQL.event_columns} FROM events e WHERE e.event_id = ?"
_SELECT_ATTEMPTS = (
    "SELECT a.attempt, a.started_at, a.finished_at, a.outcome, a.error, a.duration_ms, a.response_status"
    " FROM events e LEFT JOIN attempts a ON a.event_seq = e.seq WHERE e.event_id = ? ORDER BY a.id"
)
_INSERT_PLAIN = (
    "INSERT INTO events (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent)"
    f" VALUES (?, ?, '{Status.ACCEPTED}', 0, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
_INSERT = (
    "INSERT INTO events (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent,"
    f" ordering_key, deliver_at) VALUES (?, ?, '{Status.ACCEPTED}', 0, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO NOTHING"
)
_CLAIM = (
    f"UPDATE events SET status = '{Status.PROCESSING}', attempts = attempts + 1,"
    " claim_token = ?, due_at = ?, updated_at = ?"
    " WHERE seq IN (SELECT seq FROM events WHERE due_at <= ? ORDER BY due_at LIMIT ?)"
    " RETURNING event_id, payload, attempts, traceparent, ordering_key"
)
_FENCE = f" WHERE event_id = ? AND status = '{Status.PROCESSING}' AND claim_token = ? RETURNING seq"
_COMPLETE = (
    f"UPDATE events SET status = '{Status.PROCESSED}', processed_at = ?, due_at = NULL, last_error = NULL,"
    f" claim_token = NULL, updated_at = ?{_FENCE}"
)
_RETRY = (
    f"UPDATE events SET status = '{Status.RETRYING}', due_at = ?, last_error = ?, claim_token = NULL,"
    f" updated_at = ?{_FENCE}"
)
_FAIL = (
    f"UPDATE events SET status = '{Status.FAILED}', due_at = NULL, last_error = ?, claim_token = NULL,"
    f" updated_at = ?{_FENCE}"
)
_RELEASE = (
    f"UPDATE events SET status = '{Status.ACCEPTED}', due_at = ?, attempts = attempts - 1, claim_token = NULL,"
    f" updated_at = ?{_FENCE}"
)
_REPLAY = (
    f"UPDATE events SET status = '{Status.ACCEPTED}', attempts = 0, due_at = ?, updated_at = ?, processed_at = NULL"
)
_INSERT_ATTEMPT = (
    "INSERT INTO attempts (event_seq, attempt, started_at, finished_at, outcome, error, duration_ms, response_status)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# The key's first unfinished event, if it is parked, becomes due: at its deliver_at, or now if that passed.
_PROMOTE = (
    "UPDATE events SET due_at = max(coalesce(deliver_at, :now), :now), updated_at = :now"
    " WHERE seq = (SELECT seq FROM events WHERE ordering_key = :key"
    f" AND status <> '{Status.PROCESSED}' ORDER BY seq LIMIT 1)"
    f" AND status = '{Status.ACCEPTED}' AND due_at IS NULL"
)
# A lease that ran out and is claimed again: the attempt that held it is recorded as lost. A trigger, so
# that claims (a hot path) need no statement of their own to find them.
_LOST_ATTEMPTS_TRIGGER = f"""
CREATE TRIGGER IF NOT EXISTS events_lost_attempt AFTER UPDATE OF claim_token ON events
WHEN OLD.status = '{Status.PROCESSING}' AND NEW.status = '{Status.PROCESSING}'
BEGIN
    INSERT INTO attempts (event_seq, attempt, started_at, outcome, error)
    VALUES (OLD.seq, OLD.attempts, OLD.updated_at, 'lost', '{LOST_ERROR}');
END
"""


def _is_plain(event: NewEvent) -> bool:
    return event.ordering_key is None and event.deliver_at is None


def _insert_values(event: NewEvent, now: int) -> tuple[Any, ...]:
    """A keyed event is inserted parked (``_promote`` then makes its key's head due); a scheduled one is due
    at its ``deliver_at``, which is kept while it is still ahead."""
    deliver = None if event.deliver_at is None else _us(event.deliver_at)
    if deliver is not None and deliver <= now:
        deliver = None
    due = None if event.ordering_key is not None else (deliver or now)
    return (event.event_id, event.payload, now, now, due, event.traceparent, event.ordering_key, deliver)


def _promote(conn: sqlite3.Connection, keys: Iterable[str], now: int) -> None:
    conn.executemany(_PROMOTE, [{"now": now, "key": key} for key in keys])


def _delete_events(conn: sqlite3.Connection, condition: str, params: Sequence[Any], now: int) -> list[Status]:
    """Delete the events ``condition`` selects with their attempts, and let their keys go on; their statuses."""
    rows = conn.execute(f"DELETE FROM events WHERE {condition} RETURNING seq, status, ordering_key", params).fetchall()
    conn.executemany("DELETE FROM attempts WHERE event_seq = ?", [(row[0],) for row in rows])
    _promote(conn, {row[2] for row in rows if row[2] is not None}, now)
    return [Status(row[1]) for row in rows]


def _status(conn: sqlite3.Connection, event_id: str) -> Status | None:
    row = conn.execute("SELECT status FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else Status(row[0])


def _reported(outcome: Outcome) -> tuple[float | None, int | None]:
    report = outcome.report
    return (None, None) if report is None else (report.duration_ms, report.response_status)


def _started_us(claim: Claim, now: int) -> int:
    return now if claim.claimed_at is None else _us(claim.claimed_at)


@contextlib.contextmanager
def _atomically(conn: sqlite3.Connection) -> Iterator[None]:
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


def _lock_exclusively(path: str) -> IO[bytes]:
    """Hold ``<path>.lock`` for the life of the store so a second process cannot share the file."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"invalid DATABASE_URL: the directory {directory!r} does not exist")
    lock_file = open(path + ".lock", "wb")  # noqa: SIM115 - held open until close()
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise ConfigError(
            f"invalid DATABASE_URL: {path!r} is in use by another eventctl process"
            " (a SQLite store belongs to one process; use PostgreSQL to run several)"
        ) from None
    return lock_file
