"""The PostgreSQL store: several ``eventctl serve`` instances share one database, and nothing else.

- Claims use ``FOR UPDATE SKIP LOCKED``, so instances never wait on each other's rows.
- Leases expire by the database's clock (``now()``), so instances need not agree on the time.
- A committed event wakes this instance's worker at once and the others through ``LISTEN``/``NOTIFY``; the
  notification is sent outside the insert's transaction and at most once per ``NOTIFY_INTERVAL``, so ingest
  does not serialise on PostgreSQL's notification queue.
- An outage (unreachable, too many connections, read-only after a failover, shutting down: ``is_unavailable``)
  is ``StoreUnavailable``: the API answers 503 and the worker waits; the pool and the listener reconnect by
  themselves when the database is back. Any other error is a bug and propagates as itself.

asyncpg is the driver: it is built for asyncio, speaks the binary protocol, and has ``LISTEN`` built in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Collection
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventctl.domain import QUEUE_STATUSES, Claim, Event, EventPage, QueueStats, Status
from eventctl.errors import ConfigError, StoreUnavailable
from eventctl.store.base import Store
from eventctl.store.batching import BatchedWrite
from eventctl.store.postgres_schema import migrate

log = logging.getLogger(__name__)

CHANNEL = "eventctl_work"
NOTIFY_INTERVAL = 0.005  # seconds: at most one cross-instance wake-up this often
POOL_SIZE = 10
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
LISTENER_RETRY_SECONDS = 1.0

_EVENT_COLUMNS = "event_id, status, payload, attempts, received_at, updated_at, processed_at, due_at, last_error"
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


def _row_to_event(row: asyncpg.Record) -> Event:
    status = Status(row["status"])
    return Event(
        event_id=row["event_id"],
        status=status,
        payload=row["payload"].encode(),
        attempts=row["attempts"],
        received_at=row["received_at"],
        updated_at=row["updated_at"],
        processed_at=row["processed_at"],
        next_attempt_at=row["due_at"] if status in (Status.ACCEPTED, Status.RETRYING) else None,
        last_error=row["last_error"],
    )


class PostgresStore(Store):
    """Events in one PostgreSQL database, shared by every instance that uses it."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._notify_task: asyncio.Task[None] | None = None
        self._notify_wanted = asyncio.Event()
        self._complete = BatchedWrite(self._write_completions, name="eventctl-pg-completions")

    # -- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=POOL_SIZE, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
            )
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise ConfigError(
                f"DATABASE_URL: cannot use the PostgreSQL database: {type(exc).__name__}: {exc}"
            ) from None
        self._listener_task = asyncio.create_task(self._listen(), name="eventctl-pg-listener")
        self._notify_task = asyncio.create_task(self._send_notifications(), name="eventctl-pg-notifier")

    async def close(self) -> None:
        await self._complete.flush()  # acks already handed over are written, not dropped
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

    def _wake_everyone(self) -> None:
        self.notify_work()
        self._notify_wanted.set()

    async def _send_notifications(self) -> None:
        """Coalesce wake-ups: one NOTIFY for everything committed in the last interval."""
        while True:
            await self._notify_wanted.wait()
            self._notify_wanted.clear()
            try:
                async with self._connection() as conn:
                    await conn.execute(f"NOTIFY {CHANNEL}")
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
                await conn.add_listener(CHANNEL, lambda *_: self.notify_work())
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

    # -- the interface ---------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Also unavailable while the database is read-only (a failover in progress, a standby): it answers,
        but no write can succeed."""
        async with self._connection() as conn:
            read_only = await conn.fetchval("SELECT current_setting('transaction_read_only')", timeout=CONNECT_TIMEOUT)
        if read_only == "on":
            raise StoreUnavailable("PostgreSQL: the database is read-only; writes cannot succeed")

    async def add(self, event_id: str, payload: bytes, traceparent: str | None = None) -> Event | None:
        async with self._connection() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO eventctl_events"
                " (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent)"
                f" VALUES ($1, $2, '{Status.ACCEPTED}', 0, now(), now(), now(), $3)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING true",
                event_id,
                payload.decode(),
                traceparent,
            )
            if inserted:
                self._wake_everyone()
                return None
            row = await conn.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM eventctl_events WHERE event_id = $1", event_id)
        if row is None:  # deleted by retention between our insert and this read: the id is free again
            return await self.add(event_id, payload, traceparent)
        return _row_to_event(row)

    async def get(self, event_id: str) -> Event | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM eventctl_events WHERE event_id = $1", event_id)
        return None if row is None else _row_to_event(row)

    async def list_events(self, status: Status | None, limit: int, before: int | None) -> EventPage:
        conditions: list[str] = []
        params: list[Any] = []
        if status is not None:
            params.append(str(status))
            conditions.append(f"status = ${len(params)}")
        if before is not None:
            params.append(before)
            conditions.append(f"seq < ${len(params)}")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        params.append(limit + 1)
        statement = f"SELECT seq, {_EVENT_COLUMNS} FROM eventctl_events {where} ORDER BY seq DESC LIMIT ${len(params)}"
        async with self._connection() as conn:
            rows = await conn.fetch(statement, *params)
        items = [_row_to_event(row) for row in rows[:limit]]
        return EventPage(items, rows[limit - 1]["seq"] if len(rows) > limit else None)

    async def replay(self, event_id: str) -> Status | None:
        async with self._connection() as conn:
            replayed = await conn.fetchval(
                f"UPDATE eventctl_events SET status = '{Status.ACCEPTED}', attempts = 0, due_at = now(),"
                f" updated_at = now(), processed_at = NULL WHERE event_id = $1 AND status = '{Status.FAILED}'"
                " RETURNING true",
                event_id,
            )
            if replayed:
                self._wake_everyone()
                return Status.FAILED
            status = await conn.fetchval("SELECT status FROM eventctl_events WHERE event_id = $1", event_id)
        return None if status is None else Status(status)

    async def prune_processed(self, processed_before: datetime, limit: int) -> int:
        async with self._connection() as conn:
            result: str = await conn.execute(
                "DELETE FROM eventctl_events WHERE seq IN (SELECT seq FROM eventctl_events"
                f" WHERE status = '{Status.PROCESSED}' AND processed_at < $1 ORDER BY processed_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED)",
                processed_before,
                limit,
            )
        return int(result.split()[-1])  # "DELETE <count>"

    async def queue_stats(self) -> QueueStats:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT status, count(*) AS n FROM eventctl_events WHERE status = ANY($1::text[]) GROUP BY status",
                [str(status) for status in QUEUE_STATUSES],
            )
            age = await conn.fetchval(
                "SELECT EXTRACT(EPOCH FROM now() - due_at) FROM eventctl_events WHERE due_at <= now()"
                f" AND status IN ('{Status.ACCEPTED}', '{Status.RETRYING}') ORDER BY due_at LIMIT 1"
            )
        counted = {row["status"]: row["n"] for row in rows}
        depths = {status: counted.get(str(status), 0) for status in QUEUE_STATUSES}
        return QueueStats(depths, 0.0 if age is None else float(age), scheduled=0, blocked_keys=0)

    async def claim(self, limit: int, lease_seconds: float) -> list[Claim]:
        token = random.getrandbits(62)
        async with self._connection() as conn:
            rows = await conn.fetch(
                "WITH due AS (SELECT seq FROM eventctl_events WHERE due_at <= now()"
                " ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
                f" UPDATE eventctl_events e SET status = '{Status.PROCESSING}', attempts = e.attempts + 1,"
                " claim_token = $2, due_at = now() + make_interval(secs => $3), updated_at = now()"
                " FROM due WHERE e.seq = due.seq"
                " RETURNING e.event_id, e.payload, e.attempts, e.traceparent",
                limit,
                token,
                lease_seconds,
            )
        return [
            Claim(row["event_id"], row["payload"].encode(), row["attempts"], token, row["traceparent"]) for row in rows
        ]

    async def renew(self, tokens: Collection[int], lease_seconds: float) -> None:
        if not tokens:
            return
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE eventctl_events SET due_at = now() + make_interval(secs => $1)"
                f" WHERE status = '{Status.PROCESSING}' AND claim_token = ANY($2::bigint[])",
                lease_seconds,
                list(tokens),
            )

    async def complete(self, claim: Claim) -> bool:
        """Completions are the most frequent write: those that arrive while one is being written wait for
        the next, and go together in one fenced UPDATE (group commit, as the SQLite writer does)."""
        return await self._complete(claim)

    async def _write_completions(self, claims: list[Claim]) -> list[bool]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"UPDATE eventctl_events e SET status = '{Status.PROCESSED}', processed_at = now(),"
                " due_at = NULL, last_error = NULL, claim_token = NULL, updated_at = now()"
                " FROM unnest($1::text[], $2::bigint[]) AS done (event_id, token)"
                f" WHERE e.event_id = done.event_id AND e.status = '{Status.PROCESSING}'"
                " AND e.claim_token = done.token RETURNING e.event_id, done.token",
                [claim.event_id for claim in claims],
                [claim.token for claim in claims],
            )
        # By id and token: a stale claim and the fresh one on the same event may share a batch.
        completed = {(row["event_id"], row["token"]) for row in rows}
        return [(claim.event_id, claim.token) in completed for claim in claims]

    async def retry(self, claim: Claim, error: str, delay_seconds: float) -> bool:
        changed = await self._settle(
            claim,
            f"status = '{Status.RETRYING}', due_at = now() + make_interval(secs => $3), last_error = $4",
            delay_seconds,
            error,
        )
        if changed:
            self.notify_work()  # this instance's worker may plan a shorter sleep
        return changed

    async def fail(self, claim: Claim, error: str) -> bool:
        return await self._settle(claim, f"status = '{Status.FAILED}', due_at = NULL, last_error = $3", error)

    async def release(self, claims: Collection[Claim]) -> None:
        if not claims:
            return
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE eventctl_events SET status = '{Status.ACCEPTED}', due_at = now(),"
                " attempts = attempts - 1, claim_token = NULL, updated_at = now()"
                f" WHERE status = '{Status.PROCESSING}'"
                " AND (event_id, claim_token) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))",
                [claim.event_id for claim in claims],
                [claim.token for claim in claims],
            )
        self._wake_everyone()

    async def _settle(self, claim: Claim, assignments: str, *params: Any) -> bool:
        """Apply ``assignments`` if ``claim`` still holds the event: the fence. ``$1`` and ``$2`` are the
        event id and token; extra parameters start at ``$3``."""
        async with self._connection() as conn:
            changed = await conn.fetchval(
                f"UPDATE eventctl_events SET {assignments}, claim_token = NULL, updated_at = now()"
                f" WHERE event_id = $1 AND status = '{Status.PROCESSING}' AND claim_token = $2 RETURNING true",
                claim.event_id,
                claim.token,
                *params,
            )
        return bool(changed)

    async def next_due_in(self) -> float | None:
        async with self._connection() as conn:
            seconds = await conn.fetchval(
                "SELECT EXTRACT(EPOCH FROM min(due_at) - now()) FROM eventctl_events WHERE due_at IS NOT NULL"
            )
        return None if seconds is None else max(0.0, float(seconds))
