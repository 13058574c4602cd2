"""``eventctl top``: a live view of a service, computed from two readings of its ``/metrics``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from eventctl.client import Client
from eventctl.domain import QUEUE_STATUSES

_COUNTERS = {
    "accepted": "eventctl_events_accepted",
    "duplicate": "eventctl_events_duplicate",
    "processed": "eventctl_events_processed",
    "retried": "eventctl_events_retried",
    "failed": "eventctl_events_failed",
}


@dataclass(frozen=True, slots=True)
class Reading:
    at: float
    counters: dict[str, float]
    server_errors: float  # responses with a 5xx status
    requests: float
    queue: dict[str, float]
    oldest_waiting_age: float


def read(client: Client) -> Reading:
    """One scrape of ``/metrics``, boiled down to what ``top`` shows."""
    text = client.metrics()
    counters = dict.fromkeys(_COUNTERS, 0.0)
    queue = {status.value: 0.0 for status in QUEUE_STATUSES}
    server_errors = requests = oldest = 0.0
    names = {name: key for key, name in _COUNTERS.items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.name[: -len("_total")] in names:
                counters[names[sample.name[: -len("_total")]]] = sample.value
            elif sample.name == "eventctl_http_requests_total":
                requests += sample.value
                server_errors += sample.value if sample.labels["status"].startswith("5") else 0.0
            elif sample.name == "eventctl_queue_events":
                queue[sample.labels["status"]] = sample.value
            elif sample.name == "eventctl_queue_oldest_waiting_age_seconds":
                oldest = sample.value
    return Reading(time.monotonic(), counters, server_errors, requests, queue, oldest)


def frame(before: Reading, after: Reading) -> dict[str, Any]:
    """Rates per second between two readings, and the latest queue and totals (counts are integers)."""
    seconds = max(after.at - before.at, 1e-9)

    def rate(now: float, then: float) -> float:
        return round(max(now - then, 0.0) / seconds, 2)

    processing_errors = after.counters["retried"] + after.counters["failed"]
    earlier_errors = before.counters["retried"] + before.counters["failed"]
    return {
        "rates_per_second": {key: rate(after.counters[key], before.counters[key]) for key in _COUNTERS}
        | {"processing_errors": rate(processing_errors, earlier_errors)},
        "http_5xx_ratio": round(
            (after.server_errors - before.server_errors) / max(after.requests - before.requests, 1.0), 4
        ),
        "queue": {status: int(count) for status, count in after.queue.items()},
        "oldest_waiting_age_seconds": round(after.oldest_waiting_age, 3),
        "totals": {key: int(count) for key, count in after.counters.items()},
    }


def table(view: dict[str, Any], url: str) -> Table:
    grid = Table(title=f"eventctl top — {url}", show_header=True, expand=False)
    grid.add_column("what")
    grid.add_column("now", justify="right")
    grid.add_column("total", justify="right")
    for key, value in view["rates_per_second"].items():
        total = view["totals"].get(key)
        grid.add_row(f"{key} /s", f"{value:,.2f}", "" if total is None else f"{total:,.0f}")
    grid.add_row("http 5xx ratio", f"{view['http_5xx_ratio']:.2%}", "")
    grid.add_section()
    for status, count in view["queue"].items():
        grid.add_row(f"queue {status}", f"{count:,.0f}", "")
    grid.add_row("oldest waiting", f"{view['oldest_waiting_age_seconds']:,.1f}s", "")
    return grid
