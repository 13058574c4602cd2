"""The SQLite store: the default, for one machine, and ``memory://`` for experiments.

Writes go through one writer thread that commits in batches (see ``sqlite_writer``); reads use their own
connections in a small thread pool, which WAL lets run beside the writer. A file store is owned by one
process (it holds a lock on the database file itself), which is why claims found at start belong to a dead
process and are released.
Because every write runs on that one thread, one at a time, moving a key's head needs no lock: nothing can
come between reading the key's state and changing it. The SQL is in ``sqlite_statements``.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import IO, Any, TypeVar

from eventctl.domain import QUEUE_STATUSES, Attempt, Claim, Event, EventFilter, NewEvent, QueueStats, Status
from eventctl.errors import ConfigError, StoreUnavailable
from eventctl.store import sqlite_statements as sql
from eventctl.store.base import LOST_ERROR, RELEASED_ERROR, Outcome, Store, is_plain
from eventctl.store.sqlite_schema import migrate
from eventctl.store.sqlite_writer import SqliteWriter, WalSyncer, store_error

T = TypeVar("T")

log = logging.getLogger(__name__)

_SQL = sql.SQL


class SqliteStore(Store):
    """Events in one SQLite database file (or in memory when ``path`` is ``None``)."""

    def __init__(self, path: str | None, *, synchronous: str = "FULL", attempt_history: bool = True) -> None:
        super().__init__(attempt_history=attempt_history)
        self._path = path
        # synchronous=FULL is kept with the fsync moved off the commit: the commit runs with NORMAL, and the
        # syncer fsyncs the WAL before a durable write is answered (group commit across transactions).
        self._syncer = WalSyncer(f"{path}-wal") if path is not None and synchronous == "FULL" else None
        self._synchronous = "NORMAL" if self._syncer is not None else synchronous
        self._writer = SqliteWriter(self._connect_writer, self._syncer)
        self._readers: ThreadPoolExecutor | None = None
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_local = threading.local()
        self._lock_file: IO[bytes] | None = None
        self._closed = False  # reads after close are refused as unavailable, as the writer refuses writes
        self._complete_sql, self._retry_sql, self._fail_sql = sql.outcome_statements(attempt_history)
        self._last_received = 0  # the writer's: received_at of the newest event, which no new one goes below

    # -- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Take the database file (creating it if it is missing), migrate it, and release the claims a dead
        process left. A file that cannot be used, or that another process holds, raises ``ConfigError``."""
        if self._path is not None:
            self._lock_file, real_path = _lock_exclusively(self._path)
            self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eventctl-sqlite-reader")
        try:
            await self._writer.start()
            await self._writer.run(self._release_orphaned_claims)
        except (sqlite3.Error, StoreUnavailable) as exc:
            await self.close()
            raise ConfigError(f"invalid DATABASE_URL: cannot open SQLite database {self._path!r}: {exc}") from None
        if self._path is not None:
            log.info("SQLite database %s", real_path)

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
        newest = conn.execute("SELECT received_at FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self._last_received = 0 if newest is None else newest[0]
        # Made afresh at every start (it is no data): its definition follows the code, and ATTEMPT_HISTORY.
        conn.execute(sql.NO_HISTORY_TRIGGER)
        if self._history:
            conn.execute(sql.HISTORY_TRIGGER)
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
        with sql.atomically(conn):
            if self._history:
                conn.execute(
                    f"INSERT INTO attempts (event_seq, attempt, started_at, outcome, error) SELECT seq, attempts,"
                    f" updated_at, 'lost', ? FROM events WHERE status = '{Status.PROCESSING}'",
                    (LOST_ERROR,),
                )
            conn.execute(
                f"UPDATE events SET status = '{Status.ACCEPTED}', claim_token = NULL, due_at = ?"
                f" WHERE status = '{Status.PROCESSING}'",
                (sql.now_us(),),
            )

    # -- reads ---------------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def get(self, event_id: str) -> Event | None:
        def select(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute(sql.SELECT_EVENT, (event_id,)).fetchone()
            return None if row is None else _SQL.row_to_event(row)

        return await self._read(select)

    async def _select(self, filter: EventFilter, limit: int, before: int | None) -> list[tuple[int, Event]]:
        def select(conn: sqlite3.Connection) -> list[tuple[int, Event]]:
            positions = sql.positions(conn, filter)
            rows = sql.prefix_page_among_the_newest(conn, filter, limit, before, positions) if filter.id_prefix else []
            if len(rows) < limit:
                params: list[Any] = []
                rows = conn.execute(_SQL.page_statement(filter, before, limit, params, positions), params).fetchall()
            return [(row[0], _SQL.row_to_event(row, 1)) for row in rows]

        return await self._read(select)

    async def count_matching(self, filter: EventFilter) -> int:
        def count(conn: sqlite3.Connection) -> int:
            params: list[Any] = []
            where = _SQL.where(filter, params, None, sql.positions(conn, filter))
            counted: int = conn.execute(f"SELECT count(*) FROM events e {where}", params).fetchone()[0]
            return counted

        return await self._read(count)

    async def attempts(self, event_id: str) -> list[Attempt] | None:
        def select(conn: sqlite3.Connection) -> list[Attempt] | None:
            return _SQL.rows_to_attempts(conn.execute(_SELECT_ATTEMPTS, (event_id,) * 3).fetchall())

        return await self._read(select)

    async def queue_stats(self) -> QueueStats:
        def count(conn: sqlite3.Connection) -> QueueStats:
            now = sql.now_us()
            # One index range count per status (events_status_seq), one step along events_due, and the two
            # partial indexes events_scheduled and events_blocked_keys.
            depths = {
                status: conn.execute("SELECT count(*) FROM events WHERE status = ?", (str(status),)).fetchone()[0]
                for status in QUEUE_STATUSES
            }
            oldest = conn.execute(
                f"SELECT due_at FROM events WHERE due_at <= ? AND status IN {sql.WAITING} ORDER BY due_at LIMIT 1",
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
        return None if due is None else max(0.0, (due - sql.now_us()) / 1_000_000)

    # -- writes --------------------------------------------------------------------------------------

    async def _insert(self, events: Sequence[NewEvent]) -> list[Event | None]:
        if len(events) == 1 and is_plain(events[0]):
            return [await self._insert_plain(events[0])]

        def insert(conn: sqlite3.Connection) -> list[Event | None]:
            now = self._received_now()
            with sql.atomically(conn):
                stored = [conn.execute(sql.INSERT, sql.insert_values(event, now)).rowcount == 1 for event in events]
                sql.promote(conn, {event.ordering_key for event in events if event.ordering_key is not None}, now)
            return [
                None if inserted else _SQL.row_to_event(conn.execute(sql.SELECT_EVENT, (event.event_id,)).fetchone())
                for event, inserted in zip(events, stored, strict=True)
            ]

        return await self._writer.run(insert)

    def _received_now(self) -> int:
        """The time to stamp new events with, on the writer's thread: now, but never earlier than the newest
        event (should the clock step back), so that received_at follows acceptance order and a time filter
        is a range of positions (``sqlite_statements.positions``)."""
        self._last_received = max(sql.now_us(), self._last_received)
        return self._last_received

    async def _insert_plain(self, event: NewEvent) -> Event | None:
        """The hot path: one statement, as before keys and schedules existed."""

        def insert(conn: sqlite3.Connection) -> Event | None:
            now = self._received_now()
            if conn.execute(
                sql.INSERT_PLAIN, (event.event_id, event.payload, now, now, now, event.traceparent)
            ).rowcount:
                return None
            return _SQL.row_to_event(conn.execute(sql.SELECT_EVENT, (event.event_id,)).fetchone())

        return await self._writer.run(insert)

    async def _replay(self, event_id: str) -> Status | None:
        def replay(conn: sqlite3.Connection) -> Status | None:
            now = sql.now_us()
            with sql.atomically(conn):
                if self._history:
                    conn.execute(f"{sql.ARCHIVE_FAILED} event_id = ?", (event_id,))
                replayed = conn.execute(
                    f"{sql.REPLAY} WHERE event_id = ? AND status = '{Status.FAILED}'", (now, now, event_id)
                ).rowcount
            return Status.FAILED if replayed else sql.status_of(conn, event_id)

        return await self._writer.run(replay)

    async def _delete(self, event_id: str) -> Status | None:
        def delete(conn: sqlite3.Connection) -> Status | None:
            with sql.atomically(conn):
                deleted = sql.delete_events(
                    conn, f"event_id = ? AND status <> '{Status.PROCESSING}'", (event_id,), sql.now_us()
                )
            return deleted[0] if deleted else sql.status_of(conn, event_id)

        return await self._writer.run(delete)

    async def _replay_matching(self, filter: EventFilter, limit: int) -> int:
        def replay(conn: sqlite3.Connection) -> int:
            now = sql.now_us()
            with sql.atomically(conn):
                seqs = conn.execute(*sql.batch(conn, filter, limit)).fetchall()
                if self._history:
                    conn.executemany(f"{sql.ARCHIVE_FAILED} seq = ?", seqs)
                return conn.executemany(f"{sql.REPLAY} WHERE seq = ?", [(now, now, seq) for (seq,) in seqs]).rowcount

        return await self._writer.run(replay)

    async def _delete_matching(self, filter: EventFilter, limit: int) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            selected, params = sql.batch(conn, filter, limit)
            with sql.atomically(conn):
                return len(sql.delete_events(conn, f"seq IN ({selected})", params, sql.now_us()))

        return await self._writer.run(delete)

    async def prune_processed(self, processed_before: datetime, limit: int) -> int:
        cutoff = sql.to_us(processed_before)
        selected = (
            f"SELECT seq FROM events WHERE status = '{Status.PROCESSED}' AND processed_at < ?"
            " ORDER BY processed_at LIMIT ?"
        )

        def delete(conn: sqlite3.Connection) -> int:
            with sql.atomically(conn):
                return len(sql.delete_events(conn, f"seq IN ({selected})", (cutoff, limit), sql.now_us()))

        return await self._writer.run(delete)

    async def _claim(self, limit: int, lease_seconds: float, token: int) -> list[Claim]:
        def claim(conn: sqlite3.Connection) -> list[Claim]:
            now = sql.now_us()
            rows = conn.execute(sql.CLAIM, (token, now + int(lease_seconds * 1_000_000), now, now, limit)).fetchall()
            claimed_at = sql.from_us(now)
            return [Claim(r[0], r[1], r[2], token, r[3], r[4], claimed_at) for r in rows]

        return await self._writer.run(claim, durable=False)  # at-least-once covers a lost claim

    async def _renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        marks = ",".join("?" * len(tokens))

        def renew(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE events SET due_at = ? WHERE status = '{Status.PROCESSING}' AND claim_token IN ({marks})",
                (sql.now_us() + int(lease_seconds * 1_000_000), *tokens),
            )

        await self._writer.run(renew, durable=False)

    async def _write_outcomes(self, outcomes: list[Outcome]) -> list[bool]:
        record = self._history

        def write(conn: sqlite3.Connection) -> list[bool]:
            now = sql.now_us()
            changed: list[bool] = []
            keys: set[str] = set()
            with sql.atomically(conn):
                if all(outcome.status is Status.PROCESSED for outcome in outcomes) and self._complete_all(
                    conn, outcomes, now
                ):
                    return [True] * len(outcomes)
                for outcome in outcomes:
                    claim, report = outcome.claim, outcome.report
                    attempt = (
                        (None, None) if report is None else (report.duration_ms, report.response_status)
                    ) if record else ()  # fmt: skip
                    fence = (now, claim.event_id, claim.token)
                    if outcome.status is Status.PROCESSED:
                        written = conn.execute(self._complete_sql, (*attempt, now, *fence)).rowcount == 1
                        if written and claim.ordering_key is not None:
                            keys.add(claim.ordering_key)
                    elif outcome.status is Status.RETRYING:
                        due = now + int(outcome.delay_seconds * 1_000_000)
                        written = conn.execute(self._retry_sql, (*attempt, due, outcome.error, *fence)).rowcount == 1
                    else:
                        written = conn.execute(self._fail_sql, (*attempt, outcome.error, *fence)).rowcount == 1
                    changed.append(written)
                sql.promote(conn, keys, now)
            return changed

        return await self._writer.run(write, durable=False)  # a lost outcome: the event runs again

    def _complete_all(self, conn: sqlite3.Connection, outcomes: list[Outcome], now: int) -> bool:
        """The common batch, every outcome a completion, in one ``executemany``: True if every fence held
        (and the batch is written); else nothing is changed and False, for the statement per outcome that
        tells which fences held."""
        record = self._history
        params = [
            (
                *(
                    ((None, None) if o.report is None else (o.report.duration_ms, o.report.response_status))
                    if record
                    else ()
                ),
                now,
                now,
                o.claim.event_id,
                o.claim.token,
            )
            for o in outcomes
        ]
        conn.execute("SAVEPOINT complete_all")
        if conn.executemany(self._complete_sql, params).rowcount == len(outcomes):
            conn.execute("RELEASE complete_all")
            sql.promote(conn, {o.claim.ordering_key for o in outcomes if o.claim.ordering_key is not None}, now)
            return True
        conn.execute("ROLLBACK TO complete_all")
        conn.execute("RELEASE complete_all")
        return False

    async def _release(self, claims: Collection[Claim]) -> None:
        def release(conn: sqlite3.Connection) -> None:
            now = sql.now_us()
            with sql.atomically(conn):
                for claim in claims:
                    row = conn.execute(sql.RELEASE, (now, now, claim.event_id, claim.token)).fetchone()
                    if row is not None and self._history:
                        started = now if claim.claimed_at is None else sql.to_us(claim.claimed_at)
                        conn.execute(
                            sql.INSERT_ATTEMPT,
                            (row[0], claim.attempt, started, now, "released", RELEASED_ERROR, None, None),
                        )

        await self._writer.run(release, durable=False)


_SELECT_ATTEMPTS = _SQL.attempts_statement


def _lock_exclusively(path: str) -> tuple[IO[bytes], str]:
    """Open the database file (creating it empty if it is missing) and hold an exclusive ``flock`` on it for
    the life of the store, so that no second process can use the file: the lock belongs to the file, not to
    the path, so a symbolic or a hard link to a file in use is refused too. Returns the held file and its
    absolute path, symbolic links resolved.

    ``flock`` locks are apart from the POSIX locks SQLite takes on the same file, so the two never meet. The
    descriptor is closed only after SQLite's own connections (closing it earlier would drop SQLite's POSIX
    locks of this process).
    """
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        directory = os.path.dirname(path) or "."
        if exc.errno == errno.ENOENT and not os.path.isdir(directory):
            raise ConfigError(f"invalid DATABASE_URL: the directory {directory!r} does not exist") from None
        raise ConfigError(f"invalid DATABASE_URL: cannot open or create {path!r} ({exc.strerror})") from None
    lock_file = os.fdopen(descriptor, "r+b")
    real = os.path.realpath(path)
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        shown = repr(path) if real == os.path.abspath(path) else f"{path!r} (the file {real!r})"
        raise ConfigError(
            f"invalid DATABASE_URL: {shown} is in use by another eventctl process"
            " (a SQLite store belongs to one process; use PostgreSQL to run several)"
        ) from None
    return lock_file, real
