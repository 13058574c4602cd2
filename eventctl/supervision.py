"""Supervision: the service's background loops keep running, whatever they meet.

The claim loop, the lease renewal, the backlog monitor and retention each run under a ``Supervisor``. A loop
that raises anything but cancellation is a bug or a surprise: it is logged with its traceback, counted in
``eventctl_background_restarts_total{task}``, and started again after an exponential backoff (0.1 s, doubling
up to 30 s). A loop that had run for ``healthy_after`` seconds before it failed had recovered, so its backoff
and its count of failures in a row start again. After ``max_failures`` failures in a row without such a
stretch, it gives up and calls the fatal hook: the service then ends the process with a non-zero exit, so
that whatever supervises the process (systemd, Docker, Kubernetes) starts a fresh one.

Expected failures (the store unavailable) are not failures of the loop: each loop waits and tries again by
itself, and the supervisor never sees them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # handlers use describe_error, and importing eventctl should not load the metrics
    from eventctl.metrics import LoopCounter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a failed loop starts again, and when it is given up."""

    first_delay: float = 0.1  # seconds before the first restart; doubled at each failure in a row
    max_delay: float = 30.0
    healthy_after: float = 60.0  # a run this long before failing counts as a recovery
    max_failures: int = 10  # failures in a row (about a minute of restarts) before the fatal hook


class Supervised:
    """One named loop under supervision; made by ``Supervisor.start``."""

    def __init__(self, name: str, task_factory: Callable[[Supervised], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self.up = False  # a run of the loop is going on: not waiting to restart, not given up, not ended
        self.task = asyncio.create_task(task_factory(self), name=f"eventctl-{name}")

    async def stop(self) -> None:
        """Cancel the loop (wherever it is: running, or waiting to restart) and wait until it has ended."""
        self.task.cancel()
        await asyncio.wait([self.task])


class Supervisor:
    """Starts loops that share one restart counter, one policy and one fatal hook."""

    def __init__(
        self, restarts: LoopCounter, fatal: Callable[[str], None], policy: RestartPolicy | None = None
    ) -> None:
        self._restarts = restarts
        self._fatal = fatal
        self._policy = policy or RestartPolicy()

    def start(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> Supervised:
        """Run ``loop`` as a task named ``name`` until it returns (its own decision to end), is cancelled, or
        fails ``max_failures`` times in a row."""
        restarts = self._restarts.labels(name)  # exposed as 0 from the start, not only after a first restart

        async def supervise(supervised: Supervised) -> None:
            policy = self._policy
            failures, delay = 0, policy.first_delay
            while True:
                started = time.monotonic()
                supervised.up = True
                try:
                    await loop()
                    return
                except Exception as exc:
                    error = exc
                finally:
                    supervised.up = False
                if time.monotonic() - started >= policy.healthy_after:
                    failures, delay = 0, policy.first_delay
                failures += 1
                if failures >= policy.max_failures:
                    log.critical("%s failed %d times in a row; giving up", name, failures, exc_info=error)
                    self._fatal(f"{name} failed {failures} times in a row, last with {describe_error(error)}")
                    return
                log.error(
                    "%s stopped on an unexpected error (%d in a row); restarting it in %gs",
                    name,
                    failures,
                    delay,
                    exc_info=error,
                )
                restarts.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, policy.max_delay)

        return Supervised(name, supervise)


MAX_DESCRIPTION_CHARS = 2000  # a stored last_error keeps the start of a long message


def describe_error(exc: BaseException) -> str:
    """``Type: message`` (or ``Type`` when the message is empty), at most ``MAX_DESCRIPTION_CHARS`` long.
    Never raises: an exception whose ``__str__`` raises is described by its type and that failure."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except BaseException as failure:  # a handler's exception may fail in any way while it is described
        message = f"<str() raised {type(failure).__name__}>"
    text = f"{name}: {message}" if message else name
    return text[:MAX_DESCRIPTION_CHARS]
