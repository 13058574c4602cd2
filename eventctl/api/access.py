"""Who may call what, and how often: API keys with scopes, then a rate limit, as one plain ASGI middleware.

It sits in front of everything, the lean ``POST /events`` endpoint included. ``/health``, ``/ready``,
``/metrics`` and the API documentation are open and unlimited.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventctl.api.problems import problem_body, send_response
from eventctl.api.schemas import PROBLEM_MEDIA_TYPE
from eventctl.auth import ApiKey, identify, required_scope
from eventctl.ratelimit import Decision, RateLimit, TokenBuckets

# Where a request's rate limit is handed on to an endpoint that takes its own count of tokens (a batch: one
# per item): a function of the count, giving the decision and setting the answer's RateLimit headers.
TAKE_TOKENS = "eventctl.take_tokens"
COUNTED_BY_ENDPOINT = frozenset({("POST", "/events/batch")})

KEY_FINGERPRINT = "eventctl.key_fingerprint"  # the ASGI scope entry naming the caller's key


class AccessControl:
    """With ``keys``: 401 without a known key, 403 without the scope. With ``limit``: 429 past it."""

    def __init__(self, app: ASGIApp, keys: tuple[ApiKey, ...] | None, limit: RateLimit | None) -> None:
        self._app = app
        self._keys = keys
        self._buckets = TokenBuckets(limit) if limit is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        needed = required_scope(scope["method"], scope["path"])
        if needed is None:
            await self._app(scope, receive, send)
            return
        if self._keys is not None:
            key = _bearer_key(self._keys, scope)
            if key is None:
                await _refuse(send, 401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>",
                              [(b"www-authenticate", b'Bearer realm="eventctl"')])  # fmt: skip
                return
            if not key.allows(needed):
                await _refuse(send, 403, "forbidden", f"this API key lacks the {needed.value} scope")
                return
            identity = key.fingerprint
            scope[KEY_FINGERPRINT] = identity  # who asked, for the routes that log it (bulk actions)
        else:
            client = scope.get("client")
            identity = client[0] if client else "unknown"
        if self._buckets is None:
            await self._app(scope, receive, send)
            return
        buckets = self._buckets
        if (scope["method"], scope["path"]) in COUNTED_BY_ENDPOINT:
            counted: list[tuple[bytes, bytes]] = []

            def take(count: int) -> Decision:
                decision = buckets.take(identity, count)
                counted[:] = [(b"ratelimit-policy", buckets.limit.policy_header), (b"ratelimit", decision.header)]
                return decision

            scope[TAKE_TOKENS] = take
            await self._app(scope, receive, _with_headers(send, counted))
            return
        decision = buckets.take(identity)
        headers = [(b"ratelimit-policy", buckets.limit.policy_header), (b"ratelimit", decision.header)]
        if not decision.allowed:
            detail = f"rate limit exceeded; retry in {decision.retry_after_seconds}s"
            headers.append((b"retry-after", str(decision.retry_after_seconds).encode()))
            await _refuse(send, 429, "rate-limited", detail, headers)
            return
        await self._app(scope, receive, _with_headers(send, headers))


def _bearer_key(keys: tuple[ApiKey, ...], scope: Scope) -> ApiKey | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return identify(keys, token.strip()) if kind.lower() == "bearer" and token.strip() else None
    return None


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return send_with_headers


async def _refuse(
    send: Send, status: int, kind: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_response(send, status, PROBLEM_MEDIA_TYPE.encode(), problem_body(status, kind, detail), headers)
