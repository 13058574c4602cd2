"""The SQLite store: the default, for one machine, and ``memory://`` for experiments.

Writes go through one writer thread that commits in batches (see ``sqlite_writer``); reads use their own
connections in a small thread pool, which WAL lets run beside the writer. A file store is owned by one
process (a lock file says so), which is why claims found at start belong to a dead process and are released.
Times are stored as integer microseconds since the Unix epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

from eventctl.domain import QUEUE_STATUSES, Claim, Event, EventPage, QueueStats, Status
from eventctl.errors import ConfigError, StoreUnavailable
from eventctl.store.base import Store
from eventctl.store.batching import BatchedWrite
from eventctl.store.sqlite_schema import migrate
from eventctl.store.sqlite_writer import SqliteWriter, store_error

T = TypeVar("T")

_EVENT_COLUMNS = "event_id, status, payload, attempts, received_at, updated_at, processed_at, due_at, last_error"
_WAITING = f"('{Status.ACCEPTED}', '{Status.RETRYING}')"


def _now_us() -> int:
    return time.time_ns() // 1000


def _to_datetime(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def _row_to_event(row: tuple[Any, ...]) -> Event:
    event_id, status, payload, attempts, received_at, updated_at, processed_at, due_at, last_error = row
    status = Status(status)
    received = _to_datetime(received_at)
    updated = _to_datetime(updated_at)
    assert received is not None
    assert updated is not None
    return Event(
        event_id=event_id,
        status=status,
        payload=payload,
        attempts=attempts,
        received_at=received,
        updated_at=updated,
        processed_at=_to_datetime(processed_at),
        # While processing, due_at is the lease expiry, which is no attempt time a reader should see.
        next_attempt_at=_to_datetime(due_at) if status in (Status.ACCEPTED, Status.RETRYING) else None,
        last_error=last_error,
    )


class SqliteStore(Store):
    """Events in one SQLite database file (or in memory when ``path`` is ``None``)."""

    def __init__(self, path: str | None, *, synchronous: str = "FULL") -> None:
        super().__init__()
        self._path = path
        self._synchronous = synchronous
        self._writer = SqliteWriter(self._connect_writer)
        self._readers: ThreadPoolExecutor | None = None
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_local = threading.local()
        self._lock_file: IO[bytes] | None = None
        self._closed = False  # reads after close are refused as unavailable, as the writer refuses writes
        self._complete = BatchedWrite(self._write_completions, name="eventctl-sqlite-completions")

    # -- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._path is not None:
            self._lock_file = _lock_exclusively(self._path)
            self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eventctl-sqlite-reader")
        try:
            await self._writer.start()
            await self._writer.run(_release_orphaned_claims)
        except (sqlite3.Error, StoreUnavailable) as exc:
            await self.close()
            raise ConfigError(f"invalid DATABASE_URL: cannot open SQLite database {self._path!r}: {exc}") from None

    async def close(self) -> None:
        self._closed = True
        await self._complete.flush()  # acks already handed over are written, not dropped
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

    # -- the interface ---------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def add(self, event_id: str, payload: bytes, traceparent: str | None = None) -> Event | None:
        def insert(conn: sqlite3.Connection) -> Event | None:
            now = _now_us()
            inserted = conn.execute(_INSERT, (event_id, payload, now, now, now, traceparent)).rowcount
            if inserted:
                return None
            row = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?", (event_id,)).fetchone()
            return _row_to_event(row)

        existing = await self._writer.run(insert)
        if existing is None:
            self.notify_work()
        return existing

    async def get(self, event_id: str) -> Event | None:
        def select(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?", (event_id,)).fetchone()
            return None if row is None else _row_to_event(row)

        return await self._read(select)

    async def list_events(self, status: Status | None, limit: int, before: int | None) -> EventPage:
        conditions: list[str] = []
        params: list[str | int] = []
        if status is not None:
            conditions.append("status = ?")
            params.append(str(status))
        if before is not None:
            conditions.append("seq < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        statement = f"SELECT seq, {_EVENT_COLUMNS} FROM events {where} ORDER BY seq DESC LIMIT ?"

        def select(conn: sqlite3.Connection) -> EventPage:
            rows = conn.execute(statement, (*params, limit + 1)).fetchall()
            items = [_row_to_event(row[1:]) for row in rows[:limit]]
            return EventPage(items, rows[limit - 1][0] if len(rows) > limit else None)

        return await self._read(select)

    async def replay(self, event_id: str) -> Status | None:
        def replay(conn: sqlite3.Connection) -> Status | None:
            now = _now_us()
            replayed = conn.execute(
                f"UPDATE events SET status = '{Status.ACCEPTED}', attempts = 0, due_at = ?, updated_at = ?,"
                f" processed_at = NULL WHERE event_id = ? AND status = '{Status.FAILED}'",
                (now, now, event_id),
            ).rowcount
            if replayed:
                return Status.FAILED
            row = conn.execute("SELECT status FROM events WHERE event_id = ?", (event_id,)).fetchone()
            return None if row is None else Status(row[0])

        before = await self._writer.run(replay)
        if before is Status.FAILED:
            self.notify_work()
        return before

    async def prune_processed(self, processed_before: datetime, limit: int) -> int:
        cutoff = int(processed_before.timestamp() * 1_000_000)

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                f" WHERE status = '{Status.PROCESSED}' AND processed_at < ? ORDER BY processed_at LIMIT ?)",
                (cutoff, limit),
            ).rowcount

        return await self._writer.run(delete)

    async def queue_stats(self) -> QueueStats:
        def count(conn: sqlite3.Connection) -> QueueStats:
            now = _now_us()
            # One index range count per status (events_status_seq), one step along events_due.
            depths = {
                status: conn.execute("SELECT count(*) FROM events WHERE status = ?", (str(status),)).fetchone()[0]
                for status in QUEUE_STATUSES
            }
            oldest = conn.execute(
                f"SELECT due_at FROM events WHERE due_at <= ? AND status IN {_WAITING} ORDER BY due_at LIMIT 1",
                (now,),
            ).fetchone()
            return QueueStats(
                depths, 0.0 if oldest is None else (now - oldest[0]) / 1_000_000, scheduled=0, blocked_keys=0
            )

        return await self._read(count)

    async def claim(self, limit: int, lease_seconds: float) -> list[Claim]:
        token = random.getrandbits(62)

        def claim(conn: sqlite3.Connection) -> list[Claim]:
            now = _now_us()
            rows = conn.execute(
                f"UPDATE events SET status = '{Status.PROCESSING}', attempts = attempts + 1,"
                " claim_token = ?, due_at = ?, updated_at = ?"
                " WHERE seq IN (SELECT seq FROM events WHERE due_at <= ? ORDER BY due_at LIMIT ?)"
                " RETURNING event_id, payload, attempts, claim_token, traceparent",
                (token, now + int(lease_seconds * 1_000_000), now, now, limit),
            ).fetchall()
            return [Claim(event_id=r[0], payload=r[1], attempt=r[2], token=r[3], traceparent=r[4]) for r in rows]

        return await self._writer.run(claim)

    async def renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        if not tokens:
            return
        marks = ",".join("?" * len(tokens))

        def renew(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE events SET due_at = ? WHERE status = '{Status.PROCESSING}' AND claim_token IN ({marks})",
                (_now_us() + int(lease_seconds * 1_000_000), *tokens),
            )

        await self._writer.run(renew)

    async def complete(self, claim: Claim) -> bool:
        """Completions that arrive while one batch is being written go together in the next: one writer
        operation for the batch instead of one per event."""
        return await self._complete(claim)

    async def _write_completions(self, claims: list[Claim]) -> list[bool]:
        def update(conn: sqlite3.Connection) -> list[bool]:
            now = _now_us()
            fences = [{"now": now, "event_id": claim.event_id, "token": claim.token} for claim in claims]
            conn.execute("SAVEPOINT completions")  # all or none: the writer's contract for an operation
            try:
                changed = [conn.execute(_COMPLETE, fence).rowcount == 1 for fence in fences]
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the failure may have ended the transaction already
                    conn.execute("ROLLBACK TO completions")
                    conn.execute("RELEASE completions")
                raise
            conn.execute("RELEASE completions")
            return changed

        return await self._writer.run(update)

    async def retry(self, claim: Claim, error: str, delay_seconds: float) -> bool:
        changed = await self._settle(
            claim,
            f"status = '{Status.RETRYING}', due_at = :now + :delay, last_error = :error",
            {"delay": int(delay_seconds * 1_000_000), "error": error},
        )
        if changed:
            self.notify_work()  # the worker's wait may end earlier than it planned
        return changed

    async def fail(self, claim: Claim, error: str) -> bool:
        return await self._settle(
            claim, f"status = '{Status.FAILED}', due_at = NULL, last_error = :error", {"error": error}
        )

    async def release(self, claims: Collection[Claim]) -> None:
        if not claims:
            return

        def release(conn: sqlite3.Connection) -> None:
            now = _now_us()
            conn.executemany(
                _fenced_update(f"status = '{Status.ACCEPTED}', due_at = :now, attempts = attempts - 1"),
                [{"now": now, "event_id": claim.event_id, "token": claim.token} for claim in claims],
            )

        await self._writer.run(release)
        self.notify_work()

    async def _settle(self, claim: Claim, assignments: str, params: dict[str, Any]) -> bool:
        """Apply ``assignments`` to the claimed event if ``claim`` still holds it: the fence."""
        statement = _fenced_update(assignments)

        def update(conn: sqlite3.Connection) -> bool:
            params.update(now=_now_us(), event_id=claim.event_id, token=claim.token)
            return conn.execute(statement, params).rowcount == 1

        return await self._writer.run(update)

    async def next_due_in(self) -> float | None:
        def earliest(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT min(due_at) FROM events WHERE due_at IS NOT NULL").fetchone()
            return None if row is None else row[0]

        due = await self._read(earliest)
        return None if due is None else max(0.0, (due - _now_us()) / 1_000_000)


# Statements run once per event are built once (the statement cache is keyed by their text).
_INSERT = (
    "INSERT INTO events (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent)"
    f" VALUES (?, ?, '{Status.ACCEPTED}', 0, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)


def _fenced_update(assignments: str) -> str:
    return (
        f"UPDATE events SET {assignments}, claim_token = NULL, updated_at = :now"
        f" WHERE event_id = :event_id AND status = '{Status.PROCESSING}' AND claim_token = :token"
    )


_COMPLETE = _fenced_update(f"status = '{Status.PROCESSED}', processed_at = :now, due_at = NULL, last_error = NULL")


def _release_orphaned_claims(conn: sqlite3.Connection) -> None:
    """Claims found at start were held by a process that died: due again now. The attempt may have run,
    so it stays counted."""
    conn.execute(
        f"UPDATE events SET status = '{Status.ACCEPTED}', claim_token = NULL, due_at = ?"
        f" WHERE status = '{Status.PROCESSING}'",
        (_now_us(),),
    )


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
