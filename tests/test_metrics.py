"""The loop's own counters and histograms expose what the Prometheus client library would."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from eventctl.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_start_at_zero_and_count_by_label() -> None:
    metrics = Metrics()
    assert samples(metrics)[("eventctl_events_accepted_total", frozenset())] == 0
    metrics.accepted.inc()
    metrics.accepted.inc()
    metrics.requests.labels("POST", "/events", "202").inc()
    metrics.requests.labels("POST", "/events", "409").inc(3)
    found = samples(metrics)
    assert found[("eventctl_events_accepted_total", frozenset())] == 2
    labels = {"method": "POST", "route": "/events"}
    assert found[("eventctl_http_requests_total", frozenset({**labels, "status": "202"}.items()))] == 1
    assert found[("eventctl_http_requests_total", frozenset({**labels, "status": "409"}.items()))] == 3


def test_histogram_buckets_are_cumulative_and_include_their_upper_bound() -> None:
    metrics = Metrics()
    durations = metrics.processing_duration.labels("processed")
    for seconds in (0.001, 0.0011, 0.3, 60):
        durations.observe(seconds)
    found = samples(metrics)

    def bucket(le: str) -> float:
        key = frozenset({"outcome": "processed", "le": le}.items())
        return found[("eventctl_event_processing_duration_seconds_bucket", key)]

    assert bucket("0.0005") == 0
    assert bucket("0.001") == 1  # le: "less than or equal"
    assert bucket("0.0025") == 2
    assert bucket("0.5") == 3
    assert bucket("10.0") == 3
    assert bucket("+Inf") == 4
    outcome = frozenset({"outcome": "processed"}.items())
    assert found[("eventctl_event_processing_duration_seconds_count", outcome)] == 4
    assert abs(found[("eventctl_event_processing_duration_seconds_sum", outcome)] - 60.3021) < 1e-9
