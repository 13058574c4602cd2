"""``POST /events/batch`` (SPEC §11) as a plain ASGI endpoint, like ``POST /events``: many events in one
request, each validated as ``POST /events`` validates one, the accepted ones committed together in one
transaction, and a 200 with one result per item (in request order) only after that commit.

Its OpenAPI description is in ``openapi.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson
from starlette.types import Receive, Scope, Send

from eventctl.api.access import TAKE_TOKENS
from eventctl.api.event_body import decode_event, sent_event_id
from eventctl.api.intake import (
    JSON,
    Answer,
    answer_safely,
    invalid,
    not_taking_events,
    problem,
    read_body,
    same_json,
    too_large,
    traceparent,
    unavailable,
)
from eventctl.domain import Event, NewEvent
from eventctl.errors import StoreUnavailable
from eventctl.ratelimit import Decision
from eventctl.service import Service

_ACCEPTED = "accepted"


class _Envelope(msgspec.Struct):
    events: list[msgspec.Raw]


_ENVELOPE = msgspec.json.Decoder(_Envelope)


class BatchEndpoint:
    """The ASGI app behind ``POST /events/batch``."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._metrics = service.metrics
        self._max_body_bytes = service.settings.max_body_bytes
        self._max_events = service.settings.max_batch_events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await answer_safely("POST /events/batch", self._answer(scope, receive), send)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        take: Callable[[int], Decision] | None = scope.get(TAKE_TOKENS)
        body = await read_body(scope, receive, self._max_body_bytes)
        if body is None:
            return _limited(take, 1) or too_large(self._max_body_bytes)
        events, refusal = self._envelope(body)
        if refusal is not None:
            return _limited(take, 1) or refusal
        assert events is not None
        limited = _limited(take, len(events))
        if limited is not None:
            return limited
        refused = not_taking_events(self._service)
        if refused is not None:
            return refused
        return await self._store(events)

    def _envelope(self, body: bytes) -> tuple[list[msgspec.Raw] | None, Answer | None]:
        """The items (each still JSON text, to be decoded as an event of its own), or the 400 that the
        envelope earns."""
        try:
            events = _ENVELOPE.decode(body).events
        except msgspec.ValidationError as exc:
            message = str(exc)
            if "`$.events" in message:
                return None, _bad_envelope("events must be an array of events", "#/events")
            if "missing required field" in message:
                return None, _bad_envelope("events is required", "#/events")
            return None, _bad_envelope("the body must be a JSON object", "#")
        except msgspec.DecodeError as exc:
            return None, invalid("the body is not valid JSON", [{"detail": str(exc), "pointer": "#"}])
        if not events:
            return None, _bad_envelope("events must hold at least one event", "#/events")
        if len(events) > self._max_events:
            return None, _bad_envelope(f"events must hold at most {self._max_events} events", "#/events")
        return events, None

    async def _store(self, items: list[msgspec.Raw]) -> Answer:
        trace = traceparent(self._service)
        results: list[dict[str, Any]] = []
        new: list[NewEvent] = []  # the first valid item of each id, in request order
        first: dict[str, int] = {}  # event id -> its position in ``new``
        valid: list[tuple[dict[str, Any], NewEvent, int]] = []  # (result, event, position of its id's first)
        for index, item in enumerate(items):
            event, errors = decode_event(item, trace)
            if event is None:
                results.append({"index": index, "event_id": sent_event_id(item), "status": 400, "errors": errors})
                continue
            result = {"index": index, "event_id": event.event_id}
            results.append(result)
            position = first.setdefault(event.event_id, len(new))
            if position == len(new):
                new.append(event)
            valid.append((result, event, position))
        try:
            existing = await self._service.store.add_many(new)
        except StoreUnavailable:
            return unavailable("the store is unavailable; no event of the batch was stored, retry later")
        accepted = duplicates = 0
        for result, event, position in valid:
            holder: Event | NewEvent | None = existing[position]
            if holder is None and new[position] is event:
                accepted += 1
                result.update(status=202, event_status=_ACCEPTED)
                continue
            holder = holder or new[position]  # a later item of an id this batch stored: the first one won
            status = holder.status if isinstance(holder, Event) else _ACCEPTED
            duplicates += 1
            result.update(status=409, event_status=status, payload_matches=same_json(holder.payload, event.payload))
        if accepted:
            self._metrics.accepted.inc(accepted)
        if duplicates:
            self._metrics.duplicates.inc(duplicates)
        summary = {"accepted": accepted, "duplicates": duplicates, "invalid": len(items) - accepted - duplicates}
        return 200, JSON, orjson.dumps({"results": results, **summary}), []


def _limited(take: Callable[[int], Decision] | None, count: int) -> Answer | None:
    """The 429 for a request that needs ``count`` tokens of a rate limit that cannot give them now."""
    if take is None:
        return None
    decision = take(count)
    if decision.allowed:
        return None
    detail = f"rate limit exceeded: this request needs {count} tokens; retry in {decision.retry_after_seconds}s"
    status, media_type, body, _ = problem(429, "rate-limited", detail)
    return status, media_type, body, [(b"retry-after", str(decision.retry_after_seconds).encode())]


def _bad_envelope(detail: str, pointer: str) -> Answer:
    return invalid("the body is not a valid batch", [{"detail": detail, "pointer": pointer}])
