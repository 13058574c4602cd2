"""Prometheus metrics, one registry per service (so tests and embedders get isolated numbers).

Two kinds, which matters with several instances on PostgreSQL:
- counters and histograms (``*_total``, ``*_seconds``) count what *this process* did: sum them across
  instances;
- queue gauges (``eventctl_queue_events``, ``eventctl_queue_oldest_waiting_age_seconds``,
  ``eventctl_scheduled_events``, ``eventctl_blocked_keys``) describe the *shared store*, so every instance
  reports the same numbers: take ``max`` across instances, never ``sum``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from eventctl.domain import QUEUE_STATUSES, QueueStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Count:
    """One counter value (a label combination's, or an unlabelled counter's)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Distribution:
    """One histogram's observations: a count per bucket, and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one +Inf; made cumulative when collected
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.sum += amount


Child = TypeVar("Child", Count, Distribution)


class _LoopMetric(Generic[Child]):
    """A metric updated only from the event loop's thread, so a plain addition suffices.

    prometheus_client's own metrics take a lock on every change, which is right for threads but was measured
    at about 15% of the drain rate (two changes per event). These are read by the registry at scrape time,
    through ``collect``.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], new_child: Callable[[], Child]
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._new_child: Callable[[], Child] = new_child
        self._children: dict[tuple[str, ...], Child] = {}

    def labels(self, *values: str) -> Child:
        """The child for these label values, in the order of ``labelnames``."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._new_child()
        return child


class LoopCounter(_LoopMetric[Count]):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames, Count)
        if not self.labelnames:
            self._unlabelled = self.labels()

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled.value += amount

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self._children.items()):
            family.add_metric(key, child.value)
        return family


class LoopHistogram(_LoopMetric[Distribution]):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self._bounds = tuple(buckets)
        super().__init__(name, documentation, labelnames, lambda: Distribution(self._bounds))

    @property
    def bounds(self) -> tuple[float, ...]:
        return self._bounds

    def combined(self) -> list[int]:
        """Per-bucket counts summed over every label combination (the last bucket is +Inf)."""
        totals = [0] * (len(self._bounds) + 1)
        for child in list(self._children.values()):
            totals = [a + b for a, b in zip(totals, child.counts, strict=True)]
        return totals

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, self._bounds), "+Inf"], child.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(key, buckets, child.sum)
        return family


class _LoopMetrics:
    """Hands the loop's counters and histograms to the registry when it is scraped."""

    def __init__(self, metrics: Sequence[LoopCounter | LoopHistogram]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.collect()


class Metrics:
    """Everything the service counts. Names follow Prometheus conventions (checked by promtool in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = LoopCounter("eventctl_http_requests", "HTTP requests answered.", ["method", "route", "status"])
        self.request_duration = LoopHistogram(
            "eventctl_http_request_duration_seconds",
            "Time from request to the end of the response.",
            ["method", "route"],
            _LATENCY_BUCKETS,
        )
        self.accepted = LoopCounter("eventctl_events_accepted", "Events stored and answered 202.")
        self.duplicates = LoopCounter("eventctl_events_duplicate", "Events refused with 409: id taken.")
        self.processed = LoopCounter("eventctl_events_processed", "Events whose handler succeeded.")
        self.retried = LoopCounter("eventctl_events_retried", "Failed attempts that will be retried.")
        self.failed = LoopCounter("eventctl_events_failed", "Events failed for good (dead-lettered).")
        self.processing_duration = LoopHistogram(
            "eventctl_event_processing_duration_seconds",
            "Time the handler took for one attempt, by outcome.",
            ["outcome"],
            _LATENCY_BUCKETS,
        )
        self.background_restarts = LoopCounter(
            "eventctl_background_restarts",
            "Restarts of a background loop after an unexpected error, by loop (see eventctl.supervision).",
            ["task"],
        )
        r.register(
            _LoopMetrics(
                [
                    self.requests,
                    self.request_duration,
                    self.accepted,
                    self.duplicates,
                    self.processed,
                    self.retried,
                    self.failed,
                    self.processing_duration,
                    self.background_restarts,
                ]
            )
        )
        self.queue = Gauge(
            "eventctl_queue_events", "Events in the store by status (shared by all instances).", ["status"], registry=r
        )
        self.oldest_waiting_age = Gauge(
            "eventctl_queue_oldest_waiting_age_seconds",
            "How long the oldest due, unclaimed event has waited (shared by all instances).",
            registry=r,
        )
        self.scheduled = Gauge(
            "eventctl_scheduled_events",
            "Accepted events whose deliver_at is still ahead (shared by all instances).",
            registry=r,
        )
        self.blocked_keys = Gauge(
            "eventctl_blocked_keys",
            "Ordering keys held by a failed event until it is replayed or deleted (shared by all instances).",
            registry=r,
        )
        for status in QUEUE_STATUSES:
            self.queue.labels(status=status.value)

    def observe_queue(self, stats: QueueStats) -> None:
        for status, count in stats.depths.items():
            self.queue.labels(status=status.value).set(count)
        self.oldest_waiting_age.set(stats.oldest_waiting_age)
        self.scheduled.set(stats.scheduled)
        self.blocked_keys.set(stats.blocked_keys)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
