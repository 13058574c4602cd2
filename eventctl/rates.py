"""Per-second rates of this instance, for the console's chart: a ring of the last 15 minutes.

A supervised loop samples the counters the service already keeps (accepted, processed, failed) once a
second and stores the differences, so the hot path pays nothing. Each instance shows its own rates: with
several instances on one PostgreSQL store, each console charts the work of the instance that serves it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from eventctl.metrics import Metrics
from eventctl.supervision import Supervised, Supervisor

WINDOW_SECONDS = 15 * 60
SAMPLE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RateSample:
    """Events per second over the second that ended at ``at`` (wall clock, seconds since the epoch)."""

    at: float
    accepted: float
    processed: float
    failed: float


class RateRing:
    """The last ``WINDOW_SECONDS`` of samples, oldest first. Lives on the event loop: not thread-safe."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self.samples: deque[RateSample] = deque(maxlen=int(WINDOW_SECONDS / SAMPLE_SECONDS))
        self._last = (clock(), *self._totals())

    def _totals(self) -> tuple[float, float, float]:
        m = self._metrics
        return m.accepted.labels().value, m.processed.labels().value, m.failed.labels().value

    def sample(self) -> RateSample:
        """Record the rates since the previous sample (a late loop still divides by the time that passed)."""
        now = self._clock()
        totals = self._totals()
        then, *before = self._last
        elapsed = max(now - then, 1e-6)
        accepted, processed, failed = ((after - old) / elapsed for after, old in zip(totals, before, strict=True))
        sample = RateSample(time.time(), accepted, processed, failed)
        self.samples.append(sample)
        self._last = (now, *totals)
        return sample

    def start(self, supervisor: Supervisor) -> Supervised:
        """Sample once a second, under ``supervisor``, until stopped."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(SAMPLE_SECONDS)
                self.sample()

        return supervisor.start("rate_sampler", loop)


def quantile(bounds: tuple[float, ...], counts: list[int], q: float) -> float | None:
    """The ``q`` quantile of a histogram (per-bucket counts, the last one above every bound), interpolated
    within its bucket as Prometheus' ``histogram_quantile`` does; ``None`` without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if seen + count >= rank and count:
            if index == len(bounds):
                return bounds[-1]
            low = 0.0 if index == 0 else bounds[index - 1]
            return low + (bounds[index] - low) * (rank - seen) / count
        seen += count
    return bounds[-1]
