"""Rate limiting: a token bucket per caller (per API key, or per client address when the API is open).

``RATE_LIMIT`` is ``<count>/<s|m|h>`` with an optional ``,burst=<n>``: ``200/s,burst=400`` refills 200
tokens a second into a bucket of 400. A request takes one token; with none left it is refused (429) and
told when a token will be there. Headers follow the IETF httpapi RateLimit draft.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED_CALLERS = 10_000  # past this, buckets that are full again (idle callers) are forgotten
_SYNTAX = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*(?:,\s*burst\s*=\s*(\d+)\s*)?$")
_PER_SECOND = {"s": 1.0, "m": 1 / 60, "h": 1 / 3600}


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _SYNTAX.match(text)
        if not match:
            raise ValueError("expected <count>/<s|m|h> with an optional ,burst=<n>, e.g. 200/s,burst=400")
        count, unit, burst = float(match.group(1)), match.group(2), match.group(3)
        if count <= 0:
            raise ValueError("the count must be above 0")
        limit = cls(count * _PER_SECOND[unit], int(burst) if burst else max(1, math.ceil(count)))
        if limit.burst < 1:
            raise ValueError("the burst must be at least 1")
        return limit

    @property
    def window_seconds(self) -> int:
        """How long an empty bucket takes to fill: the draft's quota window."""
        return max(1, math.ceil(self.burst / self.per_second))

    @property
    def policy_header(self) -> bytes:
        return f'"default";q={self.burst};w={self.window_seconds}'.encode()


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after_seconds: int  # until the next token, when refused

    @property
    def header(self) -> bytes:
        return f'"default";r={self.remaining};t={self.reset_seconds}'.encode()


class TokenBuckets:
    """One bucket per caller identity. Not thread-safe: it lives on the event loop."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens, as of)

    def take(self, identity: str, count: int = 1) -> Decision:
        """Take ``count`` tokens (a batch takes one per item), all or none; refused, ``retry_after_seconds``
        says when that many will be there (when the bucket is full, if it can never hold them)."""
        now = self._clock()
        limit = self.limit
        tokens, as_of = self._buckets.get(identity, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - as_of) * limit.per_second)
        allowed = tokens >= count
        if allowed:
            tokens -= count
        if identity not in self._buckets and len(self._buckets) >= MAX_TRACKED_CALLERS:
            self._forget_idle(now)
        self._buckets[identity] = (tokens, now)
        reset = math.ceil((limit.burst - tokens) / limit.per_second)
        wanted = min(count, limit.burst)
        retry_after = 0 if allowed else max(1, math.ceil((wanted - tokens) / limit.per_second))
        return Decision(allowed, int(tokens), reset, retry_after)

    def _forget_idle(self, now: float) -> None:
        limit = self.limit
        self._buckets = {
            identity: (tokens, as_of)
            for identity, (tokens, as_of) in self._buckets.items()
            if tokens + (now - as_of) * limit.per_second < limit.burst
        }
