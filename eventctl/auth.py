"""API keys and their scopes: who may call what.

``API_KEYS`` holds ``key:scope+scope`` entries separated by commas (or newlines, in ``API_KEYS_FILE``);
a key has no colon, comma, ``#`` or white space in it.
Keys are compared in constant time and never appear in logs or error messages; a key is known to the rest
of the service only by its fingerprint.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

MIN_KEY_LENGTH = 16


class Scope(enum.StrEnum):
    WRITE = "events:write"  # POST /events
    READ = "events:read"  # GET /events, GET /events/{id}
    ADMIN = "admin"  # replay, delete, bulk actions, and everything the other scopes allow


OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/docs", "/openapi.json", "/ui"})
# The documentation page's assets and Swagger UI's OAuth2 redirect page; and the console, which asks for a
# key itself (a login form and a session cookie, see eventctl.console.session).
OPEN_PREFIXES = ("/docs/", "/ui/")


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a call needs, or ``None`` for the open paths."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if method == "POST" and path in ("/events", "/events/batch"):
        return Scope.WRITE
    if method == "POST" and path.startswith("/events/") and path.endswith("/replay"):
        return Scope.ADMIN
    if (method == "POST" and path == "/events/bulk") or (method == "DELETE" and path.startswith("/events/")):
        return Scope.ADMIN
    return Scope.READ


@dataclass(frozen=True, slots=True)
class ApiKey:
    digest: bytes  # sha256 of the key: what is compared and kept
    scopes: frozenset[Scope]

    @property
    def fingerprint(self) -> str:
        """The first 8 hex digits of the key's SHA-256: safe to log and to key a rate limit by, it does not
        reveal the key."""
        return self.digest.hex()[:8]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def __repr__(self) -> str:
        return f"ApiKey({self.fingerprint}, {sorted(self.scopes)})"


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """Keys from ``key:scope+scope`` entries, separated by commas or newlines; ``#`` starts a comment.

    Raises ``ValueError`` with a message that names the entry by position, never by its key.
    """
    keys = []
    entries = [line.split("#", 1)[0] for line in text.splitlines()]
    for position, entry in enumerate((e.strip() for line in entries for e in line.split(",")), start=1):
        if not entry:
            continue
        key, separator, scope_text = entry.partition(":")  # scopes hold colons; keys may not
        if not separator or not key:
            raise ValueError(f"entry {position} is not key:scope+scope")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"entry {position}: a key needs at least {MIN_KEY_LENGTH} characters")
        try:
            scopes = frozenset(Scope(name) for name in scope_text.split("+"))
        except ValueError:
            allowed = ", ".join(scope.value for scope in Scope)
            raise ValueError(f"entry {position}: scopes are {allowed}, joined with +") from None
        keys.append(ApiKey(hashlib.sha256(key.encode()).digest(), scopes))
    if not keys:
        raise ValueError("no keys in it")
    return tuple(keys)


def identify(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The key ``presented`` is, comparing against every key in constant time, or ``None``."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, digest):
            found = key
    return found


def new_key() -> str:
    """A key with 256 bits from the system's secure random source."""
    return "evk_" + secrets.token_urlsafe(32)
