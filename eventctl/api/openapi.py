"""The OpenAPI document: FastAPI's, plus ``POST /events`` and ``POST /events/batch`` (served outside
FastAPI) and minus every 422."""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from eventctl.api.schemas import PROBLEM_MEDIA_TYPE, BatchIn, BatchResult, BulkIn, EventAccepted, EventIn, Problem
from eventctl.auth import required_scope

_REF = "#/components/schemas/{model}"


def _problem(description: str, **extra: Any) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model="Problem")}
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}}, **extra}


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
_RATE_LIMITED = {
    **_RETRY_AFTER,
    "RateLimit": {"description": "Remaining quota and seconds until it is full.", "schema": {"type": "string"}},
    "RateLimit-Policy": {"description": "The quota and its window.", "schema": {"type": "string"}},
}

CREATE_EVENT: dict[str, Any] = {
    "summary": "Accept an event",
    "description": "Answers 202 only after the event is committed to the store. "
    "The body is parsed as JSON whatever its Content-Type says.",
    "operationId": "create_event",
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="EventIn")}}},
    },
    "responses": {
        "202": {
            "description": "Stored durably; it will be processed in the background.",
            "headers": {"Location": {"description": "The event's URL.", "schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="EventAccepted")}}},
            "links": {
                "GetEvent": {"operationId": "get_event", "parameters": {"event_id": "$response.body#/event_id"}},
                "ReplayEvent": {"operationId": "replay_event", "parameters": {"event_id": "$response.body#/event_id"}},
            },
        },
        "400": _problem("The body is not JSON, not an object, or has no valid event_id (see errors)."),
        "409": _problem("An event with this id exists (see event_status and payload_matches)."),
        "413": _problem("The body is larger than MAX_BODY_BYTES."),
        "503": _problem("Shutting down or the store is unavailable; nothing was stored.", headers=_RETRY_AFTER),
    },
}

CREATE_BATCH: dict[str, Any] = {
    "summary": "Accept many events",
    "description": "Each item is validated as the body of POST /events is; the accepted items are committed "
    "together, and the 200 is sent only after that commit. A duplicate of a stored event, or of an earlier item "
    "of the batch (the first one wins), is a 409 item. Rate limiting counts every item as one request.",
    "operationId": "create_events_batch",
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="BatchIn")}}},
    },
    "responses": {
        "200": {
            "description": "One result per item, in request order; every accepted item is stored.",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="BatchResult")}}},
        },
        "400": _problem("The body is not JSON, not an object, or has no events array of 1 to MAX_BATCH_EVENTS."),
        "413": _problem("The body is larger than MAX_BODY_BYTES."),
        "503": _problem(
            "Shutting down, MAX_BACKLOG reached or the store is unavailable; nothing was stored.", headers=_RETRY_AFTER
        ),
    },
}


def build_openapi(app: FastAPI, *, secured: bool) -> dict[str, Any]:
    """Generate the document once and cache it on the app, as FastAPI does. ``secured``: API keys are
    configured, so the protected operations declare bearer auth and their 401 and 403 answers."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (EventIn, EventAccepted, BatchIn, BatchResult, Problem, BulkIn):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    # A copy: the document is changed below (access answers), and CREATE_EVENT serves every app of the process.
    document["paths"].setdefault("/events", {})["post"] = copy.deepcopy(CREATE_EVENT)
    document["paths"].setdefault("/events/batch", {})["post"] = copy.deepcopy(CREATE_BATCH)
    for path_item in document["paths"].values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = _problem("A path or query parameter is not valid.")
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _document_access(document, secured)
    app.openapi_schema = document
    return document


def _document_access(document: dict[str, Any], secured: bool) -> None:
    """A rate limit may answer 429 on every protected operation; with keys, 401 and 403 as well."""
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            if required_scope(method.upper(), path) is None:
                continue
            responses = operation["responses"]
            responses["429"] = _problem("Over RATE_LIMIT for this caller.", headers=_RATE_LIMITED)
            if secured:
                operation["security"] = [{"bearer": []}]
                responses["401"] = _problem("No API key, or an unknown one.")
                responses["403"] = _problem("The API key lacks the scope this call needs.")


def documented_methods(document: dict[str, Any], path: str) -> list[str]:
    """The methods the document gives the path template that ``path`` falls under, for a 405's ``Allow``.

    Templates with more literal text win, so ``/events/x/replay`` falls under ``/events/{event_id}/replay``
    even though an event id may itself contain a slash.
    """
    templates = sorted(document["paths"], key=lambda template: -len(re.sub(r"\{[^}]*\}", "", template)))
    for template in templates:
        pattern = "".join(
            "(.+)" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", template)
        )
        if re.fullmatch(pattern, path):
            return sorted(method.upper() for method in document["paths"][template])
    return []
