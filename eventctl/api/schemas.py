"""Pydantic models of the HTTP bodies. They document the API in OpenAPI; the hot paths build their JSON
with orjson instead of constructing these. The body of an event, which is validated, is ``event_body.EventIn``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import WithJsonSchema

from eventctl.domain import FORBIDDEN_IN_EVENT_ID as FORBIDDEN_IN_EVENT_ID  # the id rules, re-exported
from eventctl.domain import MAX_EVENT_ID_LENGTH as MAX_EVENT_ID_LENGTH
from eventctl.domain import AttemptOutcome, BulkAction, Status
from eventctl.domain import is_possible_event_id as is_possible_event_id
from eventctl.filters import FILTER_SCHEMAS, TIME_FILTER

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_PAYLOAD_DEPTH = 64  # arrays and objects inside arrays and objects; deeper JSON breaks many consumers
CURSOR_PATTERN = "^[0-9]{1,18}$"


class BatchIn(BaseModel):
    """The body of ``POST /events/batch``: 1 to ``MAX_BATCH_EVENTS`` events, each validated as the body of
    ``POST /events`` is (``eventctl.api.event_body.EventIn``). Documentation only: ``batch.py`` decodes it."""

    # An item is any value as far as the envelope goes: an item that is not a valid EventIn is a 400 result
    # within the 200, not a 400 answer.
    events: list[Any] = Field(
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


# The filters' values as eventctl.filters checks them (it holds their JSON Schemas).
FilterText = Annotated[str, WithJsonSchema(FILTER_SCHEMAS["error"])]
FilterTime = Annotated[str, WithJsonSchema(FILTER_SCHEMAS["since"])]
FilterStatus = Annotated[str, WithJsonSchema(FILTER_SCHEMAS["status"])]


class BulkFilter(BaseModel):
    """The filters of ``GET /events``, by the same names. An unknown key is refused."""

    model_config = ConfigDict(extra="forbid")

    status: FilterStatus | Annotated[list[FilterStatus], Field(min_length=1)] | None = None
    since: FilterTime | None = Field(default=None, description=f"Received at or after: {TIME_FILTER}.")
    until: FilterTime | None = Field(default=None, description=f"Received before: {TIME_FILTER}.")
    error: FilterText | None = Field(default=None, description="A case-insensitive substring of last_error.")
    ordering_key: FilterText | None = None
    id_prefix: FilterText | None = None


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
