"""The console's session and its protection against cross-site requests.

A session is a signed cookie (itsdangerous): a reference to the API key that logged in (an HMAC of its
digest, never the key), a CSRF token, and the time it was issued, after which it lasts ``SESSION_SECONDS``.
The signing secret is derived from every configured key's digest, so instances that share ``API_KEYS`` share
sessions, and changing the keys ends every session. Without keys (``ENV=dev``) the session only carries the
CSRF token: the console is open, as the API is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from eventctl.auth import ApiKey, Scope

COOKIE = "eventctl_console"
SESSION_SECONDS = 8 * 3600  # a working shift; then the key is asked for again
_SALT = "eventctl-console-session"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at the console: their key (``None`` when the console is open) and their CSRF token."""

    key: ApiKey | None
    csrf: str

    @property
    def can_read(self) -> bool:
        return self.key is None or self.key.allows(Scope.READ)

    @property
    def can_act(self) -> bool:
        """Replay and delete, one or in bulk: the ``admin`` scope (everyone when the console is open)."""
        return self.key is None or self.key.allows(Scope.ADMIN)

    @property
    def fingerprint(self) -> str | None:
        return None if self.key is None else self.key.fingerprint


class Sessions:
    """Issues and reads session cookies for one set of keys (empty: the open console)."""

    def __init__(self, keys: tuple[ApiKey, ...], *, lifetime: int = SESSION_SECONDS) -> None:
        self.keys = keys
        self.lifetime = lifetime
        secret = hashlib.sha256(b"eventctl console\0" + b"".join(key.digest for key in keys)).digest()
        if not keys:
            secret = secrets.token_bytes(32)  # nothing to share between instances: any secret will do
        self._secret = secret
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)

    @property
    def open(self) -> bool:
        return not self.keys

    def _reference(self, key: ApiKey) -> str:
        return hmac.new(self._secret, key.digest, hashlib.sha256).hexdigest()[:32]

    def issue(self, key: ApiKey | None) -> tuple[Viewer, str]:
        """A new session for ``key`` (``None`` for the open console): the viewer and the cookie's value."""
        viewer = Viewer(key, secrets.token_urlsafe(24))
        reference = None if key is None else self._reference(key)
        return viewer, self._serializer.dumps({"k": reference, "c": viewer.csrf})

    def read(self, cookie: str | None) -> Viewer | None:
        """The viewer of a cookie, or ``None`` when it is missing, forged, expired, or names a key that is
        no longer configured."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.lifetime)
        except BadSignature:  # SignatureExpired is one too
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        reference = data.get("k")
        if reference is None:
            return Viewer(None, data["c"]) if self.open else None
        for key in self.keys:
            if isinstance(reference, str) and hmac.compare_digest(self._reference(key), reference):
                return Viewer(key, data["c"])
        return None


def csrf_matches(viewer: Viewer, submitted: str | None) -> bool:
    """Whether a form's token is the session's (compared in constant time)."""
    return submitted is not None and hmac.compare_digest(viewer.csrf.encode(), submitted.encode())


def same_origin(headers: Mapping[str, str], scheme: str) -> bool:
    """Whether a POST comes from the console's own pages, as far as the browser tells: ``Sec-Fetch-Site``
    must be ``same-origin`` (or ``none``, typed by the user), and ``Origin``, when sent, this very host.
    A client that sends neither (curl) is judged by the CSRF token alone."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    return origin == f"{scheme}://{host}"


def cookie_header(value: str, *, secure: bool, lifetime: int) -> str:
    """The ``Set-Cookie`` value of a session: ``HttpOnly``, ``SameSite=Strict``, for ``/ui`` only."""
    flags = f"; Max-Age={lifetime}; Path=/ui; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}{flags}{'; Secure' if secure else ''}"


def clearing_cookie_header(*, secure: bool) -> str:
    return cookie_header("", secure=secure, lifetime=0)
