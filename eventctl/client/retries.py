"""When the client retries, and how long it waits: the one place retry decisions are made."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from eventctl.client.defaults import DEFAULT_RETRIES

THROTTLED = frozenset({429, 503})  # the service asks to come back later; nothing was stored


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a client retries, and how long it waits.

    Connection failures and timeouts are retried up to ``unreachable`` times, 429 and 503 answers up to
    ``throttled`` times (``None``: for as long as the service keeps asking). Each wait honours the
    answer's ``Retry-After`` (seconds or an HTTP date) plus up to a quarter more, so that many clients do
    not come back at the same instant; without it, the wait is exponential with full jitter from
    ``base_delay`` up to ``max_delay``. A ``Retry-After`` longer than ``max_delay`` is not waited for: the
    error is raised at once, for the caller to decide.
    """

    unreachable: int = DEFAULT_RETRIES
    throttled: int | None = DEFAULT_RETRIES
    base_delay: float = 0.5
    max_delay: float = 60.0
    random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @classmethod
    def of(cls, retries: int | RetryPolicy) -> RetryPolicy:
        """``retries`` as a policy: a number means that many retries of every retryable failure."""
        return retries if isinstance(retries, RetryPolicy) else cls(unreachable=retries, throttled=retries)

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform between 0 and ``base_delay * 2**retry``, capped at ``max_delay``."""
        return self.random.uniform(0, min(self.max_delay, self.base_delay * 2**retry))

    def after_failure(self, retry: int) -> float | None:
        """The wait before retry number ``retry + 1`` after a connection failure or timeout, or ``None``."""
        return self.backoff(retry) if retry < self.unreachable else None

    def after_answer(self, retry: int, status: int, retry_after: str | None = None) -> float | None:
        """The wait before retry number ``retry + 1`` after an answer with ``status`` (and ``Retry-After``),
        or ``None`` to take the answer as final."""
        if status not in THROTTLED or (self.throttled is not None and retry >= self.throttled):
            return None
        asked = retry_after_seconds(retry_after)
        if asked is None:
            return self.backoff(retry)
        if asked > self.max_delay:
            return None
        return asked * (1 + self.random.random() / 4)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds from ``now``: whole seconds, or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
