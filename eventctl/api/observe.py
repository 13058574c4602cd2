"""Every request observed once: a request id (taken from ``X-Request-ID`` or made, and echoed back), one
access log line, and the request metrics. A plain ASGI middleware, outermost, so refusals count too."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventctl.logs import EVENT_ID, REQUEST_ID
from eventctl.metrics import Metrics
from eventctl.tracing import Tracing

access_log = logging.getLogger("eventctl.access")

_USABLE_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")  # visible ASCII: safe in headers and log lines
# Made ids are a random per-process prefix and a counter: unique across instances and restarts, and far
# cheaper than a UUID per request (os.urandom is a system call that gives up the GIL on the hot path).
_PROCESS_PREFIX = uuid.uuid4().hex[:12] + "-"
_REQUEST_NUMBERS = itertools.count(1)
_SERVED_OUTSIDE_FASTAPI = frozenset({"/events", "/events/batch"})
UNMATCHED_ROUTE = "<unmatched>"  # one label for every unknown path, so they cannot flood the metrics


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics, tracing: Tracing | None) -> None:
        self._app = app
        self._metrics = metrics
        self._tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = _request_id(scope)
        request_token = REQUEST_ID.set(request_id)
        event_token = EVENT_ID.set(None)
        started = time.perf_counter()
        status = 500  # if the app fails before it answers
        header = (b"x-request-id", request_id.encode())

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            if self._tracing is None:
                await self._app(scope, receive, send_observed)
            else:
                await self._traced(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            method, route = scope["method"], _route(scope)
            self._metrics.requests.labels(method, route, str(status)).inc()
            self._metrics.request_duration.labels(method, route).observe(elapsed)
            access_log.info("%s %s %d %.1fms", method, scope["path"], status, elapsed * 1000)
            EVENT_ID.reset(event_token)
            REQUEST_ID.reset(request_token)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._tracing is not None
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        with self._tracing.request_span(scope["method"], scope["path"], headers) as span:

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self._app(scope, receive, send_traced)
            span.set_attribute("http.route", _route(scope))
            event_id = EVENT_ID.get()
            if event_id is not None:
                span.set_attribute("eventctl.event_id", event_id)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _USABLE_REQUEST_ID.fullmatch(value):
            return bytes(value).decode()
    return f"{_PROCESS_PREFIX}{next(_REQUEST_NUMBERS):x}"


def _route(scope: Scope) -> str:
    """The route's template, e.g. ``/events/{event_id}``: a label that does not grow with the ids."""
    if scope["path"] in _SERVED_OUTSIDE_FASTAPI:  # no route object in the scope; the path is the template
        return scope["path"]  # type: ignore[no-any-return]
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path.replace(":path}", "}") if isinstance(path, str) else UNMATCHED_ROUTE
