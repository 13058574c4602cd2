"""The PostgreSQL store: several ``eventctl serve`` instances share one database, and nothing else.

- Claims use ``FOR UPDATE SKIP LOCKED``, so instances never wait on each other's rows.
- Leases expire by the database's clock (``now()``), so instances need not agree on the time.
- A committed event wakes this instance's worker at once and the others through ``LISTEN``/``NOTIFY``; the
  notification is sent outside the insert's transaction and at most once per ``NOTIFY_INTERVAL``, so ingest
  does not serialise on PostgreSQL's notification queue.
- The insert of a keyed event and the moving of a key's head (a completion, a delete) are serialised per
  key by a transaction-level advisory lock on the key's hash, taken in hash order when there are several, so
  that concurrent instances never make two heads or strand a key. Plain events take no such lock.
- An outage (unreachable, too many connections, read-only after a failover, shutting down: ``is_unavailable``)
  is ``StoreUnavailable``: the API answers 503 and the worker waits; the pool and the listener reconnect by
  themselves when the database is back. Any other error is a bug and propagates as itself.

asyncpg is the driver: it is built for asyncio, speaks the binary protocol, and has ``LISTEN`` built in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventctl.domain import QUEUE_STATUSES, Attempt, Claim, Event, EventFilter, NewEvent, QueueStats, Status
from eventctl.errors import ConfigError, EventctlError, StoreUnavailable
from eventctl.store import postgres_statements as sql
from eventctl.store.base import Outcome, Store, is_plain
from eventctl.store.postgres_schema import migrate

log = logging.getLogger(__name__)

CHANNEL = "eventctl_work"  # in the default schema; see ``wake_up_channel``
NOTIFY_INTERVAL = 0.005  # seconds: at most one cross-instance wake-up this often
POOL_SIZE = 10
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
LISTENER_RETRY_SECONDS = 1.0

# What means "the database cannot be reached, cannot take this now, or is going away", under
# ``store/base.py``'s rule: these errors, and the server errors of ``_UNAVAILABLE_SQLSTATES``, are
# ``StoreUnavailable`` (503, retried); every other error is a bug and propagates as itself.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect, acquire and command timeouts
    # A closed connection or pool ("connection is closed", "pool is closing"); the ValueError subclasses
    # (DataError, ClientConfigurationError) are wrong arguments of ours, and are excluded in is_unavailable.
    asyncpg.InterfaceError,
    # Raised instead of a connection error when the server goes away in the middle of a statement.
    asyncpg.exceptions.InternalClientError,
)
# SQLSTATE classes (two characters) and codes of server errors that are outages, not bugs.
_UNAVAILABLE_SQLSTATES = (
    "08",  # connection exception
    "25006",  # read-only SQL transaction: a failover made the database read-only
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources: too many connections, disk full, out of memory
    "55P03",  # lock not available
    "57",  # operator intervention: shutting down, cannot connect now, statement timeout
    "58",  # system error: I/O error
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the database or of the way to it (``StoreUnavailable``), not a bug."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate: str = getattr(exc, "sqlstate", None) or ""
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return isinstance(exc, _UNAVAILABLE) and not isinstance(exc, ValueError)


# SQLSTATE classes of a server that answers but cannot take us now: too many connections, starting up or
# shutting down, an I/O error. A start that meets them may succeed later.
_START_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
# SQLSTATE classes of a server that refuses what DATABASE_URL asks: the role, its password, the database, a
# privilege, an option (``?search_path=...``). Retrying cannot help: a setting is wrong.
_START_REFUSED_CLASSES = ("28", "3D", "3F", "42")


def _start_error(dsn: str, exc: Exception) -> EventctlError | None:
    """What a failure to open the store means for the start: ``StoreUnavailable`` (exit 3) or ``ConfigError``
    (exit 2), in one line that names DATABASE_URL and the server but never the password; ``None`` for a bug."""
    server = urlsplit(dsn).netloc.rpartition("@")[2] or "localhost"
    sqlstate: str = getattr(exc, "sqlstate", None) or ""
    error: EventctlError | None = None
    if isinstance(exc, ConnectionRefusedError):
        error = StoreUnavailable(f"DATABASE_URL: cannot reach PostgreSQL at {server} (connection refused)")
    elif isinstance(exc, TimeoutError):
        error = StoreUnavailable(
            f"DATABASE_URL: cannot reach PostgreSQL at {server} (no answer in {CONNECT_TIMEOUT:g}s)"
        )
    elif isinstance(exc, socket.gaierror):
        error = StoreUnavailable(f"DATABASE_URL: cannot reach PostgreSQL at {server} (unknown host: {exc.strerror})")
    elif isinstance(exc, OSError):
        error = StoreUnavailable(f"DATABASE_URL: cannot reach PostgreSQL at {server} ({exc.strerror or exc})")
    elif isinstance(exc, asyncpg.PostgresError) and sqlstate.startswith(_START_UNAVAILABLE_CLASSES):
        error = StoreUnavailable(f"DATABASE_URL: PostgreSQL at {server} cannot take us now ({exc})")
    elif isinstance(exc, asyncpg.PostgresError) and sqlstate.startswith(_START_REFUSED_CLASSES):
        error = ConfigError(f"invalid DATABASE_URL: PostgreSQL at {server} refused it: {exc}")
    elif isinstance(exc, ValueError):  # asyncpg could not read the URL
        error = ConfigError(f"invalid DATABASE_URL: {exc}")
    elif isinstance(exc, (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)):
        error = StoreUnavailable(f"DATABASE_URL: PostgreSQL at {server} went away ({exc})")
    password = urlsplit(dsn).password
    if error is not None and password and password in str(error):
        error = type(error)(str(error).replace(password, "***"))
    return error


def wake_up_channel(schema: str) -> str:
    """The ``LISTEN``/``NOTIFY`` channel of the eventctl whose tables are in ``schema``. Channels are shared by
    the whole database, so deployments in different schemas of one database each get their own, and do not
    wake each other's workers for nothing."""
    if schema == "public":
        return CHANNEL
    return f"{CHANNEL}_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"


class PostgresStore(Store):
    """Events in one PostgreSQL database, shared by every instance that uses it."""

    def __init__(self, dsn: str, *, attempt_history: bool = True) -> None:
        super().__init__(attempt_history=attempt_history)
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._notify_task: asyncio.Task[None] | None = None
        self._notify_wanted = asyncio.Event()
        self._claim_statement = sql.claim_statement(attempt_history)
        self._outcomes_statement = sql.outcomes_statement(attempt_history)
        self._release_statement = sql.release_statement(attempt_history)
        self._dialect = sql.PostgresDialect(code_point_order=False)  # told the database's collation at open
        self._channel = CHANNEL  # told the schema at open
        self._replay_one_statement = sql.replay_statement(
            attempt_history, f"SELECT seq FROM eventctl_events WHERE event_id = $1 AND status = '{Status.FAILED}'"
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate, and open the pool. A database that cannot be reached raises ``StoreUnavailable``;
        one that answers but refuses us (role, password, database, privileges, options) raises
        ``ConfigError``. Neither message shows the password."""
        try:
            conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
            try:
                await migrate(conn)
                collation = await conn.fetchval("SELECT datcollate FROM pg_database WHERE datname = current_database()")
                self._dialect.code_point_order = collation in sql.CODE_POINT_COLLATIONS
                self._channel = wake_up_channel(await conn.fetchval("SELECT current_schema()"))
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=POOL_SIZE, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
            )
        except ConfigError:
            raise
        except Exception as exc:
            error = _start_error(self._dsn, exc)
            if error is None:
                raise
            raise error from None
        self._listener_task = asyncio.create_task(self._listen(), name="eventctl-pg-listener")
        self._notify_task = asyncio.create_task(self._send_notifications(), name="eventctl-pg-notifier")

    async def _close(self) -> None:
        for task in (self._listener_task, self._notify_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pool is not None:
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        """A pooled connection; an outage (``is_unavailable``) becomes ``StoreUnavailable``, a bug stays itself."""
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                yield conn
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
            raise

    # -- wake-ups across instances ---------------------------------------------------------------------

    def _announce_work(self) -> None:
        self.notify_work()
        self._notify_wanted.set()

    async def _send_notifications(self) -> None:
        """Coalesce wake-ups: one NOTIFY for everything committed in the last interval."""
        while True:
            await self._notify_wanted.wait()
            self._notify_wanted.clear()
            try:
                async with self._connection() as conn:
                    await conn.execute("SELECT pg_notify($1, '')", self._channel)
            except StoreUnavailable as exc:
                log.debug("could not notify other instances: %s", exc)
            except Exception:  # a bug: the wake-ups of other instances must not stop for good
                log.exception("could not notify other instances")
            await asyncio.sleep(NOTIFY_INTERVAL)

    async def _listen(self) -> None:
        """Hold a LISTEN connection for as long as the store is open, reconnecting when it drops."""
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.debug("listener cannot connect, retrying: %s", exc)
                await asyncio.sleep(LISTENER_RETRY_SECONDS)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _, lost=lost: lost.set())
            try:
                await conn.add_listener(self._channel, lambda *_: self.notify_work())
                self.notify_work()  # anything committed while we were not listening is due now
                await lost.wait()
                log.warning("lost the PostgreSQL LISTEN connection; reconnecting")
            except Exception as exc:  # the listener must outlive anything: it is how other instances wake us
                if is_unavailable(exc):
                    log.warning("PostgreSQL LISTEN failed, reconnecting: %s", exc)
                else:
                    log.exception("PostgreSQL LISTEN failed, reconnecting")
                await asyncio.sleep(LISTENER_RETRY_SECONDS)
            finally:
                with contextlib.suppress(*_UNAVAILABLE):
                    await conn.close(timeout=1)

    # -- reads ---------------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Also unavailable while the database is read-only (a failover in progress, a standby): it answers,
        but no write can succeed."""
        async with self._connection() as conn:
            read_only = await conn.fetchval("SELECT current_setting('transaction_read_only')", timeout=CONNECT_TIMEOUT)
        if read_only == "on":
            raise StoreUnavailable("PostgreSQL: the database is read-only; writes cannot succeed")

    async def get(self, event_id: str) -> Event | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.SELECT_EVENT, event_id)
        return None if row is None else sql.SQL.row_to_event(row)

    async def _select(self, filter: EventFilter, limit: int, before: int | None) -> list[tuple[int, Event]]:
        params: list[Any] = []
        statement = self._dialect.page_statement(filter, before, limit, params)
        async with self._connection() as conn:
            rows = await conn.fetch(statement, *params)
        return [(row[0], sql.SQL.row_to_event(row, 1)) for row in rows]

    async def count_matching(self, filter: EventFilter) -> int:
        params: list[Any] = []
        statement = f"SELECT count(*) FROM eventctl_events e {self._dialect.where(filter, params)}"
        async with self._connection() as conn:
            count: int = await conn.fetchval(statement, *params)
        return count

    async def attempts(self, event_id: str) -> list[Attempt] | None:
        async with self._connection() as conn:
            rows = await conn.fetch(sql.SELECT_ATTEMPTS, event_id)
        return sql.SQL.rows_to_attempts(rows)

    async def queue_stats(self) -> QueueStats:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT status, count(*) AS n FROM eventctl_events WHERE status = ANY($1::text[]) GROUP BY status",
                [str(status) for status in QUEUE_STATUSES],
            )
            row = await conn.fetchrow(
                "SELECT (SELECT EXTRACT(EPOCH FROM now() - due_at) FROM eventctl_events WHERE due_at <= now()"
                f" AND status IN ('{Status.ACCEPTED}', '{Status.RETRYING}') ORDER BY due_at LIMIT 1) AS age,"
                " (SELECT count(*) FROM eventctl_events"
                f" WHERE deliver_at > now() AND status = '{Status.ACCEPTED}') AS scheduled,"
                " (SELECT count(*) FROM eventctl_events"
                f" WHERE ordering_key IS NOT NULL AND status = '{Status.FAILED}') AS blocked"
            )
        assert row is not None
        counted = {row["status"]: row["n"] for row in rows}
        depths = {status: counted.get(str(status), 0) for status in QUEUE_STATUSES}
        age = 0.0 if row["age"] is None else float(row["age"])
        return QueueStats(depths, age, scheduled=row["scheduled"], blocked_keys=row["blocked"])

    async def next_due_in(self) -> float | None:
        async with self._connection() as conn:
            seconds = await conn.fetchval(
                "SELECT EXTRACT(EPOCH FROM min(due_at) - now()) FROM eventctl_events WHERE due_at IS NOT NULL"
            )
        return None if seconds is None else max(0.0, float(seconds))

    # -- writes --------------------------------------------------------------------------------------

    async def _insert(self, events: Sequence[NewEvent]) -> list[Event | None]:
        if len(events) == 1 and is_plain(events[0]):
            return [await self._insert_plain(events[0])]
        results: dict[str, Event | None] = {}
        keys = sorted({event.ordering_key for event in events if event.ordering_key is not None})
        async with self._connection() as conn, conn.transaction():
            await sql.lock_keys(conn, keys)
            if len(events) > 1:
                await sql.lock_ids(conn, [event.event_id for event in events])
            waiting = list(events)
            while waiting:  # an id's holder may be deleted (retention, delete) between the insert and its read
                stored = await conn.fetch(
                    sql.INSERT_MANY,
                    [event.event_id for event in waiting],
                    [event.payload.decode() for event in waiting],
                    [event.traceparent for event in waiting],
                    [event.ordering_key for event in waiting],
                    [event.deliver_at for event in waiting],
                )
                results.update(dict.fromkeys((row[0] for row in stored), None))
                taken = [event.event_id for event in waiting if event.event_id not in results]
                holders = await conn.fetch(f"{sql.SELECT_EVENTS} WHERE e.event_id = ANY($1::text[])", taken)
                results.update((row[0], sql.SQL.row_to_event(row)) for row in holders)
                waiting = [event for event in waiting if event.event_id not in results]
            await sql.promote(conn, keys)
        return [results[event.event_id] for event in events]

    async def _insert_plain(self, event: NewEvent) -> Event | None:
        """The hot path: one statement, and no lock."""
        async with self._connection() as conn:
            inserted = await conn.fetchval(sql.INSERT_PLAIN, event.event_id, event.payload.decode(), event.traceparent)
            if inserted:
                return None
            row = await conn.fetchrow(sql.SELECT_EVENT, event.event_id)
        if row is None:  # deleted by retention between our insert and this read: the id is free again
            return await self._insert_plain(event)
        return sql.SQL.row_to_event(row)

    async def _replay(self, event_id: str) -> Status | None:
        async with self._connection() as conn:
            replayed: str = await conn.execute(self._replay_one_statement, event_id)
            if replayed != "UPDATE 0":
                return Status.FAILED
            status = await conn.fetchval("SELECT status FROM eventctl_events WHERE event_id = $1", event_id)
        return None if status is None else Status(status)

    async def _delete(self, event_id: str) -> Status | None:
        async with self._connection() as conn, conn.transaction():
            # The key first, its lock next, then the delete: the order every writer of a key follows.
            key = await conn.fetchval("SELECT ordering_key FROM eventctl_events WHERE event_id = $1", event_id)
            await sql.lock_keys(conn, [] if key is None else [key])
            deleted = await conn.fetchval(
                f"DELETE FROM eventctl_events WHERE event_id = $1 AND status <> '{Status.PROCESSING}' RETURNING status",
                event_id,
            )
            if deleted is None:
                status = await conn.fetchval("SELECT status FROM eventctl_events WHERE event_id = $1", event_id)
                return None if status is None else Status(status)
            await sql.promote(conn, [] if key is None else [key])
        return Status(deleted)

    async def _replay_matching(self, filter: EventFilter, limit: int) -> int:
        params: list[Any] = []
        where = self._dialect.where(filter, params)
        params.append(limit)
        batch = (
            f"SELECT e.seq FROM eventctl_events e {where} ORDER BY e.seq LIMIT ${len(params)} FOR UPDATE SKIP LOCKED"
        )
        async with self._connection() as conn:
            result: str = await conn.execute(sql.replay_statement(self._history, batch), *params)
        return int(result.split()[-1])  # "UPDATE <count>"

    async def _delete_matching(self, filter: EventFilter, limit: int) -> int:
        params: list[Any] = []
        where = self._dialect.where(filter, params)
        params.append(limit)
        async with self._connection() as conn, conn.transaction():
            selected = await conn.fetch(
                f"SELECT e.seq, e.ordering_key FROM eventctl_events e {where} ORDER BY e.seq LIMIT ${len(params)}",
                *params,
            )
            keys = sorted({row[1] for row in selected if row[1] is not None})
            await sql.lock_keys(conn, keys)
            result: str = await conn.execute(
                "DELETE FROM eventctl_events WHERE seq = ANY($1::bigint[]) AND status = ANY($2::text[])",
                [row[0] for row in selected],
                [str(status) for status in filter.statuses],  # still deletable, now that the keys are held
            )
            await sql.promote(conn, keys)
        return int(result.split()[-1])  # "DELETE <count>"

    async def prune_processed(self, processed_before: datetime, limit: int) -> int:
        """Attempts go with their events (ON DELETE CASCADE); a processed event is never a key's head."""
        async with self._connection() as conn:
            result: str = await conn.execute(
                "WITH batch AS MATERIALIZED (SELECT seq FROM eventctl_events"
                f" WHERE status = '{Status.PROCESSED}' AND processed_at < $1 ORDER BY processed_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED) DELETE FROM eventctl_events e USING batch WHERE e.seq = batch.seq",
                processed_before,
                limit,
            )
        return int(result.split()[-1])  # "DELETE <count>"

    async def _claim(self, limit: int, lease_seconds: float, token: int) -> list[Claim]:
        async with self._connection() as conn:
            rows = await conn.fetch(self._claim_statement, limit, token, lease_seconds)
        return [Claim(row[0], row[1].encode(), row[2], token, row[3], row[4], row[5]) for row in rows]

    async def _renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE eventctl_events SET due_at = now() + make_interval(secs => $1)"
                f" WHERE status = '{Status.PROCESSING}' AND claim_token = ANY($2::bigint[])",
                lease_seconds,
                list(tokens),
            )

    async def _write_outcomes(self, outcomes: list[Outcome]) -> list[bool]:
        """One statement for the batch; completions of keyed events also move their keys' heads, under the
        keys' locks, in the same transaction."""
        keys = sorted({o.claim.ordering_key for o in outcomes if o.status is Status.PROCESSED and o.claim.ordering_key})
        arrays = (
            [o.claim.event_id for o in outcomes],
            [o.claim.token for o in outcomes],
            [o.status.value for o in outcomes],
            [o.error for o in outcomes],
            [o.delay_seconds for o in outcomes],
            [None if o.report is None else o.report.duration_ms for o in outcomes],
            [None if o.report is None else o.report.response_status for o in outcomes],
        )
        async with self._connection() as conn:
            if keys:
                async with conn.transaction():
                    await sql.lock_keys(conn, keys)
                    rows = await conn.fetch(self._outcomes_statement, *arrays)
                    await sql.promote(conn, keys)
            else:
                rows = await conn.fetch(self._outcomes_statement, *arrays)
        # By id and token: a stale claim and the fresh one on the same event may share a batch.
        written = {(row[0], row[1]) for row in rows}
        return [(o.claim.event_id, o.claim.token) in written for o in outcomes]

    async def _release(self, claims: Collection[Claim]) -> None:
        async with self._connection() as conn:
            await conn.execute(
                self._release_statement,
                [claim.event_id for claim in claims],
                [claim.token for claim in claims],
                [claim.attempt for claim in claims],
                [claim.claimed_at for claim in claims],
            )
