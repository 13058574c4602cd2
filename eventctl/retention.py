"""Retention: processed events are deleted ``RETENTION`` after processing; failed events stay.

Deletes go in small batches through the same writer as ingest, so a large backlog of expired events never
holds the store for long. An event's attempt history goes with it. Deleting an event frees its id: the
idempotency window is the retention.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from eventctl.errors import StoreUnavailable
from eventctl.store import Store
from eventctl.supervision import Supervised, Supervisor

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MIN_INTERVAL_SECONDS = 0.25
MAX_INTERVAL_SECONDS = 60.0


class Pruner:
    """Runs ``prune_once`` every quarter of the retention (between 0.25 s and 60 s)."""

    def __init__(self, store: Store, retention_seconds: float, supervisor: Supervisor) -> None:
        self._store = store
        self._retention = timedelta(seconds=retention_seconds)
        self._interval = min(MAX_INTERVAL_SECONDS, max(MIN_INTERVAL_SECONDS, retention_seconds / 4))
        self._supervisor = supervisor
        self._task: Supervised | None = None

    def start(self) -> None:
        self._task = self._supervisor.start("retention", self._run)

    async def stop(self) -> None:
        if self._task is not None:
            await self._task.stop()

    async def prune_once(self) -> int:
        """Delete every processed event older than the retention, a batch at a time; return the count."""
        cutoff = datetime.now(UTC) - self._retention
        total = 0
        while True:
            deleted = await self._store.prune_processed(cutoff, BATCH_SIZE)
            total += deleted
            if deleted < BATCH_SIZE:
                return total

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                deleted = await self.prune_once()
            except StoreUnavailable as exc:
                log.warning("retention: store unavailable, trying again later: %s", exc)
                continue
            if deleted:
                log.info("retention: deleted %d processed events older than %s", deleted, self._retention)
