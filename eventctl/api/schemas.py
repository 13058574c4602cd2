"""Pydantic models of the HTTP bodies. They document the API in OpenAPI; the hot paths build their JSON
with orjson instead of constructing these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from eventctl.domain import EVENT_ID_FORBIDDEN, AttemptOutcome, BulkAction, Status
from eventctl.domain import FORBIDDEN_IN_EVENT_ID as FORBIDDEN_IN_EVENT_ID  # the id rules, re-exported
from eventctl.domain import MAX_EVENT_ID_LENGTH as MAX_EVENT_ID_LENGTH
from eventctl.domain import is_possible_event_id as is_possible_event_id
from eventctl.filters import TIME_FILTER

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_PAYLOAD_DEPTH = 64  # arrays and objects inside arrays and objects; deeper JSON breaks many consumers
EVENT_ID_PATTERN = f"^[^{EVENT_ID_FORBIDDEN}]+$"
CURSOR_PATTERN = "^[0-9]{1,18}$"


class EventIn(BaseModel):
    """The body of ``POST /events``. It is parsed as JSON whatever the Content-Type says."""

    event_id: str = Field(
        min_length=1,
        max_length=MAX_EVENT_ID_LENGTH,
        pattern=EVENT_ID_PATTERN,
        description="Idempotency key: a second event with the same id is refused with 409. "
        "No control characters, line separators or lone surrogates.",
        examples=["evt_123"],
    )
    payload: Any = Field(
        default_factory=dict,
        description=f"Any JSON value nested at most {MAX_PAYLOAD_DEPTH} levels deep; absent, it is {{}}.",
    )
    model_config = ConfigDict(json_schema_extra={"not": {"required": ["deliver_at", "delay_ms"]}})

    deliver_at: datetime | SkipJsonSchema[None] = Field(
        default=None,
        description="Process no earlier than this RFC 3339 time (with an offset), at most 365 days ahead; a "
        "time in the past means now. Not with delay_ms.",
    )
    delay_ms: Annotated[int, Field(ge=0, le=365 * 86_400_000)] | SkipJsonSchema[None] = Field(
        default=None,
        description="Process no earlier than this many milliseconds from now (at most 365 days). Not with deliver_at.",
    )
    ordering_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EVENT_ID_LENGTH,
        pattern=EVENT_ID_PATTERN,
        description="Events with the same key are processed one at a time, in the order they were accepted.",
    )


class BatchIn(BaseModel):
    """The body of ``POST /events/batch``: 1 to ``MAX_BATCH_EVENTS`` events, each validated as the body of
    ``POST /events`` is."""

    # An item is any value as far as the envelope goes: an item that is not a valid EventIn is a 400 result
    # within the 200, not a 400 answer.
    events: list[EventIn | Any] = Field(
        min_length=1,
        description="1 to MAX_BATCH_EVENTS events (default 1000), each an EventIn; an invalid item is a 400 "
        "result of its own, not a 400 answer.",
    )


class BatchItemResult(BaseModel):
    index: int = Field(description="The item's position in events, from 0.")
    event_id: Any = Field(description="The item's event_id as sent (null when it sent none).")
    status: Literal[202, 409, 400] = Field(description="What POST /events would have answered for this item.")
    event_status: Status | None = Field(default=None, description="202, 409: the status of the id's event.")
    payload_matches: bool | None = Field(
        default=None, description="409: whether the event holding the id has this payload, as JSON values."
    )
    errors: list[ProblemError] | None = Field(default=None, description="400: pointers relative to the item.")


class BatchResult(BaseModel):
    results: list[BatchItemResult] = Field(description="One per item, in request order.")
    accepted: int
    duplicates: int
    invalid: int


class EventAccepted(BaseModel):
    event_id: str
    status: Literal["accepted"]


class EventOut(BaseModel):
    event_id: str
    status: Status
    payload: Any
    attempts: int
    received_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    ordering_key: str | None = Field(description="Events of one key are processed one at a time, in order.")
    blocked_by: str | None = Field(
        description="For an event waiting behind its ordering key: the id of the key's earliest unfinished "
        "event; null otherwise."
    )


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    finished_at: datetime | None = Field(description="Null for a lost attempt, whose end nobody saw.")
    outcome: AttemptOutcome
    error: str | None
    duration_ms: float | None = Field(description="The handler's own time; null when it did not finish.")
    response_status: int | None = Field(description="The webhook's HTTP answer; null for other handlers.")


class AttemptList(BaseModel):
    items: list[AttemptOut] = Field(description="Oldest first.")


class BulkFilter(BaseModel):
    """The filters of ``GET /events``, by the same names. An unknown key is refused."""

    model_config = ConfigDict(extra="forbid")

    status: Status | list[Status] | None = None
    since: str | None = Field(default=None, description=f"Received at or after: {TIME_FILTER}.")
    until: str | None = Field(default=None, description=f"Received before: {TIME_FILTER}.")
    error: str | None = Field(default=None, description="A case-insensitive substring of last_error.")
    ordering_key: str | None = None
    id_prefix: str | None = None


class BulkIn(BaseModel):
    """The body of ``POST /events/bulk``. ``filter`` is required (``{}`` selects every event the action may
    change); an unknown key is refused."""

    model_config = ConfigDict(extra="forbid")

    action: BulkAction = Field(description="replay changes failed events; delete, processed and failed ones.")
    filter: BulkFilter
    dry_run: bool = Field(default=False, description="Count what would change; change nothing.")


class BulkOut(BaseModel):
    action: BulkAction
    matched: int = Field(description="Events the filter selects that the action may change.")
    changed: int = Field(description="Events the action changed; 0 in a dry run.")
    dry_run: bool


class Health(BaseModel):
    status: Literal["ok"]
    uptime: str = Field(description="Time since start in Go duration style, e.g. 5m32s.")


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    ready: bool


class ProblemError(BaseModel):
    detail: str
    pointer: str = Field(description="JSON pointer (as a URI fragment) to the offending part of the body.")


class Problem(BaseModel):
    """RFC 9457 problem details, sent as application/problem+json."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = Field(default=None, description="400: what is wrong with the body.")
    event_id: str | None = Field(default=None, description="409: the duplicate id.")
    event_status: Status | None = Field(default=None, description="409: the stored event's current status.")
    payload_matches: bool | None = Field(
        default=None, description="409: whether the stored payload equals this one as JSON values."
    )
