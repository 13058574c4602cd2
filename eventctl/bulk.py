"""Bulk actions: replay or delete every event a filter selects, for the API and the console alike.

The work goes in bounded batches with a pause after each as long as the batch took (at most
``MAX_PAUSE_SECONDS``), so that a bulk action over a million events holds the store (and the SQLite writer)
in short stretches, about half of the time: ingest and the worker go on between them. The cap keeps a batch
slowed by waiting for the store (a busy PostgreSQL pool) from making the whole action crawl. Each action is
logged once, with its filter, its counts and the caller's key fingerprint (never the key).
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from eventctl.domain import BulkAction, BulkResult, EventFilter
from eventctl.filters import describe
from eventctl.store import Store

log = logging.getLogger(__name__)

BULK_BATCH_SIZE = 200  # events changed per store call: a few milliseconds of the store's time
MAX_PAUSE_SECONDS = 0.02


async def run_bulk(
    store: Store,
    action: BulkAction,
    filter: EventFilter,
    *,
    dry_run: bool,
    key_fingerprint: str | None,
    batch_size: int = BULK_BATCH_SIZE,
) -> BulkResult:
    """Apply ``action`` to the events ``filter`` selects among those it may change (``action.statuses``).

    ``matched`` is counted first; the action then changes at most that many, so that it ends even while the
    worker keeps failing replayed events (or keeps processing new ones a delete would select).
    ``key_fingerprint`` names the caller in the log line (``None`` when the API has no keys).
    """
    narrowed = filter.within(action.statuses)
    matched = 0 if narrowed is None else await store.count_matching(narrowed)
    changed = 0
    if narrowed is not None and not dry_run:
        step = store.replay_matching if action is BulkAction.REPLAY else store.delete_matching
        while changed < matched:
            wanted = min(batch_size, matched - changed)
            started = time.monotonic()
            done = await step(narrowed, wanted)
            changed += done
            if done < wanted:
                break
            await asyncio.sleep(min(time.monotonic() - started, MAX_PAUSE_SECONDS))  # the store to the others
    log.info(
        "bulk %s%s: matched=%d changed=%d filter=%s key=%s",
        action.value,
        " (dry run)" if dry_run else "",
        matched,
        changed,
        orjson.dumps(describe(filter)).decode(),
        key_fingerprint or "none",
    )
    return BulkResult(action, matched, changed, dry_run)
