"""The routes FastAPI serves: listing, one event, its attempts, replay, delete and bulk actions, metrics,
health and readiness (``POST /events`` is served by ``ingest``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from eventctl.api.access import KEY_FINGERPRINT
from eventctl.api.bulk_request import InvalidBulkRequest, bulk_request
from eventctl.api.problems import invalid_filter_response, problem_response
from eventctl.api.schemas import (
    CURSOR_PATTERN,
    PROBLEM_MEDIA_TYPE,
    AttemptList,
    BulkOut,
    EventAccepted,
    EventList,
    EventOut,
    Health,
    Problem,
    Readiness,
)
from eventctl.bulk import run_bulk
from eventctl.domain import Attempt, Event, Status, event_path, is_possible_event_id
from eventctl.durations import format_go_duration
from eventctl.filters import FILTER_PARAMETERS, TIME_FILTER, FilterError, parse_query
from eventctl.logs import EVENT_ID
from eventctl.metrics import CONTENT_TYPE
from eventctl.service import Service

router = APIRouter()

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

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
        "ordering_key": event.ordering_key,
        "blocked_by": event.blocked_by,
    }


def attempt_document(attempt: Attempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "started_at": rfc3339(attempt.started_at),
        "finished_at": rfc3339(attempt.finished_at),
        "outcome": attempt.outcome,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
        "response_status": attempt.response_status,
    }


@router.get(
    "/events",
    summary="Events, newest first, a page at a time",
    operation_id="list_events",
    response_model=EventList,
    responses={400: {**_PROBLEM, "description": "A query parameter is not valid."}, 503: _PROBLEM},
)
async def list_events(
    request: Request,
    status: Annotated[
        list[str] | None, Query(description="Only events with this status; repeat for any of several.")
    ] = None,
    since: Annotated[str | None, Query(description=f"Received at or after this: {TIME_FILTER}.")] = None,
    until: Annotated[str | None, Query(description=f"Received before this: {TIME_FILTER}.")] = None,
    error: Annotated[
        str | None, Query(description="Only events whose last_error holds this (case-insensitive).")
    ] = None,
    ordering_key: Annotated[str | None, Query(description="Only events with this ordering key.")] = None,
    id_prefix: Annotated[str | None, Query(description="Only events whose id starts with this.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page.")
    ] = None,
) -> Response:
    try:
        filter = parse_query({name: request.query_params.getlist(name) for name in FILTER_PARAMETERS})
    except FilterError as exc:
        return invalid_filter_response(exc, "#/query/")
    before = None if cursor is None else int(cursor)
    page = await _service(request).store.list_events(filter, limit, before)
    next_cursor = None if page.next_before is None else str(page.next_before)
    return _json({"items": [event_document(event) for event in page.items], "next_cursor": next_cursor})


@router.post(
    "/events/bulk",
    summary="Replay or delete every event a filter selects",
    description="replay changes only failed events, delete only processed and failed ones, whatever the filter "
    "says. The work goes in bounded batches; ingest goes on meanwhile. Every bulk action is logged.",
    operation_id="bulk_action",
    response_model=BulkOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BulkIn"}}},
        }
    },
    responses={
        400: {**_PROBLEM, "description": "The body is not a valid bulk action (see errors)."},
        413: {**_PROBLEM, "description": "The body is larger than MAX_BODY_BYTES."},
        503: _PROBLEM,
    },
)
async def bulk_action(request: Request) -> Response:
    service = _service(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > service.settings.max_body_bytes:
            return problem_response(413, "body-too-large", "the body is larger than MAX_BODY_BYTES")
    try:
        action, filter, dry_run = bulk_request(bytes(body))
    except InvalidBulkRequest as exc:
        return problem_response(400, "invalid-bulk-action", "the body is not a valid bulk action", errors=exc.errors)
    fingerprint = request.scope.get(KEY_FINGERPRINT)
    result = await run_bulk(service.store, action, filter, dry_run=dry_run, key_fingerprint=fingerprint)
    return _json({"action": result.action, "matched": result.matched, "changed": result.changed, "dry_run": dry_run})


@router.get(
    "/events/{event_id:path}/attempts",
    summary="The attempts to process one event, oldest first",
    operation_id="get_attempts",
    response_model=AttemptList,
    responses={404: {**_PROBLEM, "description": "No event has this id."}, 503: _PROBLEM},
)
async def get_attempts(event_id: str, request: Request) -> Response:
    EVENT_ID.set(event_id)
    if not is_possible_event_id(event_id):
        return _not_found(event_id)
    attempts = await _service(request).store.attempts(event_id)
    if attempts is None:
        return _not_found(event_id)
    return _json({"items": [attempt_document(attempt) for attempt in attempts]})


@router.delete(
    "/events/{event_id:path}",
    summary="Delete an event and its attempts; its id is free again",
    operation_id="delete_event",
    status_code=204,
    response_class=Response,
    responses={
        404: {**_PROBLEM, "description": "No event has this id."},
        409: {**_PROBLEM, "description": "The event is processing (see event_status)."},
        503: _PROBLEM,
    },
)
async def delete_event(event_id: str, request: Request) -> Response:
    EVENT_ID.set(event_id)
    if not is_possible_event_id(event_id):
        return _not_found(event_id)
    before = await _service(request).store.delete(event_id)
    if before is None:
        return _not_found(event_id)
    if before is Status.PROCESSING:
        return problem_response(
            409,
            "event-processing",
            f"{event_id!r} is being processed; delete it once it is done",
            event_id=event_id,
            event_status=before,
        )
    return Response(status_code=204)


@router.post(
    "/events/{event_id:path}/replay",
    summary="Put a failed event back to accepted, attempts reset",
    operation_id="replay_event",
    status_code=202,
    response_model=EventAccepted,
    responses={
        404: {**_PROBLEM, "description": "No event has this id."},
        409: {**_PROBLEM, "description": "The event is not failed (see event_status)."},
        503: _PROBLEM,
    },
)
async def replay_event(event_id: str, request: Request) -> Response:
    EVENT_ID.set(event_id)
    if not is_possible_event_id(event_id):
        return _not_found(event_id)
    before = await _service(request).store.replay(event_id)
    if before is None:
        return _not_found(event_id)
    if before is not Status.FAILED:
        return problem_response(
            409,
            "event-not-failed",
            f"only failed events can be replayed; {event_id!r} is {before}",
            event_id=event_id,
            event_status=before,
        )
    response = _json({"event_id": event_id, "status": "accepted"}, status_code=202)
    response.headers["location"] = event_path(event_id)
    return response


@router.get(
    "/events/{event_id:path}",
    summary="One event and its processing status",
    operation_id="get_event",
    response_model=EventOut,
    responses={404: {**_PROBLEM, "description": "No event has this id."}, 503: _PROBLEM},
)
async def get_event(event_id: str, request: Request) -> Response:
    EVENT_ID.set(event_id)
    if not is_possible_event_id(event_id):
        return _not_found(event_id)
    event = await _service(request).store.get(event_id)
    if event is None:
        return _not_found(event_id)
    return _json(event_document(event))


def _not_found(event_id: str) -> Response:
    """404 for an unknown id, and without asking the store for one no event can have (a control character,
    NUL, too long): PostgreSQL cannot even compare a NUL."""
    return problem_response(404, "event-not-found", f"no event has id {event_id!r}", event_id=event_id)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    operation_id="metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition format."}},
)
async def metrics(request: Request) -> Response:
    return Response(_service(request).metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/health", summary="Liveness: the process answers", operation_id="health", response_model=Health)
async def health(request: Request) -> Response:
    return _json({"status": "ok", "uptime": format_go_duration(_service(request).uptime_seconds)})


@router.get(
    "/ready",
    summary="Readiness: the worker runs and the store answers",
    operation_id="ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Starting, draining on shutdown, or store unreachable."}},
)
async def ready(request: Request) -> Response:
    if await _service(request).is_ready():
        return _json({"status": "ready", "ready": True})
    return _json({"status": "not ready", "ready": False}, status_code=503)
