"""The event and its lifecycle, as plain values shared by the store, the worker and the API."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote


class Status(enum.StrEnum):
    """Where an event is in its life. ``accepted → processing → processed``, with detours on failure."""

    ACCEPTED = "accepted"  # waiting for its first (or, after a release, next) attempt
    PROCESSING = "processing"  # claimed by a worker that holds a lease on it
    RETRYING = "retrying"  # an attempt failed; the next one runs at ``next_attempt_at``
    PROCESSED = "processed"
    FAILED = "failed"  # attempts exhausted or a permanent error: the dead-letter queue


TERMINAL_STATUSES = frozenset({Status.PROCESSED, Status.FAILED})
QUEUE_STATUSES = (Status.ACCEPTED, Status.PROCESSING, Status.RETRYING, Status.FAILED)

MAX_EVENT_ID_LENGTH = 256
# Characters an event id may not hold: control characters (C0, DEL, C1) and line and paragraph separators.
# Ids travel in headers, logs and URLs, which these would break or forge. (Lone surrogates, which no UTF-8
# text can hold, are refused too; JSON Schema tools cannot express that, so the pattern leaves them out.)
EVENT_ID_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
FORBIDDEN_IN_EVENT_ID = re.compile(f"[{EVENT_ID_FORBIDDEN}\\ud800-\\udfff]")  # and lone surrogates


def is_possible_event_id(event_id: str) -> bool:
    """Whether some stored event could have this id: what ``POST /events`` accepts as ``event_id``."""
    return 0 < len(event_id) <= MAX_EVENT_ID_LENGTH and FORBIDDEN_IN_EVENT_ID.search(event_id) is None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to store, validated at the edge."""

    event_id: str
    payload: bytes  # JSON text, as it will be stored and served
    deliver_at: datetime | None = None  # UTC; None: due at once. A time in the past means now.
    ordering_key: str | None = None  # events of one key run one at a time, in the order they were accepted
    traceparent: str | None = None  # W3C trace context of the accepting request, handed to every claim


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event as a reader sees it. ``payload`` is the JSON text exactly as stored.

    ``blocked_by`` is set only for an event that waits behind its ordering key: it is the id of the key's
    earliest unfinished event (the head it waits for). Such an event is ``accepted`` with no
    ``next_attempt_at``: it has none until it becomes the head.
    """

    event_id: str
    status: Status
    payload: bytes
    attempts: int
    received_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    ordering_key: str | None = None
    blocked_by: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """An event a worker holds. ``token`` fences every later change: it must still match in the store."""

    event_id: str
    payload: bytes
    attempt: int
    token: int
    traceparent: str | None = None  # W3C trace context of the request that accepted it, when traced
    ordering_key: str | None = None  # its outcome may move the key's head to the next event
    claimed_at: datetime | None = None  # by the store's clock: when this attempt started; None if unknown


class AttemptOutcome(enum.StrEnum):
    """How one attempt ended."""

    PROCESSED = "processed"  # the handler succeeded
    RETRYING = "retrying"  # the handler failed; another attempt follows
    FAILED = "failed"  # the handler failed for good: attempts exhausted or a permanent error
    RELEASED = "released"  # given back unfinished at shutdown; the attempt is not counted
    LOST = "lost"  # its lease ran out before an outcome was recorded (the worker died or stalled)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One recorded attempt. ``started_at`` is when it was claimed and ``finished_at`` when its outcome was
    recorded, both by the store's clock; ``duration_ms`` is the handler's own time."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None  # None for a lost attempt, whose end nobody saw
    outcome: AttemptOutcome
    error: str | None
    duration_ms: float | None  # None when the handler did not finish (released, lost)
    response_status: int | None  # the webhook's answer, else None


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """What the worker saw of an attempt, recorded with its outcome."""

    duration_ms: float
    response_status: int | None = None  # the webhook's answer, when the handler reported one


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The filters of a listing or a bulk action, combined with AND. Empty means "every event"."""

    statuses: frozenset[Status] = frozenset()  # empty: any status
    received_since: datetime | None = None  # received_at >= since
    received_until: datetime | None = None  # received_at < until
    error: str | None = None  # case-insensitive substring of last_error
    ordering_key: str | None = None
    id_prefix: str | None = None

    def within(self, statuses: frozenset[Status]) -> EventFilter | None:
        """This filter narrowed to ``statuses``; ``None`` when no status is left (nothing can match)."""
        narrowed = statuses & self.statuses if self.statuses else statuses
        return dataclasses.replace(self, statuses=narrowed) if narrowed else None


class BulkAction(enum.StrEnum):
    REPLAY = "replay"
    DELETE = "delete"

    @property
    def statuses(self) -> frozenset[Status]:
        """The statuses this action may change, whatever a filter says."""
        return _BULK_STATUSES[self]


_BULK_STATUSES = {
    BulkAction.REPLAY: frozenset({Status.FAILED}),
    BulkAction.DELETE: frozenset({Status.PROCESSED, Status.FAILED}),
}


@dataclass(frozen=True, slots=True)
class BulkResult:
    """``matched``: events the filter selects that the action may change; ``changed``: those it changed."""

    action: BulkAction
    matched: int
    changed: int
    dry_run: bool


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of a listing, newest first. ``next_before`` continues it; ``None`` means it was the last."""

    items: list[Event]
    next_before: int | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The queues at one moment: events per queue status, how long the oldest due event has waited
    unclaimed (0 when none is due), how many accepted events have a ``deliver_at`` still ahead
    (``scheduled``), and how many ordering keys are held by a failed head (``blocked_keys``)."""

    depths: dict[Status, int]
    oldest_waiting_age: float
    scheduled: int
    blocked_keys: int


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")  # RFC 3986 unreserved characters: never percent-encoded


def event_path(event_id: str) -> str:
    """The URL path of an event. Any printable character may be in an id, so all are percent-encoded,
    ``/`` included: the server's ``Location`` and the client's requests use this one spelling."""
    if _UNRESERVED.fullmatch(event_id):  # most ids: nothing to encode, and no per-character work
        return "/events/" + event_id
    return "/events/" + quote(event_id, safe="")
