"""Handlers: what processing an event means.

A handler is an async callable taking a ``Delivery``. Returning is success; raising is a failure that will
be retried; raising ``eventctl.PermanentError`` fails the event at once. Delivery is at least once, so a
handler may see the same ``event_id`` again and should make repeats harmless.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from eventctl.errors import ConfigError
from eventctl.settings import Settings


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
    ``{"type": "eventctl.event", "timestamp": ..., "data": {"event_id", "attempt", "payload"}}``.
    """

    def __init__(self, url: str, secret: str, timeout_seconds: float, concurrency: int) -> None:
        self._url = url
        self._signer = Webhook(secret)
        # A connection for every worker slot: no handler waits for another's connection (and times out
        # on a wait that is not the receiver's fault).
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(timeout=timeout_seconds, limits=limits, follow_redirects=False)

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
        response = await self._http.post(self._url, content=body, headers=headers)
        if not response.is_success:
            raise WebhookError(f"HTTP {response.status_code} from {self._url}")

    async def aclose(self) -> None:
        await self._http.aclose()


class CallableHandler:
    """Wraps a user function, sync or async. A sync one runs in a thread so it cannot stall the server."""

    def __init__(self, function: Callable[[Delivery], Any]) -> None:
        self._function = function
        self._is_async = inspect.iscoroutinefunction(function)

    async def __call__(self, delivery: Delivery, /) -> None:
        if self._is_async:
            await self._function(delivery)
        else:
            await asyncio.to_thread(self._function, delivery)


def load_handler(settings: Settings) -> Handler:
    """The handler ``HANDLER`` names; a callable that cannot be imported stops the start."""
    if settings.handler == "sleep":
        return SleepHandler(settings.processing_delay_ms)
    if settings.handler == "webhook":
        assert settings.webhook_url is not None  # Settings checked both are set
        assert settings.webhook_secret is not None
        return WebhookHandler(
            settings.webhook_url, settings.webhook_secret, settings.webhook_timeout_s, settings.worker_concurrency
        )
    module_name, _, attribute = settings.handler.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"invalid HANDLER={settings.handler!r}: cannot import it ({exc})") from None
    if not callable(function):
        raise ConfigError(f"invalid HANDLER={settings.handler!r}: {attribute} is not callable")
    return CallableHandler(function)
