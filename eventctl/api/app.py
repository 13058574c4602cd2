"""The ASGI application: FastAPI for the API's routes and docs, the lean ingest endpoint for
``POST /events``, and a lifespan that starts and stops the service for embedders (``eventctl serve`` starts
it itself, before it serves)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventctl import __version__
from eventctl.api.access import AccessControl
from eventctl.api.batch import BatchEndpoint
from eventctl.api.docs import install_docs
from eventctl.api.ingest import IngestEndpoint
from eventctl.api.observe import RequestObserver
from eventctl.api.openapi import build_openapi
from eventctl.api.problems import install_problem_handlers
from eventctl.api.routes import router
from eventctl.console.app import install_console
from eventctl.errors import EventctlError
from eventctl.service import Service
from eventctl.settings import Settings
from eventctl.tracing import load_tracing

log = logging.getLogger(__name__)


class EventctlApp:
    """The service's ASGI application.

    Every HTTP request is observed (request id, access log, metrics), passes access control (when keys
    or a rate limit are configured), then ``POST /events`` and ``POST /events/batch`` go straight to their
    endpoints and everything else to FastAPI. FastAPI's router knows those routes too (so that 405 answers
    list POST in ``Allow``); taking them here first only skips FastAPI's per-request machinery on the hottest
    paths.
    """

    def __init__(self, service: Service) -> None:
        settings = service.settings
        self.service = service
        self.ingest = IngestEndpoint(service)
        self.batch = BatchEndpoint(service)
        self.api = FastAPI(
            title="eventctl",
            version=__version__,
            description="Durable event ingestion: accept, store, process with retries, dead-letter, replay.",
            docs_url=None,  # install_docs serves /docs from the package, not from a CDN
            redoc_url=None,  # ReDoc has no offline package; /docs is the one documentation page
        )
        self.api.state.service = service
        self.api.include_router(router)
        install_docs(self.api)
        install_console(self.api, service)
        self.api.router.routes.append(Route("/events", self.ingest, methods=["POST"], include_in_schema=False))
        self.api.router.routes.append(Route("/events/batch", self.batch, methods=["POST"], include_in_schema=False))
        install_problem_handlers(self.api)
        self.api.openapi = lambda: build_openapi(self.api, secured=bool(settings.keys))  # type: ignore[method-assign]
        guarded: ASGIApp = self._dispatch
        if settings.keys or settings.rate_limit is not None:
            guarded = AccessControl(self._dispatch, settings.keys or None, settings.rate_limit)
        self._http = RequestObserver(guarded, service.metrics, service.tracing)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self._http(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/events" and scope["method"] == "POST":
            await self.ingest(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/events/batch" and scope["method"] == "POST":
            await self.batch(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "HEAD":
            await self._head(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HEAD on any path is GET without the body (RFC 9110 §9.3.2): the same status and headers,
        Content-Length included. The routes see a GET; the server and the request observer keep seeing
        HEAD, and the observer learns the route that answered (for its metrics)."""
        as_get = {**scope, "method": "GET"}
        try:
            await self.api(as_get, receive, _without_body(send))
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Start the service before the first request; stop it after the last. A start that fails for a
        reason the user can fix is reported as one line, without a traceback. A service started by someone
        else (``eventctl serve``) is left to them to stop."""
        await receive()  # lifespan.startup
        if self.service.started:
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        try:
            await self.service.start()
        except (EventctlError, OSError) as exc:
            await self.service.close()
            await send({"type": "lifespan.startup.failed", "message": f"cannot start: {exc}"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self.service.close()
        await send({"type": "lifespan.shutdown.complete"})


def _without_body(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b""}
        await send(message)

    return send_head


def create_app(settings: Settings) -> EventctlApp:
    """A complete, isolated application for ``settings`` (and the standard ``OTEL_*`` variables, for
    tracing); nothing starts until its lifespan does."""
    return EventctlApp(Service(settings, load_tracing()))
