"""What both write endpoints (``POST /events`` and ``POST /events/batch``) share: reading a body within
``MAX_BODY_BYTES``, comparing payloads, and their problem answers, built without framework objects."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from eventctl.api.problems import RETRY_AFTER_SECONDS, problem_body, send_response
from eventctl.api.schemas import PROBLEM_MEDIA_TYPE

if TYPE_CHECKING:
    from eventctl.service import Service

log = logging.getLogger(__name__)

JSON = b"application/json"

Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]  # status, media type, body, extra headers


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it is known to exceed ``limit`` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                return None
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer_safely(what: str, answering: Any, send: Send) -> None:
    """Send the answer that ``answering`` (an awaitable of an ``Answer``) gives; a bug in it is still a
    problem document, never a bare trace."""
    try:
        status, media_type, body, headers = await answering
    except Exception:
        log.exception("unexpected error in %s", what)
        status, media_type, body, headers = problem(500, "internal-error", "an unexpected error occurred")
    await send_response(send, status, media_type, body, headers)


def same_json(stored: bytes, sent: bytes) -> bool:
    """Equal as JSON values, whatever the key order."""
    if stored == sent:
        return True
    return _canonical(stored) == _canonical(sent)


def _canonical(text: bytes) -> bytes:
    return orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS)


def problem(status: int, kind: str, detail: str, **extensions: Any) -> Answer:
    return status, PROBLEM_MEDIA_TYPE.encode(), problem_body(status, kind, detail, **extensions), []


def invalid(detail: str, errors: list[dict[str, str]]) -> Answer:
    return problem(400, "invalid-body", detail, errors=errors)


def unavailable(detail: str) -> Answer:
    status, media_type, body, _ = problem(503, "unavailable", detail)
    return status, media_type, body, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]


def too_large(limit: int) -> Answer:
    return problem(413, "body-too-large", f"the body is larger than {limit} bytes")


def not_taking_events(service: Service) -> Answer | None:
    """The 503 while the service takes no events (shutting down, or ``MAX_BACKLOG`` reached), else None."""
    if not service.accepting:
        return unavailable("the service is shutting down; retry on another instance or later")
    if service.backlog_full:
        return unavailable("too many events are waiting (MAX_BACKLOG); retry later")
    return None


def traceparent(service: Service) -> str | None:
    """The trace an accepted event joins: the request's, when tracing is on."""
    tracing = service.tracing
    return None if tracing is None else tracing.current_traceparent()
