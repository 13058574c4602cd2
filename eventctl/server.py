"""``eventctl serve``: the process from its start to its exit.

The start creates nothing before it knows that it can serve: the handler is loaded, the listening sockets are
bound, and only then is the store opened and the worker started. uvicorn then serves on those sockets, with
its lifespan off: the service is started and closed here, not by the app.

The first SIGTERM or SIGINT starts the drain: ``/ready`` and new events answer 503 at once while the listener
stays open, running handlers get ``SHUTDOWN_TIMEOUT_S``, unfinished claims go back to ``accepted``; then the
listener closes and ``run`` returns. A second signal stops at once: the rest of the grace is cut, running
handlers are cancelled and their claims released, and open connections are not waited for. Every wait on the
way out is bounded, so that the process ends even when a handler ignores its cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from eventctl.api import EventctlApp, create_app
from eventctl.http_protocol import http_protocol_class
from eventctl.listen import listening_sockets
from eventctl.runner import BoundedRunner
from eventctl.settings import Settings
from eventctl.signals import StopSignals

log = logging.getLogger(__name__)

# Connections still open once the drain is over get this long to finish their requests.
CONNECTION_CLOSE_SECONDS = 5
# Past SHUTDOWN_TIMEOUT_S, how long the drain may still take (cancelled handlers ending, claims being
# released) before it is given up on; a given-up claim goes back at the next start (SQLite) or with its lease.
DRAIN_OVERRUN_SECONDS = 3.0
# After a second signal, how long the drain still gets to release the claims of the handlers it cancels.
STOP_NOW_SECONDS = 2.0
# How long closing the store (writing the last outcomes) may take on the way out.
CLOSE_SECONDS = 2.0
BACKLOG = 2048  # uvicorn's default: connections the kernel queues before they are accepted


@dataclass(frozen=True, slots=True)
class Stopped:
    """How ``run`` ended."""

    fatal_reason: str | None  # why the service gave up on its own; None after a drain, or a stop before the start
    left_behind: bool  # a task or thread would not stop: end the process with ``runner.exit_at_once``


class DrainingServer(uvicorn.Server):
    """uvicorn serving the app on sockets bound beforehand, around a service started and closed here."""

    def __init__(self, config: uvicorn.Config, app: EventctlApp) -> None:
        super().__init__(config)
        self._service = app.service
        self._serving = False  # the service started and uvicorn took over the sockets
        self._stopping = False  # a stop signal arrived, or the service gave up
        self._drain_task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference
        self._stop_now = asyncio.Event()
        self.fatal_reason: str | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # eventctl.signals owns SIGTERM and SIGINT; uvicorn's own handling would re-raise them at the end, so
        # that the process died by the signal instead of exiting 0.
        yield

    async def run_service(self, sockets: list[socket.socket], signals: StopSignals) -> str | None:
        """Start the service, serve until a drain is over, close the service; the reason the service gave
        up on its own, if it did."""
        loop = asyncio.get_running_loop()

        # The callbacks run in a context of their own, not in that of the request the signal interrupted
        # (whose request id would otherwise be on every line of the drain).
        def on_signal(sig: signal.Signals) -> None:
            loop.call_soon_threadsafe(self._on_signal, sig, context=contextvars.Context())

        def on_fatal(reason: str) -> None:
            loop.call_soon_threadsafe(self._on_fatal, reason, context=contextvars.Context())

        signals.listen(on_signal)
        self._service.on_fatal(on_fatal)
        try:
            await self._service.start()
            if not self._stopping:
                self._serving = True
                await self.serve(sockets)
        finally:
            if not await _within(self._service.close(), CLOSE_SECONDS):
                log.warning("closing the store took over %gs; exiting without waiting for it", CLOSE_SECONDS)
        return self.fatal_reason

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            log.info("eventctl listening on %s", _url(self.servers[0].sockets[0].getsockname()))
            # Everything alive now (modules, the app, FastAPI's and pydantic's schemas) lives as long as the
            # process: moved out of the collector's sight, it is not walked again by every full collection,
            # which under load took about a tenth of the CPU.
            gc.collect()
            gc.freeze()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            log.info("received %s again: stopping now (running handlers are cancelled and released)", sig.name)
            self._stop_now.set()
            self._service.stop_now()
            self.force_exit = True  # open connections are not waited for either
        elif self._serving:
            log.info("received %s: draining (ready and new events answer 503)", sig.name)
            self._begin_drain()
        else:
            log.info("received %s during the start: stopping without serving", sig.name)
            self._stopping = True

    def _on_fatal(self, reason: str) -> None:
        self.fatal_reason = reason
        if self._serving and not self._stopping:
            log.info("draining, then exiting with an error")
            self._begin_drain()
        self._stopping = True

    def _begin_drain(self) -> None:
        self._stopping = True
        self._service.begin_drain()
        self._drain_task = asyncio.create_task(self._drain(), name="eventctl-drain")

    async def _drain(self) -> None:
        limit = self._service.settings.shutdown_timeout_s + DRAIN_OVERRUN_SECONDS
        finished = False
        try:
            finished = await _within(self._service.drain(), limit, self._stop_now)
        finally:
            if finished:
                log.info("drain finished; closing the listener")
            else:
                log.warning(
                    "the drain did not end in time; closing the listener. Claims it did not release go back at "
                    "the next start (SQLite) or when their lease runs out"
                )
            self.should_exit = True


async def _within(work: Awaitable[None], seconds: float, stop_now: asyncio.Event | None = None) -> bool:
    """Wait for ``work`` up to ``seconds``, or up to ``STOP_NOW_SECONDS`` once ``stop_now`` is set; whether it
    ended. Work that does not end is left running (the runner gives it up at exit); work that fails is logged."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    waiting: set[asyncio.Future[Any]] = {task}
    hurried = asyncio.ensure_future(stop_now.wait()) if stop_now is not None else None
    if hurried is not None:
        waiting.add(hurried)
    try:
        await asyncio.wait(waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and hurried is not None and hurried.done():
            await asyncio.wait({task}, timeout=min(STOP_NOW_SECONDS, max(0.0, deadline - loop.time())))
    finally:
        if hurried is not None:
            hurried.cancel()
    if not task.done():
        return False
    if not task.cancelled() and task.exception() is not None:
        log.error("stopping failed", exc_info=task.exception())
    return True


def _url(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_config(app: EventctlApp, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: eventctl's HTTP protocol, no lifespan (the service is started
    here), eventctl's logging, forwarded headers believed only from ``FORWARDED_ALLOW_IPS``."""
    return uvicorn.Config(
        app,
        http=http_protocol_class(),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=list(settings.forwarded_allow_ips or ()),
        backlog=BACKLOG,
        timeout_graceful_shutdown=CONNECTION_CLOSE_SECONDS,
    )


def run(settings: Settings, signals: StopSignals) -> Stopped:
    """Serve until a signal has drained the service, or the service gave up.

    Raises ``ConfigError`` for a setting that cannot work (a handler that will not import, a busy port, a
    database that refuses us) and ``StoreUnavailable`` for a store that cannot be reached, before anything
    is served.
    """
    app = create_app(settings)
    app.service.load_handler()
    sockets = listening_sockets(settings.host, settings.port, BACKLOG)
    try:
        config = uvicorn_config(app, settings)
        runner = BoundedRunner(config.get_loop_factory())
        fatal_reason = runner.run(DrainingServer(config, app).run_service(sockets, signals))
    finally:
        signals.listen(_ignore)  # the loop is gone: a late signal changes nothing, the process is exiting
        for sock in sockets:
            sock.close()
    return Stopped(fatal_reason, runner.left_behind)


def _ignore(sig: signal.Signals) -> None:
    log.info("received %s: already stopping", sig.name)
