"""Handlers: what processing an event means.

A handler is an async callable taking a ``Delivery``. Returning is success; raising (whatever is raised) is
a failure that will be retried; raising ``eventctl.PermanentError`` fails the event at once. Delivery is at
least once, so a handler may see the same ``event_id`` again and should make repeats harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from eventctl.errors import ConfigError
from eventctl.settings import Settings
from eventctl.supervision import describe_error


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt at one event, as a handler sees it."""

    event_id: str  # also the idempotency key: the same for every attempt
    raw_payload: bytes
    attempt: int  # 1 for the first attempt

    @property
    def payload(self) -> Any:
        """The payload as a JSON value (parsed on each access; keep it if you need it twice)."""
        return orjson.loads(self.raw_payload)


class Handler(Protocol):
    async def __call__(self, delivery: Delivery, /) -> None:
        """Process one delivery; raise to fail this attempt."""


# The HTTP status a handler got for the attempt running in this task, for the attempt history. Each event's
# attempt runs in a task of its own, which has its own copy of the context: one attempt never sees another's.
_response_status: contextvars.ContextVar[int | None] = contextvars.ContextVar("eventctl_response_status")


def report_response_status(status: int) -> None:
    """Record the HTTP status the current attempt's receiver answered (the webhook handler calls this)."""
    _response_status.set(status)


def reported_response_status() -> int | None:
    """The status ``report_response_status`` recorded in this task's attempt, else ``None``."""
    return _response_status.get(None)


class SleepHandler:
    """Waits ``delay_ms``, then succeeds: the seed service's simulated work."""

    def __init__(self, delay_ms: int) -> None:
        self._delay = delay_ms / 1000

    async def __call__(self, delivery: Delivery, /) -> None:
        if self._delay:  # 0 is a no-op handler: no trip through the event loop
            await asyncio.sleep(self._delay)


class WebhookError(Exception):
    """The webhook receiver did not answer 2xx; the attempt is retried."""


class WebhookHandler:
    """POSTs each event to ``url``, signed per the Standard Webhooks spec; any 2xx is success.

    ``webhook-id`` is the event id (the same on every attempt, so receivers can deduplicate), and the body is
    ``{"type": "eventctl.event", "timestamp": ..., "data": {"event_id", "attempt", "payload"}}``. The whole
    attempt, from connecting to the last byte of the answer, takes at most ``timeout_seconds``. Every error
    names the URL.
    """

    def __init__(self, url: str, secret: str, timeout_seconds: float, concurrency: int) -> None:
        from eventctl import __version__  # here, not at the top: the package imports this module first

        self._url = url
        self._signer = Webhook(secret)
        self._timeout = timeout_seconds
        # A connection for every worker slot: no handler waits for another's connection (and times out
        # on a wait that is not the receiver's fault).
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(
            timeout=timeout_seconds,
            limits=limits,
            follow_redirects=False,
            headers={"user-agent": f"eventctl/{__version__}"},
        )

    async def __call__(self, delivery: Delivery, /) -> None:
        now = datetime.now(UTC)
        body = orjson.dumps(
            {
                "type": "eventctl.event",
                "timestamp": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "data": {
                    "event_id": delivery.event_id,
                    "attempt": delivery.attempt,
                    "payload": orjson.Fragment(delivery.raw_payload),
                },
            }
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(delivery.event_id, now, body.decode()),
        }
        try:
            # httpx's timeout bounds each network operation, so a receiver that trickles its answer a byte at
            # a time would never trip it: this one bounds the attempt.
            async with asyncio.timeout(self._timeout):
                response = await self._http.post(self._url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise WebhookError(f"no answer from {self._url} within {self._timeout:g}s (WEBHOOK_TIMEOUT_S)") from exc
        except httpx.HTTPError as exc:
            raise WebhookError(f"{describe_error(exc)} ({self._url})") from exc
        report_response_status(response.status_code)
        if not response.is_success:
            raise WebhookError(f"HTTP {response.status_code} from {self._url}")

    async def aclose(self) -> None:
        await self._http.aclose()


class CallableHandler:
    """Wraps a user callable, sync or async.

    Whatever the call returns that is awaitable is awaited, so an object with ``async def __call__``, an
    async function under a sync decorator, or a sync function that returns a coroutine all run their body.
    A sync callable runs in a daemon thread of its own, so it cannot stall the server; it cannot be
    interrupted either, so at shutdown it is abandoned (see ``_call_in_thread``).
    """

    def __init__(self, function: Callable[[Delivery], Any]) -> None:
        self._function = function
        self._on_loop = _is_async(function)

    async def __call__(self, delivery: Delivery, /) -> None:
        if self._on_loop:
            result = self._function(delivery)
        else:
            result = await _call_in_thread(self._function, delivery)
        if inspect.isawaitable(result):
            await result


def _is_async(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is meant to be called on the event loop: a coroutine function, one under a
    ``functools.wraps`` decorator, or an object whose ``__call__`` is one."""
    try:
        unwrapped = inspect.unwrap(function)
    except ValueError:  # a cycle of __wrapped__
        unwrapped = function
    candidates = (function, unwrapped, type(function).__call__)
    return any(inspect.iscoroutinefunction(candidate) for candidate in candidates)


async def _call_in_thread(function: Callable[[Delivery], Any], delivery: Delivery) -> Any:
    """``function(delivery)`` in a daemon thread of its own, in the caller's context: its result, or what it raised.

    Not ``asyncio.to_thread``: its pool threads are joined when the interpreter exits (a sync handler that
    outlives the shutdown would keep the process alive), and their completion calls into the loop even after
    it closed. Here a caller that gave up (cancelled) stops waiting at once, and a result that arrives after
    that, or after the loop closed, is dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            result, error = context.run(function, delivery), None
        except BaseException as exc:  # all of it is the attempt's outcome, SystemExit and KeyboardInterrupt too
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this any more
            loop.call_soon_threadsafe(_settle, future, result, error)

    threading.Thread(target=run, name=f"eventctl-handler-{delivery.event_id[:32]}", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # abandoned at shutdown
        if inspect.iscoroutine(result):
            result.close()  # never to be awaited: closed, so that no "never awaited" warning follows
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def load_handler(settings: Settings) -> Handler:
    """The handler ``HANDLER`` names. A callable that cannot be imported stops the start with one
    ``ConfigError`` naming HANDLER and what went wrong (no traceback)."""
    if settings.handler == "sleep":
        return SleepHandler(settings.processing_delay_ms)
    if settings.handler == "webhook":
        assert settings.webhook_url is not None  # Settings checked both are set
        assert settings.webhook_secret is not None
        return WebhookHandler(
            settings.webhook_url, settings.webhook_secret, settings.webhook_timeout_s, settings.worker_concurrency
        )
    return CallableHandler(_import_callable(settings.handler))


def _import_callable(spec: str) -> Callable[[Delivery], Any]:
    """``package.module:function``, imported as uvicorn imports its app: with the working directory
    importable (where ``python -m`` would look, though ``eventctl`` is a script installed elsewhere)."""
    module_name, _, attribute = spec.partition(":")
    working_directory = os.getcwd()
    if working_directory not in sys.path and "" not in sys.path:
        sys.path.insert(0, working_directory)
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # a module may fail at import in any way, exit() included
        raise ConfigError(f"invalid HANDLER={spec!r}: importing {module_name} raised {describe_error(exc)}") from None
    function = getattr(module, attribute, None)
    if function is None:
        raise ConfigError(f"invalid HANDLER={spec!r}: {module_name} has no attribute {attribute!r}")
    if not callable(function):
        raise ConfigError(f"invalid HANDLER={spec!r}: {module_name}.{attribute} is not callable")
    return cast(Callable[[Delivery], Any], function)
