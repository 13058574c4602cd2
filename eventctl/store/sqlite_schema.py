"""The SQLite schema as numbered migrations, applied in order at start and recorded in ``user_version``."""

from __future__ import annotations

import sqlite3

# Append only: a released migration never changes, a new one goes at the end.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,          -- insertion order: newest first listing and its cursor
        event_id TEXT NOT NULL UNIQUE,    -- the idempotency key
        payload BLOB NOT NULL,            -- JSON text as stored at accept
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        received_at INTEGER NOT NULL,     -- microseconds since the Unix epoch, as every time here
        updated_at INTEGER NOT NULL,
        processed_at INTEGER,
        due_at INTEGER,                   -- waiting: when it may run; processing: lease expiry; else NULL
        claim_token INTEGER,              -- fences a worker's changes to its claim
        last_error TEXT
    );
    CREATE INDEX events_due ON events (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX events_status_seq ON events (status, seq);
    CREATE INDEX events_processed_at ON events (processed_at) WHERE status = 'processed';
    """,
    """
    ALTER TABLE events ADD COLUMN traceparent TEXT;  -- W3C trace context of the accepting request
    """,
    # Ordering keys, scheduled events and the attempt history. Every new index is partial, with a condition
    # that is false for a plain event (no key, no deliver_at, no error), so plain events pay nothing for them.
    """
    ALTER TABLE events ADD COLUMN ordering_key TEXT;
    ALTER TABLE events ADD COLUMN deliver_at INTEGER;  -- the time it was asked to run at, if ahead at accept
    -- The latest attempt's record stays on the event's own row while the event is processed, retrying or
    -- failed (its outcome is the status, its error last_error, its end updated_at): the common case, one
    -- attempt, costs no write of its own. It moves to the attempts table when the event moves on (claimed
    -- again, replayed).
    ALTER TABLE events ADD COLUMN attempt_started_at INTEGER;
    ALTER TABLE events ADD COLUMN attempt_duration_ms REAL;
    ALTER TABLE events ADD COLUMN attempt_response_status INTEGER;
    -- A key's events, newest first: the ordering_key filter.
    CREATE INDEX events_key ON events (ordering_key, seq) WHERE ordering_key IS NOT NULL;
    -- A key's unfinished events in acceptance order: the first is the key's head, the only one ever due.
    CREATE INDEX events_key_unfinished ON events (ordering_key, seq)
        WHERE ordering_key IS NOT NULL AND status <> 'processed';
    -- Only a key's head can fail, so each failed keyed event is one blocked key.
    CREATE INDEX events_blocked_keys ON events (ordering_key) WHERE ordering_key IS NOT NULL AND status = 'failed';
    CREATE INDEX events_scheduled ON events (deliver_at) WHERE deliver_at IS NOT NULL AND status = 'accepted';
    CREATE INDEX events_errors ON events (seq) WHERE last_error IS NOT NULL;
    -- Every other attempt: the earlier ones, and those that ended without an outcome (released, lost).
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,           -- the order they were recorded in
        event_seq INTEGER NOT NULL,       -- events.seq; deleted with the event
        attempt INTEGER NOT NULL,
        started_at INTEGER NOT NULL,      -- when it was claimed
        finished_at INTEGER,              -- when its outcome was recorded; NULL when lost
        outcome TEXT NOT NULL,
        error TEXT,
        duration_ms REAL,
        response_status INTEGER
    );
    CREATE INDEX attempts_event ON attempts (event_seq, id);
    """,
)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the database to the newest schema; each migration commits with its version number."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this eventctl knows ({len(MIGRATIONS)}); upgrade eventctl"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
