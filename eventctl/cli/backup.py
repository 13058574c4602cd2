"""``eventctl backup DEST``: a consistent copy of a SQLite store, safe while ``eventctl serve`` runs on it.

A file copy of a database in WAL mode can miss the commits still in ``-wal`` or catch a page mid-write.
SQLite's online backup API instead copies the database as one read transaction sees it: every commit made
before it began, none after, and in WAL mode it does not hold up the server's writes. The copy is written
beside ``DEST`` and renamed into place only once it is complete and passes SQLite's integrity check.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class BackupError(Exception):
    """The backup failed; the message says why."""


class BackupRefused(BackupError):
    """The backup was not attempted: what was asked cannot be done (a usage error)."""


@dataclass(frozen=True, slots=True)
class Copied:
    source: Path
    destination: Path
    events: int
    size_bytes: int


def sqlite_path(database_url: str) -> Path:
    """The file of a ``sqlite:///`` URL (relative to the working directory, as ``eventctl serve`` reads it)."""
    if database_url.startswith(("postgresql://", "postgres://")):
        raise BackupRefused("backup copies a SQLite store; for PostgreSQL use pg_dump (see the README's Backups)")
    if database_url == "memory://":
        raise BackupRefused("a memory:// store keeps nothing to back up")
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite" or len(parts.path) < 2:
        raise BackupRefused(f"DATABASE_URL={database_url!r} is not sqlite:///path/to/events.db")
    return Path(parts.path[1:])


def back_up(source: Path, destination: Path, *, overwrite: bool = False) -> Copied:
    """Copy the SQLite database ``source`` to ``destination`` with the online backup API."""
    if not source.is_file():
        raise BackupRefused(f"no database at {str(source.resolve())!r}; is DATABASE_URL (or --database-url) right?")
    if destination.exists() and not overwrite:
        raise BackupRefused(f"{str(destination)!r} exists; choose another name or pass --force")
    if destination.resolve() == source.resolve():
        raise BackupRefused("the destination is the database itself")
    directory = destination.parent if str(destination.parent) else Path()
    handle, scratch = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial", dir=directory)
    os.close(handle)
    try:
        with (
            contextlib.closing(sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)) as reader,
            contextlib.closing(sqlite3.connect(scratch)) as copy,
        ):
            reader.backup(copy)  # all pages in one step: one consistent snapshot
            if copy.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("the copy failed SQLite's integrity check; the database may be damaged")
            events = _count_events(copy)
        os.replace(scratch, destination)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {str(source)!r}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    return Copied(source, destination, events, destination.stat().st_size)


def _count_events(conn: sqlite3.Connection) -> int:
    try:
        count: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:  # not an eventctl database (yet): copied all the same
        return 0
    return count
