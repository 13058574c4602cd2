"""``POST /events`` as a plain ASGI endpoint: the hot path, kept free of per-request framework objects.

It reads the body within ``MAX_BODY_BYTES``, validates it (``event_body``: the contract's 400s, never a 422),
and answers 202 only after the store committed the event. Its OpenAPI description is in ``openapi.py``.
"""

from __future__ import annotations

import msgspec
import orjson
from starlette.types import Receive, Scope, Send

from eventctl.api.event_body import decode_event
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
from eventctl.domain import event_path
from eventctl.errors import StoreUnavailable
from eventctl.logs import EVENT_ID
from eventctl.service import Service


class IngestEndpoint:
    """The ASGI app behind ``POST /events``."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._metrics = service.metrics
        self._max_body_bytes = service.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await answer_safely("POST /events", self._answer(scope, receive), send)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        body = await read_body(scope, receive, self._max_body_bytes)
        if body is None:
            return too_large(self._max_body_bytes)
        refused = not_taking_events(self._service)
        if refused is not None:
            return refused
        try:
            event, errors = decode_event(body, traceparent(self._service))
        except msgspec.DecodeError as exc:
            return invalid("the body is not valid JSON", [{"detail": str(exc), "pointer": "#"}])
        if event is None:
            return invalid("the body is not a valid event", errors)
        event_id = event.event_id
        EVENT_ID.set(event_id)
        try:
            existing = await self._service.store.add(event)
        except StoreUnavailable:
            return unavailable("the store is unavailable; the event was not stored, retry later")
        if existing is not None:
            self._metrics.duplicates.inc()
            return problem(
                409,
                "duplicate-event",
                f"an event with id {event_id!r} already exists",
                event_id=event_id,
                event_status=existing.status,
                payload_matches=same_json(existing.payload, event.payload),
            )
        self._metrics.accepted.inc()
        return (
            202,
            JSON,
            orjson.dumps({"event_id": event_id, "status": "accepted"}),
            [(b"location", event_path(event_id).encode())],
        )
