"""The one parser of the event filters (``status``, ``since``, ``until``, ``error``, ``ordering_key``,
``id_prefix``) into an ``EventFilter``, for ``GET /events``, bulk actions, the CLI and the console.

It names every bad parameter at once, so an API can answer one 400 listing them all. It imports no web
framework: the CLI uses it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eventctl.domain import EVENT_ID_PATTERN, MAX_EVENT_ID_LENGTH, EventFilter, Status, is_possible_event_id
from eventctl.durations import parse_duration

FILTER_PARAMETERS = ("status", "since", "until", "error", "ordering_key", "id_prefix")
_STATUSES = ", ".join(repr(status.value) for status in Status)
TIME_FILTER = "an RFC 3339 time with an offset (2026-12-01T09:30:00Z) or a duration before now (90s, 15m, 2h, 7d)"
_TEXT = f"1 to {MAX_EVENT_ID_LENGTH} characters without control characters or line separators"

# The JSON Schema of each filter's value, for the OpenAPI document of ``GET /events`` and of a bulk body's
# filter: the rules this module checks, written where they are checked. A time is a date-time with an
# offset, or a duration of whole or decimal units (``90s``, ``1h30m``); an empty string is "not set".
_DURATION_PATTERN = r"^(0|([0-9]{1,9}(\.[0-9]{1,6})?(ms|s|m|h|d))+)$"
_NOT_SET: dict[str, object] = {"type": "string", "maxLength": 0}
_TEXT_SCHEMA: dict[str, object] = {
    "type": "string",
    "maxLength": MAX_EVENT_ID_LENGTH,
    "pattern": EVENT_ID_PATTERN.replace("]+$", "]*$"),
}
_TIME_SCHEMA: dict[str, object] = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": _DURATION_PATTERN}, _NOT_SET]
}
FILTER_SCHEMAS: dict[str, dict[str, object]] = {
    "status": {"type": "string", "enum": [*(status.value for status in Status), ""]},
    "since": _TIME_SCHEMA,
    "until": _TIME_SCHEMA,
    "error": _TEXT_SCHEMA,
    "ordering_key": _TEXT_SCHEMA,
    "id_prefix": _TEXT_SCHEMA,
}


@dataclass(frozen=True, slots=True)
class FilterProblem:
    """What is wrong with one parameter."""

    parameter: str
    detail: str


class FilterError(ValueError):
    """Some filter parameters are not valid; ``problems`` names each of them."""

    def __init__(self, problems: Sequence[FilterProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{problem.parameter}: {problem.detail}" for problem in self.problems))

    def errors(self, pointer_prefix: str) -> list[dict[str, str]]:
        """The problems as ``[{"detail", "pointer"}]``, each pointer ``pointer_prefix`` + the parameter."""
        return [{"detail": p.detail, "pointer": (pointer_prefix + p.parameter).rstrip("/")} for p in self.problems]


def parse_query(params: Mapping[str, Sequence[str]], now: datetime | None = None) -> EventFilter:
    """The filter of query parameters (name → every value given). Names that are not filters are left to
    the caller (``limit``, ``cursor``); ``status`` may repeat, the others may be given once. An empty value
    means "not set", as an HTML form sends an empty field."""
    values: dict[str, object] = {}
    problems: list[FilterProblem] = []
    for name in FILTER_PARAMETERS:
        given = list(params.get(name, ()))
        if not given:
            continue
        if name == "status":
            values[name] = given
        elif len(given) > 1:
            problems.append(FilterProblem(name, f"give {name} at most once"))
        else:
            values[name] = given[0]
    return _build(values, problems, now)


def parse_body(document: object, now: datetime | None = None) -> EventFilter:
    """The filter of a JSON object such as a bulk action's ``filter``: the query parameter names as keys,
    ``status`` a string or a list of strings. An unknown key is an error (a typo must not widen a bulk
    delete to every event)."""
    if document is None:
        return EventFilter()
    if not isinstance(document, dict):
        raise FilterError([FilterProblem("", "the filter must be a JSON object")])
    problems = [
        FilterProblem(str(key), f"unknown filter; the filters are {', '.join(FILTER_PARAMETERS)}")
        for key in document
        if key not in FILTER_PARAMETERS
    ]
    values = {key: value for key, value in document.items() if key in FILTER_PARAMETERS}
    if isinstance(values.get("status"), str):
        values["status"] = [values["status"]]
    return _build(values, problems, now)


def _build(values: Mapping[str, object], problems: list[FilterProblem], now: datetime | None) -> EventFilter:
    """An empty string means "not set" (an HTML form sends its empty fields), in a query and a body alike.
    A ``since`` at or after ``until`` is valid and matches nothing."""
    now = datetime.now(UTC) if now is None else now
    values = {name: _unset_if_empty(value) for name, value in values.items()}
    statuses = _statuses(values.get("status"), problems)
    since = _moment("since", values.get("since"), now, problems)
    until = _moment("until", values.get("until"), now, problems)
    texts = {name: _text(name, values.get(name), problems) for name in ("error", "ordering_key", "id_prefix")}
    if problems:
        raise FilterError(problems)
    return EventFilter(
        statuses=statuses,
        received_since=since,
        received_until=until,
        error=texts["error"],
        ordering_key=texts["ordering_key"],
        id_prefix=texts["id_prefix"],
    )


def _unset_if_empty(value: object) -> object:
    if isinstance(value, list):  # a list of empty strings is not set; an empty list stays an error
        kept = [item for item in value if item != ""]
        return kept if kept or not value else None
    return None if value == "" else value


def _statuses(value: object, problems: list[FilterProblem]) -> frozenset[Status]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not value:
        problems.append(FilterProblem("status", f"status must be a status or a list of them: {_STATUSES}"))
        return frozenset()
    statuses: set[Status] = set()
    for item in value:
        try:
            statuses.add(Status(item))
        except ValueError:
            problems.append(FilterProblem("status", f"{item!r} is not a status; the statuses are {_STATUSES}"))
    return frozenset(statuses)


def _moment(name: str, value: object, now: datetime, problems: list[FilterProblem]) -> datetime | None:
    """An RFC 3339 time with an offset, or ``now`` minus a duration."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return now - timedelta(seconds=parse_duration(value))
        except (ValueError, OverflowError):
            pass
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            with contextlib.suppress(OverflowError):  # 0001-01-01T00:00+01:00 is before the first UTC time
                return moment.astimezone(UTC)
    problems.append(FilterProblem(name, f"{name} must be {TIME_FILTER}, not {value!r}"))
    return None


def _text(name: str, value: object, problems: list[FilterProblem]) -> str | None:
    """A string an event could hold: what ``event_id`` and ``ordering_key`` accept (PostgreSQL cannot even
    compare a NUL)."""
    if value is None:
        return None
    if isinstance(value, str) and is_possible_event_id(value):
        return value
    problems.append(FilterProblem(name, f"{name} must be a string of {_TEXT}"))
    return None


def describe(filter: EventFilter) -> dict[str, str | list[str]]:
    """The filter as a JSON object by the parameter names (what a log line or a bulk body holds); times in
    UTC, statuses sorted, unset filters left out."""
    described: dict[str, str | list[str]] = {}
    if filter.statuses:
        described["status"] = sorted(status.value for status in filter.statuses)
    for name, moment in (("since", filter.received_since), ("until", filter.received_until)):
        if moment is not None:
            described[name] = moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    for name, text in (("error", filter.error), ("ordering_key", filter.ordering_key), ("id_prefix", filter.id_prefix)):
        if text is not None:
            described[name] = text
    return described
