"""The running service: its store, its worker, and whether it takes work.

Whoever runs the service calls ``start`` and ``close``: ``eventctl serve`` itself (after ``load_handler``,
before it binds its port), or the app's lifespan for an embedder. The server calls ``begin_drain`` the moment a
shutdown signal arrives, ``drain`` to let the worker finish, and ``stop_now`` on a second signal; it learns
through ``on_fatal`` that the service gave up. Routes read ``accepting`` and ``is_ready``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from eventctl.backlog import BacklogMonitor
from eventctl.errors import StoreUnavailable
from eventctl.handlers import Handler, load_handler
from eventctl.metrics import Metrics
from eventctl.rates import RateRing
from eventctl.retention import Pruner
from eventctl.settings import Settings
from eventctl.store import Store, open_store
from eventctl.supervision import Supervised, Supervisor
from eventctl.tracing import Tracing
from eventctl.worker import Backoff, Worker

log = logging.getLogger(__name__)


class Service:
    """One process's store and worker, from ``start`` to ``close``."""

    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing
        self._started_at = time.monotonic()
        self.metrics = Metrics()
        self._draining = False
        self._store: Store | None = None
        self._handler: Handler | None = None
        self._worker: Worker | None = None
        self._pruner: Pruner | None = None
        self._backlog: BacklogMonitor | None = None
        self.supervisor = Supervisor(self.metrics.background_restarts, self.fatal)
        self.rates = RateRing(self.metrics)  # this instance's per-second rates, for the console
        self._rate_sampler: Supervised | None = None
        self._started = False
        self._drain_started = False
        self.fatal_reason: str | None = None  # why the service gave up, once it has
        self._fatal_listeners: list[Callable[[str], None]] = []

    @property
    def store(self) -> Store:
        if self._store is None:
            raise StoreUnavailable("the store is not open yet")
        return self._store

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started_at

    @property
    def accepting(self) -> bool:
        """False once shutdown began: new events are refused with 503 from then on."""
        return not self._draining

    @property
    def backlog_full(self) -> bool:
        """True while more events wait or run than ``MAX_BACKLOG``: new events are shed with 503."""
        return self._backlog is not None and self._backlog.full

    @property
    def started(self) -> bool:
        """True from the moment ``start`` was called."""
        return self._started

    def load_handler(self) -> None:
        """Load the handler ``HANDLER`` names, if it is not loaded yet; a handler that cannot be loaded raises
        ``ConfigError`` naming ``HANDLER``. Nothing is started."""
        if self._handler is None:
            self._handler = load_handler(self.settings)

    async def start(self) -> None:
        """Load the handler (unless ``load_handler`` did), open the store, start the worker and the
        background tasks. Raises ``ConfigError`` for a setting that cannot work and ``StoreUnavailable`` for
        a store that cannot be reached; ``close`` then releases what was opened."""
        self._started = True
        settings = self.settings
        self.load_handler()
        assert self._handler is not None
        store = open_store(settings.database_url, attempt_history=settings.attempt_history == "on")
        await store.open()
        self._store = store
        self._worker = Worker(
            store,
            self._handler,
            concurrency=settings.worker_concurrency,
            max_attempts=settings.max_attempts,
            backoff=Backoff(settings.retry_backoff_ms / 1000, settings.retry_backoff_max_ms / 1000),
            lease_seconds=settings.lease_seconds,
            metrics=self.metrics,
            supervisor=self.supervisor,
            tracing=self.tracing,
        )
        self._worker.start()
        self._backlog = BacklogMonitor(store, settings.max_backlog, self.metrics, self.supervisor)
        self._backlog.start()
        self._rate_sampler = self.rates.start(self.supervisor)
        if not settings.keys:
            log.warning("API_KEYS is not set: the API is open to anyone who can reach it (allowed in ENV=dev only)")
        if settings.retention > 0:
            self._pruner = Pruner(store, settings.retention, self.supervisor)
            self._pruner.start()

    async def is_ready(self) -> bool:
        """Ready when not draining, the worker's claim loop runs (not down after a failure) and the store
        answers."""
        if self._draining or self._worker is None or not self._worker.running or self._store is None:
            return False
        try:
            await self._store.ping()
        except StoreUnavailable as exc:
            log.warning("not ready: %s", exc)
            return False
        return True

    def begin_drain(self) -> None:
        """Refuse new events and report not ready, at once. Called from a signal handler."""
        self._draining = True

    def on_fatal(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` when the service gives up (see ``fatal``). The server registers one that
        shuts the process down with a non-zero exit."""
        self._fatal_listeners.append(listener)

    def fatal(self, reason: str) -> None:
        """Give up: something the service needs cannot recover. Record ``reason`` in ``fatal_reason``, stop
        taking work (ready and new events answer 503 from now on), and tell the ``on_fatal`` listeners, whose
        job is to end the process with a non-zero exit so that its supervisor starts a fresh one. Only the
        first call counts."""
        if self.fatal_reason is not None:
            return
        self.fatal_reason = reason
        log.critical("the service cannot go on and must be restarted: %s", reason)
        self.begin_drain()
        for listener in self._fatal_listeners:
            listener(reason)

    def stop_now(self) -> None:
        """Cut the drain's grace short (a second signal): running handlers are cancelled and their events
        released at once, instead of after ``SHUTDOWN_TIMEOUT_S``."""
        if self._worker is not None:
            self._worker.stop_now()

    async def drain(self) -> None:
        """Let running handlers finish within ``SHUTDOWN_TIMEOUT_S``, then release what is left. Only the
        first call drains: once a drain began, later calls (``close``) return at once, even if that drain
        was given up on."""
        self.begin_drain()
        if self._drain_started:
            return
        self._drain_started = True
        if self._worker is not None:
            await self._worker.stop(self.settings.shutdown_timeout_s)

    async def close(self) -> None:
        """Drain (unless a drain began already), stop the background tasks, close the store and the
        handler."""
        await self.drain()
        for task in (self._pruner, self._backlog, self._rate_sampler):
            if task is not None:
                await task.stop()
        if self._store is not None:
            await self._store.close()
        close_handler = getattr(self._handler, "aclose", None)  # a handler may hold connections
        if close_handler is not None:
            await close_handler()
        if self.tracing is not None:
            self.tracing.shutdown()
