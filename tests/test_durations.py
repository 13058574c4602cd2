"""Durations: Go's style for uptime, and the forms people write in settings."""

from __future__ import annotations

import pytest

from eventctl.durations import format_go_duration, parse_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.9, "0s"), (45, "45s"), (60, "1m0s"), (332, "5m32s"), (3605, "1h0m5s"), (90061, "25h1m1s")],
)
def test_uptime_is_whole_seconds_in_go_duration_style(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("30s", 30), ("15m", 900), ("1h30m", 5400), ("7d", 604800)])
def test_durations_people_write_are_parsed(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "1x", "1h 30m", "-5s"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
