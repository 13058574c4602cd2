"""Pydantic models of the HTTP bodies. They document the API in OpenAPI; the hot paths build their JSON
with orjson instead of constructing these. The body of an event, which is validated, is ``event_body.EventIn``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from eventctl.domain import Status

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_EVENT_ID_LENGTH = 256
MAX_PAYLOAD_DEPTH = 64  # arrays and objects inside arrays and objects; deeper JSON breaks many consumers
# Characters an event id may not hold: control characters (C0, DEL, C1) and line and paragraph separators.
# Ids travel in headers, logs and URLs, which these would break or forge. (Lone surrogates, which no UTF-8
# text can hold, are refused too; JSON Schema tools cannot express that, so the pattern leaves them out.)
EVENT_ID_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
EVENT_ID_PATTERN = f"^[^{EVENT_ID_FORBIDDEN}]+$"
FORBIDDEN_IN_EVENT_ID = re.compile(f"[{EVENT_ID_FORBIDDEN}\\ud800-\\udfff]")  # and lone surrogates
CURSOR_PATTERN = "^[0-9]{1,18}$"


def is_possible_event_id(event_id: str) -> bool:
    """Whether some stored event could have this id: what ``POST /events`` accepts as ``event_id``."""
    return 0 < len(event_id) <= MAX_EVENT_ID_LENGTH and FORBIDDEN_IN_EVENT_ID.search(event_id) is None


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
