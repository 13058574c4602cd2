"""``POST /events`` as a plain ASGI endpoint: the hot path, kept free of per-request framework objects.

It reads the body within ``MAX_BODY_BYTES``, validates it by hand (the contract's 400s, never a 422),
and answers 202 only after the store committed the event. Its OpenAPI description is in ``openapi.py``.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from eventctl.api.problems import RETRY_AFTER_SECONDS, problem_body, send_response
from eventctl.api.schemas import (
    FORBIDDEN_IN_EVENT_ID,
    MAX_EVENT_ID_LENGTH,
    MAX_PAYLOAD_DEPTH,
    PROBLEM_MEDIA_TYPE,
    is_possible_event_id,
)
from eventctl.domain import NewEvent, event_path
from eventctl.errors import StoreUnavailable
from eventctl.logs import EVENT_ID
from eventctl.service import Service

log = logging.getLogger(__name__)

_JSON = b"application/json"
_LONG_DIGITS = re.compile(rb"\d{19}")
_EMPTY_PAYLOAD = b"{}"
MAX_DELAY = timedelta(days=365)

Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]  # status, media type, body, extra headers


class IngestEndpoint:
    """The ASGI app behind ``POST /events``."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._metrics = service.metrics
        self._max_body_bytes = service.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, media_type, body, headers = await self._answer(scope, receive)
        except Exception:  # a bug, not a dependency failure: still a problem document, never a bare trace
            log.exception("unexpected error in POST /events")
            status, media_type, body, headers = _problem(500, "internal-error", "an unexpected error occurred")
        await send_response(send, status, media_type, body, headers)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        body = await self._read_body(scope, receive)
        if body is None:
            return _problem(413, "body-too-large", f"the body is larger than {self._max_body_bytes} bytes")
        if not self._service.accepting:
            return _unavailable("the service is shutting down; retry on another instance or later")
        if self._service.backlog_full:
            return _unavailable("too many events are waiting (MAX_BACKLOG); retry later")
        try:
            document = _parse(body)
        except orjson.JSONDecodeError as exc:
            return _invalid("the body is not valid JSON", [{"detail": str(exc), "pointer": "#"}])
        event_id, errors = _validate(document, body)
        if errors:
            return _invalid("the body is not a valid event", errors)
        assert event_id is not None
        EVENT_ID.set(event_id)
        deliver_at, ordering_key, errors = _when_and_key(document)
        if errors:
            return _invalid("the body is not a valid event", errors)
        payload = _dump(document["payload"]) if "payload" in document else _EMPTY_PAYLOAD
        event = NewEvent(event_id, payload, deliver_at, ordering_key, self._traceparent())
        try:
            existing = await self._service.store.add(event)
        except StoreUnavailable:
            return _unavailable("the store is unavailable; the event was not stored, retry later")
        if existing is not None:
            self._metrics.duplicates.inc()
            return _problem(
                409,
                "duplicate-event",
                f"an event with id {event_id!r} already exists",
                event_id=event_id,
                event_status=existing.status,
                payload_matches=_same_json(existing.payload, payload),
            )
        self._metrics.accepted.inc()
        return (
            202,
            _JSON,
            orjson.dumps({"event_id": event_id, "status": "accepted"}),
            [(b"location", event_path(event_id).encode())],
        )

    def _traceparent(self) -> str | None:
        tracing = self._service.tracing
        return None if tracing is None else tracing.current_traceparent()

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` as soon as it is known to exceed the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self._max_body_bytes:
                    return None
                break
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _parse(body: bytes) -> Any:
    """The body as JSON, strictly (no NaN, no lone surrogates, no trailing data), with integers exact.

    orjson turns an integer beyond 64 bits into a float, silently changing it; a body with a run of 19 or
    more digits is therefore parsed again by the standard library, which keeps integers of any size.
    """
    document = orjson.loads(body)
    if _LONG_DIGITS.search(body):
        document = json.loads(body)
    return document


def _dump(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, which only _parse's exact path yields
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _validate(document: Any, body: bytes) -> tuple[str | None, list[dict[str, str]]]:
    """The event id, or the list of what is wrong with the body."""
    if not isinstance(document, dict):
        return None, [{"detail": "the body must be a JSON object", "pointer": "#"}]
    # Nesting can be no deeper than the count of brackets, which bytes.count finds at C speed; only a body
    # with that many brackets is walked.
    if body.count(b"[") + body.count(b"{") > MAX_PAYLOAD_DEPTH and _depth(document) > MAX_PAYLOAD_DEPTH + 1:
        detail = f"the payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep"
        return None, [{"detail": detail, "pointer": "#/payload"}]
    if "event_id" not in document:
        return None, [{"detail": "event_id is required", "pointer": "#/event_id"}]
    event_id = document["event_id"]
    if not isinstance(event_id, str):
        return None, [{"detail": "event_id must be a string", "pointer": "#/event_id"}]
    if not event_id:
        return None, [{"detail": "event_id must not be empty", "pointer": "#/event_id"}]
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        detail = f"event_id must be at most {MAX_EVENT_ID_LENGTH} characters"
        return None, [{"detail": detail, "pointer": "#/event_id"}]
    if FORBIDDEN_IN_EVENT_ID.search(event_id):
        detail = "event_id must not contain control characters, line separators or lone surrogates"
        return None, [{"detail": detail, "pointer": "#/event_id"}]
    return event_id, []


def _when_and_key(document: dict[str, Any]) -> tuple[datetime | None, str | None, list[dict[str, str]]]:
    """``deliver_at`` or ``delay_ms`` (not both; at most ``MAX_DELAY`` ahead; a past time means now, given as
    ``None``) and ``ordering_key`` (the rules of ``event_id``), or the list of what is wrong with them."""
    deliver_at: datetime | None = None
    now = datetime.now(UTC)
    if "deliver_at" in document and "delay_ms" in document:
        return None, None, [{"detail": "give deliver_at or delay_ms, not both", "pointer": "#/delay_ms"}]
    if "deliver_at" in document:
        text = document["deliver_at"]
        try:
            deliver_at = datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            deliver_at = None
        if deliver_at is None or deliver_at.tzinfo is None:
            detail = "deliver_at must be an RFC 3339 time with an offset, e.g. 2026-12-01T09:30:00Z"
            return None, None, [{"detail": detail, "pointer": "#/deliver_at"}]
    if "delay_ms" in document:
        delay = document["delay_ms"]
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            return None, None, [{"detail": "delay_ms must be a whole number >= 0", "pointer": "#/delay_ms"}]
        deliver_at = now + timedelta(milliseconds=min(delay, MAX_DELAY // timedelta(milliseconds=1) + 1))
    if deliver_at is not None and deliver_at - now > MAX_DELAY:
        field = "deliver_at" if "deliver_at" in document else "delay_ms"
        return None, None, [{"detail": f"{field} must be at most 365 days ahead", "pointer": f"#/{field}"}]
    ordering_key = document.get("ordering_key")
    if ordering_key is not None and not (isinstance(ordering_key, str) and is_possible_event_id(ordering_key)):
        detail = (
            f"ordering_key must be a string of 1 to {MAX_EVENT_ID_LENGTH} characters without control characters,"
            " line separators or lone surrogates"
        )
        return None, None, [{"detail": detail, "pointer": "#/ordering_key"}]
    return (deliver_at if deliver_at is not None and deliver_at > now else None), ordering_key, []


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _same_json(stored: bytes, sent: bytes) -> bool:
    """Equal as JSON values, whatever the key order."""
    if stored == sent:
        return True
    return _canonical(stored) == _canonical(sent)


def _canonical(text: bytes) -> bytes:
    return orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS)


def _problem(status: int, kind: str, detail: str, **extensions: Any) -> Answer:
    return status, PROBLEM_MEDIA_TYPE.encode(), problem_body(status, kind, detail, **extensions), []


def _invalid(detail: str, errors: list[dict[str, str]]) -> Answer:
    return _problem(400, "invalid-body", detail, errors=errors)


def _unavailable(detail: str) -> Answer:
    status, media_type, body, _ = _problem(503, "unavailable", detail)
    return status, media_type, body, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
