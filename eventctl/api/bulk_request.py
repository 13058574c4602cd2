"""The body of ``POST /events/bulk``, checked by hand so that every mistake is a 400 naming its key.

Being strict matters more here than anywhere: a misspelt ``dry_run`` or filter key, silently ignored, would
change far more events than the caller meant.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from eventctl.domain import BulkAction, EventFilter
from eventctl.filters import FilterError, parse_body

BULK_KEYS = ("action", "filter", "dry_run")
_ACTIONS = " or ".join(repr(action.value) for action in BulkAction)


class InvalidBulkRequest(ValueError):
    """``errors``: ``[{"detail", "pointer"}]``, pointers into the body."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{error['pointer']}: {error['detail']}" for error in errors))


def bulk_request(body: bytes, now: datetime | None = None) -> tuple[BulkAction, EventFilter, bool]:
    """The action, filter and ``dry_run`` of a bulk body; ``filter`` is required (``{}`` selects all)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidBulkRequest([{"detail": "the body must be JSON", "pointer": "#"}]) from None
    if not isinstance(document, dict):
        raise InvalidBulkRequest([{"detail": "the body must be a JSON object", "pointer": "#"}])
    errors = [
        {"detail": f"unknown key; a bulk action has {', '.join(BULK_KEYS)}", "pointer": f"#/{key}"}
        for key in document
        if key not in BULK_KEYS
    ]
    action = document.get("action")
    if action not in tuple(BulkAction):  # a StrEnum member equals its value
        errors.append({"detail": f"action must be {_ACTIONS}", "pointer": "#/action"})
    dry_run = document.get("dry_run", False)
    if not isinstance(dry_run, bool):
        errors.append({"detail": "dry_run must be true or false", "pointer": "#/dry_run"})
    filter = EventFilter()
    if not isinstance(document.get("filter"), dict):
        detail = "filter must be an object of filters; {} selects every event the action may change"
        errors.append({"detail": detail, "pointer": "#/filter"})
    else:
        try:
            filter = parse_body(document["filter"], now)
        except FilterError as exc:
            errors.extend(exc.errors("#/filter/"))
    if errors:
        raise InvalidBulkRequest(errors)
    return BulkAction(str(action)), filter, dry_run
