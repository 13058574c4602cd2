"""The token bucket on a clock the test moves: what ``RATE_LIMIT`` means, to the token, without waiting."""

from __future__ import annotations

import pytest

from eventctl.ratelimit import MAX_TRACKED_CALLERS, RateLimit, TokenBuckets


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("text", "per_second", "burst"),
    [("200/s", 200, 200), ("200/s,burst=400", 200, 400), ("1000/m", 1000 / 60, 1000), (" 2 / s , burst = 5 ", 2, 5)],
)
def test_rate_limit_syntax(text: str, per_second: float, burst: int) -> None:
    assert RateLimit.parse(text) == RateLimit(per_second, burst)


@pytest.mark.parametrize("text", ["", "200", "200/d", "0/s", "-1/s", "2/s,burst=0", "2/s,burst=x", "2/s burst=4"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|must be"):
        RateLimit.parse(text)


def test_a_full_bucket_lets_the_burst_through_then_refuses_with_the_time_to_the_next_token() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit.parse("2/s,burst=5"), clock)
    decisions = [buckets.take("caller") for _ in range(6)]
    assert [decision.allowed for decision in decisions] == [True] * 5 + [False]
    assert [decision.remaining for decision in decisions] == [4, 3, 2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.retry_after_seconds == 1  # one token takes half a second at 2/s: rounded up to whole seconds
    assert refused.reset_seconds == 3  # five tokens at 2/s
    assert refused.header == b'"default";r=0;t=3'
    assert buckets.limit.policy_header == b'"default";q=5;w=3'


def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit.parse("2/s,burst=5"), clock)
    for _ in range(5):
        buckets.take("caller")
    clock.advance(0.49)
    assert not buckets.take("caller").allowed
    clock.advance(0.02)  # half a second since the bucket emptied: one token
    assert buckets.take("caller").allowed
    assert not buckets.take("caller").allowed
    clock.advance(3600)
    assert [buckets.take("caller").allowed for _ in range(6)] == [True] * 5 + [False]


def test_over_any_window_no_more_pass_than_the_burst_plus_the_rate_times_the_window() -> None:
    """A caller asks every millisecond for ten seconds: exactly the burst, then the rate, get through."""
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit.parse("20/s,burst=10"), clock)
    allowed = 0
    for _ in range(10_000):
        allowed += buckets.take("caller").allowed
        clock.advance(0.001)
    assert 10 + 20 * 10 - 1 <= allowed <= 10 + 20 * 10 + 1


def test_each_caller_has_its_own_bucket() -> None:
    buckets = TokenBuckets(RateLimit.parse("1/m,burst=2"), FakeClock())
    assert [buckets.take("a").allowed for _ in range(3)] == [True, True, False]
    assert buckets.take("b").allowed


def test_forgetting_idle_callers_never_refills_a_limited_callers_bucket() -> None:
    """Past MAX_TRACKED_CALLERS, a new caller makes the buckets forget the callers whose bucket is full
    again; a caller who is being limited keeps its empty bucket through that."""
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit.parse("1/s,burst=1"), clock)
    for i in range(MAX_TRACKED_CALLERS - 1):
        buckets.take(f"idle{i}")
    clock.advance(10)  # every idle caller's bucket is full again
    assert buckets.take("limited").allowed
    assert buckets.take("newcomer").allowed  # one caller too many: the idle ones are forgotten
    assert not buckets.take("limited").allowed
    assert buckets.take("idle0").allowed  # a forgotten caller starts again with a full bucket
