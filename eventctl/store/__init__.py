"""Stores, chosen by the scheme of ``DATABASE_URL``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from eventctl.errors import ConfigError
from eventctl.store.base import Store

__all__ = ["Store", "open_store"]

_SYNCHRONOUS_MODES = ("FULL", "NORMAL")


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
    if url == "memory://":
        return SqliteStore(None, attempt_history=attempt_history)
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and parts.path.startswith("/") and len(parts.path) > 1:
        query = parse_qs(parts.query)
        synchronous = query.get("synchronous", ["FULL"])[-1].upper()
        if synchronous not in _SYNCHRONOUS_MODES or set(query) - {"synchronous"}:
            raise ConfigError(f"invalid DATABASE_URL={url!r}: the only option is ?synchronous=full|normal")
        return SqliteStore(parts.path[1:], synchronous=synchronous, attempt_history=attempt_history)
    raise ConfigError(
        f"invalid DATABASE_URL={url!r}: expected sqlite:///path/to/events.db, postgresql://... or memory://"
    )
