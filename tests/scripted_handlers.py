"""Handlers for tests, loaded by real servers through ``HANDLER=tests.scripted_handlers:<name>``.

They are stateless: each event's payload says how it behaves, so behaviour survives restarts and kills.
Payload keys: ``fail_times`` (fail the first n attempts), ``permanent`` (raise PermanentError),
``fail_unless_exists`` (fail while that file is missing), ``sleep_s`` (work this long first, on the first
``sleep_attempts`` attempts, default all), ``raise`` (raise one of ``RAISABLE`` by name), ``ignore_cancel``
(the async handlers swallow the first cancellation and sleep ``sleep_s`` again). With ``ATTEMPT_LOG`` set,
each attempt appends a JSON line ``{"event_id", "attempt", "time"}`` to that file.

The other shapes of callable a user may name as ``HANDLER`` (``async_callable``, ``decorated_async``,
``sync_returning_coroutine``) each run ``scripted`` in their own way.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from eventctl import Delivery, PermanentError


def _record(delivery: Delivery) -> None:
    log_path = os.environ.get("ATTEMPT_LOG")
    if log_path:
        entry = {"event_id": delivery.event_id, "attempt": delivery.attempt, "time": time.time()}
        with open(log_path, "ab") as log:
            log.write(orjson.dumps(entry) + b"\n")


def _script(delivery: Delivery) -> dict[str, Any]:
    payload = delivery.payload
    return payload if isinstance(payload, dict) else {}


def _sleep_seconds(delivery: Delivery) -> float:
    script = _script(delivery)
    if delivery.attempt > script.get("sleep_attempts", delivery.attempt):
        return 0.0
    return float(script.get("sleep_s", 0))


class Abort(BaseException):
    """Not an ``Exception``: what a handler that means to stop more than its attempt might raise."""


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this error cannot be described")


RAISABLE: dict[str, Callable[[], BaseException]] = {
    "BaseException": lambda: Abort("stop everything"),
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt,
    "CancelledError": asyncio.CancelledError,
    "UnprintableError": UnprintableError,
}


def _verdict(delivery: Delivery) -> None:
    script = _script(delivery)
    if "raise" in script:
        raise RAISABLE[script["raise"]]()
    if "fail_unless_exists" in script and not os.path.exists(script["fail_unless_exists"]):
        raise RuntimeError(f"{script['fail_unless_exists']} does not exist yet")
    if script.get("permanent"):
        raise PermanentError("this event can never succeed")
    if delivery.attempt <= script.get("fail_times", 0):
        raise RuntimeError(f"scripted failure on attempt {delivery.attempt}")


async def scripted(delivery: Delivery) -> None:
    _record(delivery)
    try:
        await asyncio.sleep(_sleep_seconds(delivery))
    except asyncio.CancelledError:
        if not _script(delivery).get("ignore_cancel"):
            raise
        await asyncio.sleep(_sleep_seconds(delivery))
    _verdict(delivery)


def scripted_sync(delivery: Delivery) -> None:
    """The same, as a plain function: the server runs it in a thread."""
    _record(delivery)
    time.sleep(_sleep_seconds(delivery))
    _verdict(delivery)


class AsyncCallable:
    """An object whose ``__call__`` is a coroutine function."""

    async def __call__(self, delivery: Delivery) -> None:
        await scripted(delivery)


async_callable = AsyncCallable()


def _logged(function: Callable[[Delivery], Coroutine[Any, Any, None]]) -> Callable[[Delivery], Any]:
    """A decorator as users write them: a sync wrapper that returns what the async function returns."""

    @functools.wraps(function)
    def wrapper(delivery: Delivery) -> Any:
        return function(delivery)

    return wrapper


@_logged
async def decorated_async(delivery: Delivery) -> None:
    await scripted(delivery)


def sync_returning_coroutine(delivery: Delivery) -> Coroutine[Any, Any, None]:
    """A plain function whose result is a coroutine: only awaiting it runs the work."""
    return scripted(delivery)


async def ignores_cancellation(delivery: Delivery) -> None:
    """Never ends by itself and swallows every cancellation: what a buggy handler does to a shutdown."""
    _record(delivery)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


def warns(delivery: Delivery) -> None:
    """Emits a Python warning, as libraries do, then succeeds."""
    warnings.warn(f"a warning while handling {delivery.event_id}", UserWarning, stacklevel=1)
