"""``eventctl serve``: uvicorn running the app, with the drain the contract asks for on SIGTERM and SIGINT.

uvicorn on its own closes the listener at the first signal and re-raises the signal when it is done (so
the process dies by it). Here the signal instead starts the drain: ``/ready`` and new events answer 503
at once while the listener stays open, running handlers get ``SHUTDOWN_TIMEOUT_S``, unfinished claims go
back to ``accepted``, and only then does uvicorn close the listener and the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from types import FrameType

import uvicorn

from eventctl.api import EventctlApp, create_app
from eventctl.http_protocol import http_protocol_class
from eventctl.settings import Settings

log = logging.getLogger(__name__)

# Connections still open once the drain is over get this long to finish their requests.
CONNECTION_CLOSE_SECONDS = 5


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown signal drains the service before the listener closes."""

    def __init__(self, config: uvicorn.Config, app: EventctlApp) -> None:
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            log.info("eventctl listening on http://%s:%d", host, port)
            # Everything alive now (modules, the app, FastAPI's and pydantic's schemas) lives as long as the
            # process: moved out of the collector's sight, it is not walked again by every full collection,
            # which under load took about a tenth of the CPU.
            gc.collect()
            gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: flip the flags now, schedule the rest on the loop.
        if self._loop is None or not self.started:
            self.should_exit = True  # a signal during start: nothing to drain yet
            return
        self._app.service.begin_drain()
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        if self._drain_task is None:
            log.info("received %s: draining (ready and new events answer 503)", signal.Signals(sig).name)
            self._drain_task = asyncio.create_task(self._drain())
        else:
            log.info("received %s: already draining", signal.Signals(sig).name)

    async def _drain(self) -> None:
        try:
            await self._app.service.drain()
        finally:
            log.info("drain finished; closing the listener")
            self.should_exit = True


def run(settings: Settings) -> None:
    """Serve until a signal has drained the service. Returns normally (exit code 0) after a drain."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        http=http_protocol_class(),
        access_log=False,
        server_header=False,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=list(settings.forwarded_allow_ips or ()),
        timeout_graceful_shutdown=CONNECTION_CLOSE_SECONDS,
    )
    DrainingServer(config, app).run()
