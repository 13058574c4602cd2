"""The PostgreSQL store's SQL: its dialect, its statements, and the key locks and head moves that several
writes share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from asyncpg.pool import PoolConnectionProxy

from eventctl.domain import Status
from eventctl.store.base import LOST_ERROR, RELEASED_ERROR
from eventctl.store.query import Bind, Dialect, like_contains, prefix_successor

# The first half of the two-number advisory locks on ordering keys (the second is the key's hash): a space of
# its own, apart from the one-number lock of the migrations.
KEY_LOCK_SPACE = 0x65766B  # "evk"
ID_LOCK_SPACE = 0x657669  # "evi"


class PostgresDialect(Dialect):
    """``code_point_order``: the database's collation orders text by code point (``C``, ``POSIX``,
    ``C.UTF-8``), so that a prefix is a range of the unique index on event_id."""

    events = "eventctl_events"
    attempts = "eventctl_attempts"

    def __init__(self, *, code_point_order: bool) -> None:
        self.code_point_order = code_point_order

    def placeholder(self, position: int) -> str:
        return f"${position}"

    def to_db_time(self, moment: datetime) -> datetime:
        return moment

    def from_db_time(self, value: Any) -> datetime:
        moment: datetime = value
        return moment

    def from_db_payload(self, value: Any) -> bytes:
        return str(value).encode()

    def contains_ignoring_case(self, column: str, text: str, bind: Bind) -> str:
        return f"{column} ILIKE {bind(like_contains(text))} ESCAPE '\\'"

    def starts_with(self, column: str, prefix: str, bind: Bind) -> str:
        exact = f"starts_with({column}, {bind(prefix)})"
        successor = prefix_successor(prefix)
        if not self.code_point_order or successor is None:
            return exact
        # The same, in terms the index can answer. In a linguistic collation (en_US and the like) the strings
        # that start with a prefix are no range, so there the exact test alone decides (scanning).
        return f"{exact} AND {column} >= {bind(prefix)} AND {column} < {bind(successor)}"


CODE_POINT_COLLATIONS = ("C", "POSIX", "C.UTF-8", "C.utf8")


SQL = PostgresDialect(code_point_order=False)  # for the statements that take no filter

SELECT_EVENTS = f"SELECT {SQL.event_columns} FROM eventctl_events e"
SELECT_EVENT = f"{SELECT_EVENTS} WHERE e.event_id = $1"
SELECT_ATTEMPTS = SQL.attempts_statement
INSERT_PLAIN = (
    "INSERT INTO eventctl_events (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent)"
    f" VALUES ($1, $2, '{Status.ACCEPTED}', 0, now(), now(), now(), $3) ON CONFLICT (event_id) DO NOTHING"
    " RETURNING true"
)
# Keyed events are inserted parked (_promote then makes each key's head due); a scheduled one is due at its
# deliver_at, which is kept while it is still ahead. Identity values follow the ORDER BY: the batch's order.
INSERT_MANY = (
    "INSERT INTO eventctl_events (event_id, payload, status, attempts, received_at, updated_at, due_at, traceparent,"
    f" ordering_key, deliver_at) SELECT i.event_id, i.payload, '{Status.ACCEPTED}', 0, now(), now(),"
    " CASE WHEN i.ordering_key IS NULL THEN greatest(i.deliver_at, now()) END, i.traceparent, i.ordering_key,"
    " CASE WHEN i.deliver_at > now() THEN i.deliver_at END"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) WITH ORDINALITY"
    " AS i (event_id, payload, traceparent, ordering_key, deliver_at, n)"
    " ORDER BY i.n ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
REPLAY = (
    f"UPDATE eventctl_events SET status = '{Status.ACCEPTED}', attempts = 0, due_at = now(), updated_at = now(),"
    " processed_at = NULL"
)
# Each key's first unfinished event, if it is parked, becomes due: at its deliver_at, or now if that passed.
_PROMOTE = (
    "UPDATE eventctl_events e SET due_at = greatest(e.deliver_at, now()), updated_at = now()"
    " WHERE e.seq IN (SELECT (SELECT h.seq FROM eventctl_events h WHERE h.ordering_key = k.key"
    f" AND h.status <> '{Status.PROCESSED}' ORDER BY h.seq LIMIT 1) FROM unnest($1::text[]) AS k (key))"
    f" AND e.status = '{Status.ACCEPTED}' AND e.due_at IS NULL"
)
_INSERT_ATTEMPTS = (
    "INSERT INTO eventctl_attempts (event_seq, attempt, started_at, finished_at, outcome, error, duration_ms,"
    " response_status)"
)


def claim_statement(history: bool) -> str:
    """Claims due events. With the history, claiming an event moves the record of its previous attempt off
    its row into the attempts table: a retrying event's, or, for a lease that ran out, the lost attempt's
    (begun at that claim, ended unseen). ``due`` holds the rows as they were before the claim."""
    moved = (
        f", moved AS ({_INSERT_ATTEMPTS} SELECT seq, attempts,"
        " CASE WHEN lost THEN updated_at ELSE attempt_started_at END, CASE WHEN lost THEN NULL ELSE updated_at END,"
        f" CASE WHEN lost THEN 'lost' ELSE status END, CASE WHEN lost THEN '{LOST_ERROR}' ELSE last_error END,"
        " CASE WHEN lost THEN NULL ELSE attempt_duration_ms END,"
        " CASE WHEN lost THEN NULL ELSE attempt_response_status END FROM due"
        f" WHERE lost OR (status = '{Status.RETRYING}' AND attempt_started_at IS NOT NULL))"
        if history
        else ""
    )
    return (
        "WITH due AS (SELECT seq, status, attempts, updated_at, last_error, attempt_started_at, attempt_duration_ms,"
        f" attempt_response_status, status = '{Status.PROCESSING}' AS lost FROM eventctl_events WHERE due_at <= now()"
        f" ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED){moved}"
        f" UPDATE eventctl_events e SET status = '{Status.PROCESSING}', attempts = e.attempts + 1,"
        " claim_token = $2, due_at = now() + make_interval(secs => $3), updated_at = now()"
        " FROM due WHERE e.seq = due.seq"
        " RETURNING e.event_id, e.payload, e.attempts, e.traceparent, e.ordering_key, e.updated_at"
    )


def outcomes_statement(history: bool) -> str:
    """Writes a batch of outcomes through their fences; with the history, each one's attempt record onto its
    row (see the schema): the attempt began when it was claimed, which updated_at still says (SET reads the
    row as it was)."""
    record = (
        " attempt_started_at = e.updated_at, attempt_duration_ms = o.duration, attempt_response_status = o.response,"
        if history
        else ""
    )
    return (
        f"UPDATE eventctl_events e SET{record} status = o.status,"
        f" processed_at = CASE WHEN o.status = '{Status.PROCESSED}' THEN now() END,"
        f" due_at = CASE WHEN o.status = '{Status.RETRYING}' THEN now() + make_interval(secs => o.delay) END,"
        " last_error = o.error, claim_token = NULL, updated_at = now()"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::int[])"
        " AS o (event_id, token, status, error, delay, duration, response)"
        f" WHERE e.event_id = o.event_id AND e.status = '{Status.PROCESSING}' AND e.claim_token = o.token"
        " RETURNING o.event_id, o.token"
    )


def replay_statement(history: bool, batch: str) -> str:
    """Replays the failed events of ``batch`` (a query of their seq); with the history, each one's attempt
    record moves off its row first."""
    archive = (
        f", archived AS ({_INSERT_ATTEMPTS} SELECT e.seq, e.attempts, e.attempt_started_at, e.updated_at, e.status,"
        " e.last_error, e.attempt_duration_ms, e.attempt_response_status FROM eventctl_events e"
        " JOIN batch ON e.seq = batch.seq WHERE e.attempt_started_at IS NOT NULL)"
        if history
        else ""
    )
    # The batch is chosen once (a materialized CTE, joined): a subquery under IN may be run again for every
    # updated row, each run finding the next rows, past its limit.
    return (
        f"WITH batch AS MATERIALIZED ({batch}){archive} {REPLAY} FROM batch"
        f" WHERE eventctl_events.seq = batch.seq AND eventctl_events.status = '{Status.FAILED}'"
    )


def release_statement(history: bool) -> str:
    """Gives claims back through their fences; with the history, each released attempt is recorded."""
    update = (
        f"UPDATE eventctl_events e SET status = '{Status.ACCEPTED}', due_at = now(), attempts = e.attempts - 1,"
        " claim_token = NULL, updated_at = now() FROM r"
        f" WHERE e.event_id = r.event_id AND e.status = '{Status.PROCESSING}' AND e.claim_token = r.token"
    )
    claims = (
        "WITH r AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::timestamptz[])"
        " AS r (event_id, token, attempt, started))"
    )
    if not history:
        return f"{claims} {update}"
    return (
        f"{claims}, done AS ({update} RETURNING e.seq, r.attempt, r.started) {_INSERT_ATTEMPTS}"
        f" SELECT seq, attempt, coalesce(started, now()), now(), 'released', '{RELEASED_ERROR}', NULL, NULL FROM done"
    )


async def lock_keys(conn: PoolConnectionProxy, keys: Sequence[str]) -> None:
    """Hold the keys' advisory locks until the transaction ends, taken in the order of their hashes so that
    two transactions that need some of the same keys cannot deadlock."""
    if keys:
        await conn.execute(
            f"SELECT pg_advisory_xact_lock({KEY_LOCK_SPACE}, h)"
            " FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS ordered",
            list(keys),
        )


async def lock_ids(conn: PoolConnectionProxy, event_ids: Sequence[str]) -> None:
    """Hold an advisory lock per id of a batch until the transaction ends, taken in the order of their
    hashes. Two batches that insert some of the same ids in different orders would otherwise each wait on
    the other's uncommitted index entries (a deadlock that PostgreSQL ends by failing one of them)."""
    await conn.execute(
        f"SELECT pg_advisory_xact_lock({ID_LOCK_SPACE}, h)"
        " FROM (SELECT DISTINCT hashtext(i) AS h FROM unnest($1::text[]) AS i ORDER BY h) AS ordered",
        list(event_ids),
    )


async def promote(conn: PoolConnectionProxy, keys: Sequence[str]) -> None:
    if keys:
        await conn.execute(_PROMOTE, list(keys))
