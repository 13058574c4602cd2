"""Failed console logins, limited per client address: guessing keys through the login form stays slow."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES = 5  # per address within the window; the next attempt is refused until the oldest ages out
WINDOW_SECONDS = 60.0
MAX_TRACKED_ADDRESSES = 10_000  # past this, addresses without a recent failure are forgotten


class FailedLogins:
    """Counts failures per address over a sliding window. Lives on the event loop: not thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again; 0 when it may now."""
        failures = self._recent(address)
        if len(failures) < MAX_FAILURES:
            return 0
        return max(1, math.ceil(failures[0] + WINDOW_SECONDS - self._clock()))

    def failed(self, address: str) -> None:
        if address not in self._failures and len(self._failures) >= MAX_TRACKED_ADDRESSES:
            self._failures = {a: f for a, f in self._failures.items() if self._recent(a)}
        self._failures.setdefault(address, deque(maxlen=MAX_FAILURES)).append(self._clock())

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= self._clock() - WINDOW_SECONDS:
            failures.popleft()
        return failures
