"""One definition of an event's body, for ``POST /events`` and every item of ``POST /events/batch``: what
``event_id``, ``payload``, ``deliver_at``, ``delay_ms`` and ``ordering_key`` may be, and the 400 errors
(with pointers relative to the event) when they are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eventctl.api.intake import dump
from eventctl.api.schemas import (
    FORBIDDEN_IN_EVENT_ID,
    MAX_EVENT_ID_LENGTH,
    MAX_PAYLOAD_DEPTH,
    is_possible_event_id,
)
from eventctl.domain import NewEvent

MAX_DELAY = timedelta(days=365)
_EMPTY_PAYLOAD = b"{}"

Errors = list[dict[str, str]]


def might_be_too_deep(body: bytes) -> bool:
    """Nesting can be no deeper than the count of brackets, which bytes.count finds at C speed; only the
    events of a body with that many brackets are walked."""
    return body.count(b"[") + body.count(b"{") > MAX_PAYLOAD_DEPTH


def check_event(document: Any, deep: bool, traceparent: str | None = None) -> tuple[NewEvent | None, Errors]:
    """The event that ``document`` describes, or what is wrong with it. ``deep``: whether it may nest more
    than ``MAX_PAYLOAD_DEPTH`` levels (``might_be_too_deep`` of the body it came in)."""
    errors = _identity_errors(document, deep)
    if errors:
        return None, errors
    deliver_at, ordering_key, errors = _when_and_key(document)
    if errors:
        return None, errors
    payload = dump(document["payload"]) if "payload" in document else _EMPTY_PAYLOAD
    return NewEvent(document["event_id"], payload, deliver_at, ordering_key, traceparent), []


def _identity_errors(document: Any, deep: bool) -> Errors:
    if not isinstance(document, dict):
        return [{"detail": "the body must be a JSON object", "pointer": "#"}]
    if deep and _depth(document) > MAX_PAYLOAD_DEPTH + 1:
        return [{"detail": f"the payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep", "pointer": "#/payload"}]
    if "event_id" not in document:
        return [{"detail": "event_id is required", "pointer": "#/event_id"}]
    event_id = document["event_id"]
    if not isinstance(event_id, str):
        return [{"detail": "event_id must be a string", "pointer": "#/event_id"}]
    if not event_id:
        return [{"detail": "event_id must not be empty", "pointer": "#/event_id"}]
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        return [{"detail": f"event_id must be at most {MAX_EVENT_ID_LENGTH} characters", "pointer": "#/event_id"}]
    if FORBIDDEN_IN_EVENT_ID.search(event_id):
        detail = "event_id must not contain control characters, line separators or lone surrogates"
        return [{"detail": detail, "pointer": "#/event_id"}]
    return []


def _when_and_key(document: dict[str, Any]) -> tuple[datetime | None, str | None, Errors]:
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
        if isinstance(delay, float) and delay.is_integer():  # JSON Schema's integer: 5.0 is a whole number
            delay = int(delay)
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
