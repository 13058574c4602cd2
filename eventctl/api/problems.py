"""RFC 9457 problem details: every error body eventctl sends, built in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from eventctl.api.openapi import documented_methods
from eventctl.api.schemas import PROBLEM_MEDIA_TYPE
from eventctl.errors import StoreUnavailable
from eventctl.filters import FilterError

log = logging.getLogger(__name__)

PROBLEM_TYPE_PREFIX = "urn:eventctl:problem:"
RETRY_AFTER_SECONDS = 1  # what a 503 asks clients to wait: long enough to matter, short enough to recover


def problem_body(status: int, kind: str, detail: str, **extensions: Any) -> bytes:
    """The JSON body of a problem. ``kind`` names its ``type`` (``urn:eventctl:problem:<kind>``)."""
    return orjson.dumps(
        {
            "type": PROBLEM_TYPE_PREFIX + kind,
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
            **extensions,
        }
    )


async def send_response(
    send: Send, status: int, media_type: bytes, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a whole response from plain ASGI code (the ingest endpoint, access control)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def problem_response(
    status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None, **extensions: Any
) -> Response:
    return Response(
        problem_body(status, kind, detail, **extensions),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def invalid_filter_response(error: FilterError, pointer_prefix: str) -> Response:
    """400 naming each bad filter parameter; pointers are ``pointer_prefix`` + the parameter name."""
    return problem_response(400, "invalid-filter", "the filter is not valid", errors=error.errors(pointer_prefix))


def unavailable_response(detail: str) -> Response:
    return problem_response(503, "unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error FastAPI or Starlette would raise answer as a problem (and never as a 422)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = documented_methods(app.openapi(), request.url.path)
            if "GET" in methods:  # the app answers HEAD wherever it answers GET
                methods = sorted([*methods, "HEAD"])
            headers["Allow"] = ", ".join(methods)
        return problem_response(exc.status_code, kind, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"detail": error["msg"], "pointer": "#/" + "/".join(str(part) for part in error["loc"])}
            for error in exc.errors()
        ]
        return problem_response(400, "invalid-request", "the request is not valid", errors=errors)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc)
        return problem_response(500, "internal-error", "an unexpected error occurred")

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_: Request, exc: StoreUnavailable) -> Response:
        log.warning("answering 503, the store is unavailable: %s", exc)
        return unavailable_response("the store is unavailable; retry later")
