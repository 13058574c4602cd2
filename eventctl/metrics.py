"""Prometheus metrics, one registry per service (so tests and embedders get isolated numbers).

Two kinds, which matters with several instances on PostgreSQL:
- counters and histograms (``*_total``, ``*_seconds``) count what *this process* did: sum them across
  instances;
- queue gauges (``eventctl_queue_events``, ``eventctl_queue_oldest_waiting_age_seconds``) describe the
  *shared store*, so every instance reports the same numbers: take ``max`` across instances, never ``sum``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from eventctl.domain import QUEUE_STATUSES, Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Everything the service counts. Names follow Prometheus conventions (checked by promtool in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "eventctl_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "eventctl_http_request_duration_seconds",
            "Time from request to the end of the response.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.accepted = Counter("eventctl_events_accepted", "Events stored and answered 202.", registry=r)
        self.duplicates = Counter("eventctl_events_duplicate", "Events refused with 409: id taken.", registry=r)
        self.processed = Counter("eventctl_events_processed", "Events whose handler succeeded.", registry=r)
        self.retried = Counter("eventctl_events_retried", "Failed attempts that will be retried.", registry=r)
        self.failed = Counter("eventctl_events_failed", "Events failed for good (dead-lettered).", registry=r)
        self.processing_duration = Histogram(
            "eventctl_event_processing_duration_seconds",
            "Time the handler took for one attempt, by outcome.",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "eventctl_queue_events", "Events in the store by status (shared by all instances).", ["status"], registry=r
        )
        self.oldest_waiting_age = Gauge(
            "eventctl_queue_oldest_waiting_age_seconds",
            "How long the oldest due, unclaimed event has waited (shared by all instances).",
            registry=r,
        )
        for status in QUEUE_STATUSES:
            self.queue.labels(status=status.value)

    def observe_queue(self, depths: dict[Status, int], oldest_waiting_age: float) -> None:
        for status, count in depths.items():
            self.queue.labels(status=status.value).set(count)
        self.oldest_waiting_age.set(oldest_waiting_age)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
