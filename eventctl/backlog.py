"""Load shedding: past ``MAX_BACKLOG`` events waiting or running, new events are refused with 503.

The queue statistics are read from the store once a second, not per request, so the check costs the hot
path a single attribute read (the limit is therefore approximate by about one second of ingest), and the
metrics' queue gauges are set from the same reading.
"""

from __future__ import annotations

import asyncio
import logging

from eventctl.domain import Status
from eventctl.errors import StoreUnavailable
from eventctl.metrics import Metrics
from eventctl.store import Store
from eventctl.supervision import Supervised, Supervisor

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
_BACKLOG_STATUSES = (Status.ACCEPTED, Status.PROCESSING, Status.RETRYING)


class BacklogMonitor:
    """Keeps the latest queue depths and says whether the backlog is over the limit (0: no limit)."""

    def __init__(self, store: Store, max_backlog: int, metrics: Metrics, supervisor: Supervisor) -> None:
        self._store = store
        self._max_backlog = max_backlog
        self._metrics = metrics
        self._supervisor = supervisor
        self.depths: dict[Status, int] = {}
        self.full = False
        self._task: Supervised | None = None

    @property
    def backlog(self) -> int:
        return sum(self.depths.get(status, 0) for status in _BACKLOG_STATUSES)

    def start(self) -> None:
        self._task = self._supervisor.start("backlog_monitor", self._run)

    async def stop(self) -> None:
        if self._task is not None:
            await self._task.stop()

    async def refresh(self) -> None:
        stats = await self._store.queue_stats()
        self.depths = stats.depths
        self._metrics.observe_queue(stats)
        full = 0 < self._max_backlog <= self.backlog
        if full != self.full:
            log.warning(
                "backlog %d is %s MAX_BACKLOG=%d", self.backlog, "over" if full else "back under", self._max_backlog
            )
        self.full = full

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except StoreUnavailable as exc:
                log.debug("could not read the queue depths: %s", exc)
            await asyncio.sleep(REFRESH_SECONDS)
