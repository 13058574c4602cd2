"""Pydantic models of the HTTP bodies. They document the API in OpenAPI; the hot paths build their JSON
with orjson instead of constructing these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from eventctl.domain import EVENT_ID_FORBIDDEN, Status
from eventctl.domain import FORBIDDEN_IN_EVENT_ID as FORBIDDEN_IN_EVENT_ID  # the id rules, re-exported
from eventctl.domain import MAX_EVENT_ID_LENGTH as MAX_EVENT_ID_LENGTH
from eventctl.domain import is_possible_event_id as is_possible_event_id

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


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")


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
