"""One thread owns the SQLite write connection and commits whatever is waiting as one transaction.

This is group commit: new writes queue up while a transaction runs, and the next transaction takes all of
them. With a ``WalSyncer`` the commit itself does not wait for the disk (``synchronous=NORMAL``): a second
thread fsyncs the WAL file, and a durable write's future resolves only after the fsync that began after its
commit returned. Commits go on while an fsync is in flight, and every durable write that committed meanwhile
shares the next fsync, so a slow disk costs latency, not throughput. Writes that need no fsync (the worker's:
at-least-once covers a lost claim or completion) resolve at their commit. The event loop never blocks on
SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from eventctl.errors import StoreUnavailable

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

log = logging.getLogger(__name__)

MAX_BATCH = 1024  # bounds one transaction's size, and so the latency a write can add to others
_STOP = object()


class _Pending:
    __slots__ = ("durable", "future", "operation")

    def __init__(self, operation: Operation, future: asyncio.Future[Any], durable: bool) -> None:
        self.operation = operation
        self.future = future
        self.durable = durable


class WalSyncer:
    """A thread that fsyncs the WAL file for commits that were made without it, and settles their outcomes
    only after that fsync returned. Outcomes handed over while an fsync runs share the next one."""

    def __init__(self, wal_path: str) -> None:
        self._wal_path = wal_path
        self._descriptor: int | None = None
        self._queue: queue.SimpleQueue[list[Outcome] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the WAL file (the writer's connection made it, in WAL mode, and keeps it while it is open)."""
        self._loop = loop
        self._descriptor = os.open(self._wal_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._thread = threading.Thread(target=self._run, name="eventctl-sqlite-syncer", daemon=True)
        self._thread.start()

    def settle_after_sync(self, outcomes: list[Outcome]) -> None:
        """Called by the writer right after the commit of ``outcomes`` returned."""
        self._queue.put(outcomes)

    def stop(self) -> None:
        """Sync and settle what was handed over, end the thread. The descriptor is closed by ``close``, after
        SQLite's own connections (closing a descriptor drops this process's POSIX locks on the file)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def _run(self) -> None:
        assert self._loop is not None
        assert self._descriptor is not None
        stopping = False
        while not stopping:
            waiting: list[Outcome] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    assert isinstance(item, list)
                    waiting.extend(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if not waiting:
                continue
            try:
                os.fdatasync(self._descriptor)
            except OSError as exc:
                log.error("fsync of the SQLite WAL failed; %d writes not known to be on disk: %s", len(waiting), exc)
                error = StoreUnavailable(f"SQLite: fsync of the WAL failed: {exc}")
                waiting = [(future, None, error if failure is None else failure) for future, _, failure in waiting]
            self._loop.call_soon_threadsafe(_settle, waiting)


class SqliteWriter:
    """Runs operations on one connection in batched transactions.

    An operation is a callable taking the connection. It must leave the database unchanged when it raises
    (a single SQL statement does), because the other operations of its batch still commit.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], syncer: WalSyncer | None = None) -> None:
        self._connect = connect
        self._syncer = syncer
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False  # while the thread takes operations (cheaper to ask than Thread.is_alive)

    async def start(self) -> None:
        """Open the connection in the writer thread; raise whatever opening it raised."""
        self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(opened,), name="eventctl-sqlite-writer")
        self._thread.daemon = True
        self._thread.start()
        await opened

    async def run(self, operation: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``operation`` in the next transaction and return its result once that committed and, if
        ``durable``, once the commit is on disk (with a syncer: once the fsync after it returned)."""
        if self._loop is None or not self._running:
            raise StoreUnavailable("the SQLite writer is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Pending(operation, future, durable))
        return await future

    async def stop(self) -> None:
        """Commit what is queued, then close the connection and end the thread."""
        if self._thread is None:
            return
        self._running = False  # nothing can queue behind the stop
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _run(self, opened: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            conn = self._connect()
        except BaseException as exc:  # handed to the opener; nothing else can report it
            self._loop.call_soon_threadsafe(_settle, [_outcome(opened, None, exc)])
            return
        if self._syncer is not None:
            try:
                self._syncer.start(self._loop)
            except OSError as exc:
                conn.close()
                self._loop.call_soon_threadsafe(_settle, [_outcome(opened, None, exc)])
                return
        self._running = True
        self._loop.call_soon_threadsafe(_settle, [_outcome(opened, None, None)])
        try:
            while self._commit_next_batch(conn):
                pass
        finally:
            self._running = False
            if self._syncer is not None:
                self._syncer.stop()
            conn.close()
            if self._syncer is not None:
                self._syncer.close()

    def _commit_next_batch(self, conn: sqlite3.Connection) -> bool:
        """Commit one batch; False once asked to stop."""
        item = self._queue.get()
        batch: list[_Pending] = []
        keep_running = True
        while True:
            if item is _STOP:
                keep_running = False
                break
            assert isinstance(item, _Pending)
            batch.append(item)
            if len(batch) >= MAX_BATCH:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        if batch:
            self._commit(conn, batch)
        return keep_running

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        assert self._loop is not None
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for pending in batch:
                try:
                    outcomes.append((pending.future, pending.operation(conn), None))
                except sqlite3.Error as exc:
                    if not conn.in_transaction:  # SQLite rolled back the whole batch (disk full, I/O error)
                        raise
                    outcomes.append((pending.future, None, store_error(exc)))
                except Exception as exc:  # a bug in one operation must not fail its neighbours
                    outcomes.append((pending.future, None, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("SQLite transaction failed; %d writes not committed: %s", len(batch), exc)
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            error = store_error(exc)
            failed: list[Outcome] = [(pending.future, None, error) for pending in batch]
            self._loop.call_soon_threadsafe(_settle, failed)
            return
        if self._syncer is None:
            self._loop.call_soon_threadsafe(_settle, outcomes)
            return
        durable = [outcome for outcome, pending in zip(outcomes, batch, strict=True) if pending.durable]
        if len(durable) < len(outcomes):
            self._loop.call_soon_threadsafe(
                _settle, [outcome for outcome, pending in zip(outcomes, batch, strict=True) if not pending.durable]
            )
        if durable:
            self._syncer.settle_after_sync(durable)


# SQLite's primary result codes that mean the database or the disk under it failed, not our SQL. The
# exception classes cannot tell: an ``OperationalError`` is "database is locked" as well as "no such table"
# (SQLITE_ERROR, a bug of ours).
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,  # locked past the busy timeout
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,  # the file, its directory or its file system is read-only
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,  # the disk is full
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def store_error(exc: sqlite3.Error) -> BaseException:
    """What a SQLite error is under ``store/base.py``'s rule: a failure of the database or of the disk is
    ``StoreUnavailable``; anything else (our SQL, a constraint we did not expect, misuse) is the error itself."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"SQLite: {exc}")
    return exc


Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


def _outcome(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> Outcome:
    return future, result, error


def _settle(outcomes: list[Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # its caller gave up (cancelled); the write stands all the same
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
