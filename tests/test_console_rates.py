"""The console's rates and chart: per-second counts from the service's own counters, a 15-minute ring,
quantiles from the processing-time histogram, and the overview showing what this instance did."""

from __future__ import annotations

import pytest

from eventctl.console.chart import HEIGHT, WIDTH, chart
from eventctl.metrics import Metrics
from eventctl.rates import WINDOW_SECONDS, RateRing, quantile
from tests.inprocess import running_app, wait_until


def test_a_sample_is_the_counters_growth_per_second_since_the_last() -> None:
    now = [100.0]
    metrics = Metrics()
    ring = RateRing(metrics, clock=lambda: now[0])
    metrics.accepted.inc(10)
    metrics.processed.inc(4)
    now[0] += 2.0  # a late tick still divides by the time that passed
    sample = ring.sample()
    assert (sample.accepted, sample.processed, sample.failed) == (5.0, 2.0, 0.0)
    now[0] += 1.0
    assert ring.sample().accepted == 0.0


def test_the_ring_keeps_the_last_15_minutes() -> None:
    now = [0.0]
    ring = RateRing(Metrics(), clock=lambda: now[0])
    for _ in range(WINDOW_SECONDS + 30):
        now[0] += 1.0
        ring.sample()
    assert len(ring.samples) == WINDOW_SECONDS


def test_quantiles_interpolate_within_the_bucket() -> None:
    bounds = (0.01, 0.1, 1.0)
    assert quantile(bounds, [0, 0, 0, 0], 0.5) is None
    assert quantile(bounds, [10, 0, 0, 0], 0.5) == pytest.approx(0.005)
    assert quantile(bounds, [0, 10, 10, 0], 0.95) == pytest.approx(0.1 + 0.9 * 0.9)
    assert quantile(bounds, [0, 0, 0, 3], 0.5) == 1.0  # above every bound: the last bound, as Prometheus says


def test_the_chart_puts_the_newest_sample_at_the_right_edge_under_a_round_top() -> None:
    now = [0.0]
    metrics = Metrics()
    ring = RateRing(metrics, clock=lambda: now[0])
    for accepted in (3, 7):
        metrics.accepted.inc(accepted)
        now[0] += 1.0
        ring.sample()
    drawn = chart(list(ring.samples))
    assert drawn.top == 10.0
    accepted_line = drawn.lines[0]
    assert accepted_line.name == "accepted"
    assert accepted_line.latest == 7.0
    last_x, last_y = accepted_line.points.split()[-1].split(",")
    assert float(last_x) == WIDTH
    assert float(last_y) == pytest.approx(HEIGHT * 0.3)


@pytest.mark.anyio
async def test_the_overview_charts_what_this_instance_accepted() -> None:
    async with running_app() as running:
        for number in range(5):
            assert (await running.client.post("/events", json={"event_id": f"rate-{number}"})).status_code == 202
        rates = running.app.service.rates
        await wait_until(lambda: sum(s.accepted for s in rates.samples) > 0, 10, "a sample with the events")
        page = await running.client.get("/ui/overview/live")
        assert page.status_code == 200
        assert 'class="series accepted"' in page.text
        assert "processed" in page.text
