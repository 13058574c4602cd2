"""Schemathesis hooks for tests/test_fuzzing.py.

``deliver_at`` may be at most 365 days ahead of now. JSON Schema cannot say "relative to now", so the document
says it in words, and these hooks leave out generated bodies with a later time (the API refuses them with a
400 naming the field, which tests/test_batch_api.py and the ingest tests check)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

_LATEST = timedelta(days=364)


def _too_far(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("deliver_at"), str):
        return False
    try:
        moment = datetime.fromisoformat(item["deliver_at"])
    except ValueError:
        return False
    if moment.tzinfo is None:
        return False
    try:
        return moment.astimezone(UTC) > datetime.now(UTC) + _LATEST
    except OverflowError:
        return True


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """Keep a body unless an event in it (a single event, or a batch's items) is scheduled too far ahead."""
    events = body.get("events") if isinstance(body, dict) else None
    items = events if isinstance(events, list) else [body]
    return not any(_too_far(item) for item in items)
