"""The in-process test layer: the real app and the real worker, without a process of their own.

Logic that needs no process (the HTTP contract, validation, access control, the worker's rules) is tested
here, which is much faster than starting ``eventctl serve``: the app runs its lifespan (the service starts,
with a real store and worker) and requests travel through ``httpx.ASGITransport``; or a real ``Worker``
runs on a real store with a handler the test scripts. Signals, kills, restarts and durability stay with the
real processes of ``conftest.ServerFactory``.

Tests of this layer are ``async`` (``pytest.mark.anyio``); their waits poll with ``wait_until`` below, which
yields to the event loop, so the app's worker runs while the test waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from eventctl.api import EventctlApp, create_app
from eventctl.handlers import Delivery, Handler
from eventctl.logs import configure_logging
from eventctl.metrics import Metrics
from eventctl.settings import Settings
from eventctl.store import Store, open_store
from eventctl.supervision import Supervisor
from eventctl.worker import Backoff, Worker
from tests.scripted_handlers import scripted

BASE_URL = "http://eventctl.test"
# What the subprocess servers of the tests run with, unless a test says otherwise: no simulated work.
TEST_DEFAULTS: dict[str, Any] = {"database_url": "memory://", "processing_delay_ms": 0}
POLL_SECONDS = 0.01
# Retries within milliseconds, so that tests of retrying need not wait.
QUICK_BACKOFF = Backoff(0.01, 0.05)


def test_settings(**overrides: Any) -> Settings:
    """``Settings`` with the test defaults and ``overrides`` (by field name), checked as ``Settings.load``
    would check them."""
    settings = dataclasses.replace(Settings(), **{**TEST_DEFAULTS, **overrides})
    settings._check_consistency()
    return settings


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper named test_*, not a test for pytest


def settings_from_env(**environ: str | int | float) -> Settings:
    """``Settings`` parsed by ``Settings.load`` from environment variables, as ``eventctl serve`` reads them,
    over the test defaults."""
    defaults = {"DATABASE_URL": "memory://", "PROCESSING_DELAY_MS": "0"}
    return Settings.load({**defaults, **{name: str(value) for name, value in environ.items()}})


@dataclasses.dataclass
class RunningApp:
    """An app whose service is started, and a client that calls it in process."""

    app: EventctlApp
    client: httpx.AsyncClient

    @property
    def store(self) -> Store:
        return self.app.service.store


@contextlib.asynccontextmanager
async def running_app(settings: Settings | None = None, **overrides: Any) -> AsyncIterator[RunningApp]:
    """Start an app (lifespan and all) for ``settings``, or for ``test_settings(**overrides)``; stop it after."""
    app = create_app(settings if settings is not None else test_settings(**overrides))
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield RunningApp(app, client)


# What ``configure_logging`` turns off in every record, module-wide; pytest's own log reports want it back.
_RECORD_OPTIONS = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@contextlib.contextmanager
def server_logging(settings: Settings) -> Iterator[None]:
    """The server's own logging setup (``configure_logging``: its handler on stderr, its formatter, its
    level) for the duration, so that a test reads the lines ``eventctl serve`` would write (with pytest's
    ``capsys``); the previous setup is put back after."""
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    record_options = {name: getattr(logging, name) for name in _RECORD_OPTIONS}
    configure_logging(settings)
    try:
        yield
    finally:
        for name, value in record_options.items():
            setattr(logging, name, value)
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One handler run, as ``RecordingHandler`` saw it (monotonic times)."""

    event_id: str
    attempt: int
    started: float
    finished: float


class RecordingHandler:
    """``tests.scripted_handlers.scripted`` (each event's payload says how its attempts behave) that records
    every attempt, in the order they finished, and the most that ever ran at once."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, delivery: Delivery, /) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        started = time.monotonic()
        try:
            await scripted(delivery)
        finally:
            self.running -= 1
            self.attempts.append(Attempt(delivery.event_id, delivery.attempt, started, time.monotonic()))

    def of(self, event_id: str) -> list[Attempt]:
        return [attempt for attempt in self.attempts if attempt.event_id == event_id]


@dataclasses.dataclass
class RunningWorker:
    """A started ``Worker``, the open store it works on, its metrics, and the reasons its supervisor gave up
    (none, unless a test makes a loop fail for good)."""

    worker: Worker
    store: Store
    metrics: Metrics
    fatal_reasons: list[str]


@contextlib.asynccontextmanager
async def running_worker(
    handler: Handler,
    *,
    store_url: str = "memory://",
    concurrency: int = 8,
    max_attempts: int = 5,
    backoff: Backoff = QUICK_BACKOFF,
    lease_seconds: float = 30.0,
    grace_seconds: float = 0.0,
) -> AsyncIterator[RunningWorker]:
    """The real worker on a real store (``memory://`` unless told), running ``handler``; stopped after, with
    ``grace_seconds`` for the handlers still running, and the store closed."""
    store = open_store(store_url)
    await store.open()
    metrics = Metrics()
    fatal_reasons: list[str] = []
    worker = Worker(
        store,
        handler,
        concurrency=concurrency,
        max_attempts=max_attempts,
        backoff=backoff,
        lease_seconds=lease_seconds,
        metrics=metrics,
        supervisor=Supervisor(metrics.background_restarts, fatal_reasons.append),
    )
    worker.start()
    try:
        yield RunningWorker(worker, store, metrics, fatal_reasons)
    finally:
        await worker.stop(grace_seconds)
        await store.close()


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 30, message: str = "condition"
) -> None:
    """Poll ``condition`` (plain or awaitable) until it holds, yielding to the event loop in between;
    generous timeouts keep this from flaking on a busy machine."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {message}")
        await asyncio.sleep(POLL_SECONDS)


async def event_status(client: httpx.AsyncClient, event_id: str) -> str | None:
    """The event's status as the API shows it, or None when it is unknown."""
    response = await client.get(f"/events/{event_id}")
    return str(response.json()["status"]) if response.status_code == 200 else None


async def wait_for_status(
    client: httpx.AsyncClient, event_id: str, *statuses: str, within: float = 30
) -> dict[str, Any]:
    """Poll the API until the event has one of ``statuses``; return it as the API shows it."""

    async def reached() -> bool:
        return await event_status(client, event_id) in statuses

    await wait_until(reached, within, f"{event_id} to be {'/'.join(statuses)}")
    event: dict[str, Any] = (await client.get(f"/events/{event_id}")).json()
    return event
