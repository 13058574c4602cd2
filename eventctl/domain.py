"""The event and its lifecycle, as plain values shared by the store, the worker and the API."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event as a reader sees it. ``payload`` is the JSON text exactly as stored."""

    event_id: str
    status: Status
    payload: bytes
    attempts: int
    received_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """An event a worker holds. ``token`` fences every later change: it must still match in the store."""

    event_id: str
    payload: bytes
    attempt: int
    token: int
    traceparent: str | None = None  # W3C trace context of the request that accepted it, when traced


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of a listing, newest first. ``next_before`` continues it; ``None`` means it was the last."""

    items: list[Event]
    next_before: int | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The queues at one moment: events per queue status, and how long the oldest due event has waited
    unclaimed (0 when none is due)."""

    depths: dict[Status, int]
    oldest_waiting_age: float


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")  # RFC 3986 unreserved characters: never percent-encoded


def event_path(event_id: str) -> str:
    """The URL path of an event. Any printable character may be in an id, so all are percent-encoded,
    ``/`` included: the server's ``Location`` and the client's requests use this one spelling."""
    if _UNRESERVED.fullmatch(event_id):  # most ids: nothing to encode, and no per-character work
        return "/events/" + event_id
    return "/events/" + quote(event_id, safe="")
