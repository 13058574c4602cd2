"""The read routes: one event, health and readiness."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from eventctl.api.problems import PROBLEM_MEDIA_TYPE, problem_response
from eventctl.api.schemas import EventOut, Health, Problem, Readiness
from eventctl.domain import Event
from eventctl.durations import format_go_duration
from eventctl.service import Service

router = APIRouter()

_PROBLEM = {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def rfc3339(moment: datetime | None) -> str | None:
    """UTC with a ``Z``, microsecond precision."""
    return None if moment is None else moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_document(event: Event) -> dict[str, Any]:
    """The JSON shape of a stored event; the payload is passed through as stored, not re-parsed."""
    return {
        "event_id": event.event_id,
        "status": event.status,
        "payload": orjson.Fragment(event.payload),
        "attempts": event.attempts,
        "received_at": rfc3339(event.received_at),
        "updated_at": rfc3339(event.updated_at),
        "processed_at": rfc3339(event.processed_at),
        "next_attempt_at": rfc3339(event.next_attempt_at),
        "last_error": event.last_error,
    }


@router.get(
    "/events/{event_id:path}",
    summary="One event and its processing status",
    response_model=EventOut,
    responses={404: {**_PROBLEM, "description": "No event has this id."}, 503: _PROBLEM},
)
async def get_event(event_id: str, request: Request) -> Response:
    event = await _service(request).store.get(event_id)
    if event is None:
        return problem_response(404, "event-not-found", f"no event has id {event_id!r}", event_id=event_id)
    return _json(event_document(event))


@router.get("/health", summary="Liveness: the process answers", response_model=Health)
async def health(request: Request) -> Response:
    return _json({"status": "ok", "uptime": format_go_duration(_service(request).uptime_seconds)})


@router.get(
    "/ready",
    summary="Readiness: the worker runs and the store answers",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Starting, draining on shutdown, or store unreachable."}},
)
async def ready(request: Request) -> Response:
    if await _service(request).is_ready():
        return _json({"status": "ready", "ready": True})
    return _json({"status": "not ready", "ready": False}, status_code=503)
