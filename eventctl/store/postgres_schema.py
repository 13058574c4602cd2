"""The PostgreSQL schema as numbered migrations, applied at start under an advisory lock.

Several instances may start at once against an empty database: the first to take the lock creates the
schema, the others wait for it and then find nothing left to do.
"""

from __future__ import annotations

import asyncpg

from eventctl.errors import ConfigError

# Any fixed number works; this one spells "evtctl" in ASCII, so it is unlikely to collide with another app.
MIGRATION_LOCK_KEY = 0x657674_63746C

# Append only: a released migration never changes, a new one goes at the end.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE eventctl_events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order: listing and its cursor
        event_id TEXT NOT NULL UNIQUE,                        -- the idempotency key
        payload TEXT NOT NULL,                                -- JSON text as stored at accept
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        processed_at TIMESTAMPTZ,
        due_at TIMESTAMPTZ,   -- waiting: when it may run; processing: lease expiry; otherwise NULL
        claim_token BIGINT,   -- fences a worker's changes to its claim
        last_error TEXT
    );
    CREATE INDEX eventctl_events_due ON eventctl_events (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX eventctl_events_status_seq ON eventctl_events (status, seq);
    CREATE INDEX eventctl_events_processed_at ON eventctl_events (processed_at) WHERE status = 'processed';
    """,
    """
    ALTER TABLE eventctl_events ADD COLUMN traceparent TEXT;  -- W3C trace context of the accepting request
    """,
    # Ordering keys, scheduled events and the attempt history. Every new index is partial, with a condition
    # that is false for a plain event (no key, no deliver_at, no error): an update of a plain event adds no
    # entry to them.
    """
    ALTER TABLE eventctl_events
        ADD COLUMN ordering_key TEXT,
        ADD COLUMN deliver_at TIMESTAMPTZ,  -- the time it was asked to run at, if still ahead at accept
        -- The latest attempt's record stays on the event's own row while the event is processed, retrying
        -- or failed (its outcome is the status, its error last_error, its end updated_at): the common case,
        -- one attempt, costs no write of its own. It moves to eventctl_attempts when the event moves on
        -- (claimed again, replayed).
        ADD COLUMN attempt_started_at TIMESTAMPTZ,
        ADD COLUMN attempt_duration_ms DOUBLE PRECISION,
        ADD COLUMN attempt_response_status INTEGER;
    -- A key's events, newest first: the ordering_key filter.
    CREATE INDEX eventctl_events_key ON eventctl_events (ordering_key, seq) WHERE ordering_key IS NOT NULL;
    -- A key's unfinished events in acceptance order: the first is the key's head, the only one ever due.
    CREATE INDEX eventctl_events_key_unfinished ON eventctl_events (ordering_key, seq)
        WHERE ordering_key IS NOT NULL AND status <> 'processed';
    -- Only a key's head can fail, so each failed keyed event is one blocked key.
    CREATE INDEX eventctl_events_blocked_keys ON eventctl_events (ordering_key)
        WHERE ordering_key IS NOT NULL AND status = 'failed';
    CREATE INDEX eventctl_events_scheduled ON eventctl_events (deliver_at)
        WHERE deliver_at IS NOT NULL AND status = 'accepted';
    CREATE INDEX eventctl_events_errors ON eventctl_events (seq) WHERE last_error IS NOT NULL;
    -- Every other attempt: the earlier ones, and those that ended without an outcome (released, lost).
    CREATE TABLE eventctl_attempts (
        event_seq BIGINT NOT NULL REFERENCES eventctl_events (seq) ON DELETE CASCADE,
        id BIGINT GENERATED ALWAYS AS IDENTITY,  -- the order they were recorded in
        attempt INTEGER NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,  -- when it was claimed
        finished_at TIMESTAMPTZ,          -- when its outcome was recorded; NULL when lost
        outcome TEXT NOT NULL,
        error TEXT,
        duration_ms DOUBLE PRECISION,
        response_status INTEGER,
        PRIMARY KEY (event_seq, id)
    );
    """,
)


async def migrate(conn: asyncpg.Connection) -> None:
    """Bring the database to the newest schema, in one transaction that holds the migration lock."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute("CREATE TABLE IF NOT EXISTS eventctl_schema (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT max(version) FROM eventctl_schema") or 0
        if version > len(MIGRATIONS):
            raise ConfigError(
                f"invalid DATABASE_URL: its schema version {version} is newer than this eventctl knows"
                f" ({len(MIGRATIONS)}); upgrade eventctl"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute("INSERT INTO eventctl_schema (version) VALUES ($1)", number)
