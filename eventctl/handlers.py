"""Handlers: what processing an event means.

A handler is an async callable taking a ``Delivery``. Returning is success; raising is a failure that will
be retried; raising ``eventctl.PermanentError`` fails the event at once. Delivery is at least once, so a
handler may see the same ``event_id`` again and should make repeats harmless.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import orjson


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
        await asyncio.sleep(self._delay)
