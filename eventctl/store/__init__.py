"""Stores, chosen by the scheme of ``DATABASE_URL``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from eventctl.errors import ConfigError
from eventctl.store.base import Store

__all__ = ["Store", "check_database_url", "open_store"]

_SYNCHRONOUS_MODES = ("FULL", "NORMAL")


def check_database_url(url: str) -> str:
    """``url`` itself if it names a store eventctl has; ``ValueError`` saying what is expected if not.
    Nothing is opened or imported: ``Settings`` checks ``DATABASE_URL`` with it before anything starts."""
    _sqlite_path(url)
    return url


def _sqlite_path(url: str) -> tuple[str, str] | None:
    """The SQLite file and synchronous mode ``url`` names; ``None`` for the other stores."""
    if url.startswith(("postgresql://", "postgres://")) or url == "memory://":
        return None
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and parts.path.startswith("/") and len(parts.path) > 1:
        query = parse_qs(parts.query)
        synchronous = query.get("synchronous", ["FULL"])[-1].upper()
        if synchronous not in _SYNCHRONOUS_MODES or set(query) - {"synchronous"}:
            raise ValueError("the only option is ?synchronous=full|normal")
        return parts.path[1:], synchronous
    raise ValueError("expected sqlite:///path/to/events.db, postgresql://... or memory://")


def open_store(url: str, *, attempt_history: bool = True) -> Store:
    """The store ``url`` names, not yet opened; with ``attempt_history=False`` it records no attempts.

    ``sqlite:///events.db`` commits with ``synchronous=FULL``; ``?synchronous=normal`` opts out of an
    fsync per commit (a power cut may then lose the last commits). ``memory://`` keeps nothing.
    ``postgresql://user:password@host:port/database`` is shared by every instance that uses it; query
    parameters other than libpq's connection options are set as server settings (``?search_path=...``).
    """
    from eventctl.store.sqlite import SqliteStore

    if url.startswith(("postgresql://", "postgres://")):
        from eventctl.store.postgres import PostgresStore  # imported only when used: asyncpg is not small

        return PostgresStore(url, attempt_history=attempt_history)
    try:
        sqlite = _sqlite_path(url)
    except ValueError as exc:
        raise ConfigError(f"invalid DATABASE_URL={url!r}: {exc}") from None
    if sqlite is None:
        return SqliteStore(None, attempt_history=attempt_history)
    path, synchronous = sqlite
    return SqliteStore(path, synchronous=synchronous, attempt_history=attempt_history)
