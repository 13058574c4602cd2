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
