"""What the client's calls return: frozen dataclasses built from the service's JSON.

Times are timezone-aware ``datetime`` values (UTC). Every result built from one answer keeps that answer's
JSON object in ``raw`` (left out of comparisons and ``repr``), so nothing the service said is lost, including
fields newer than this client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventctl.durations import parse_duration

ACCEPTED, DUPLICATE, INVALID = 202, 409, 400  # an item's status in a batch answer (SPEC §11)
TOO_LARGE = 413  # an item that alone is larger than the service's MAX_BODY_BYTES


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event, as ``GET /events/{event_id}`` shows it. ``status`` is one of ``accepted``,
    ``processing``, ``retrying``, ``processed``, ``failed``."""

    event_id: str
    status: str
    payload: Any
    attempts: int
    received_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    ordering_key: str | None = None
    blocked_by: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def final(self) -> bool:
        """``processed`` or ``failed``: nothing more will happen to it unless it is replayed."""
        return self.status in ("processed", "failed")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Event:
        received_at = _time(body["received_at"])
        updated_at = _time(body["updated_at"])
        assert received_at is not None
        assert updated_at is not None
        return cls(
            event_id=body["event_id"],
            status=body["status"],
            payload=body.get("payload"),
            attempts=body["attempts"],
            received_at=received_at,
            updated_at=updated_at,
            processed_at=_time(body.get("processed_at")),
            next_attempt_at=_time(body.get("next_attempt_at")),
            last_error=body.get("last_error"),
            ordering_key=body.get("ordering_key"),
            blocked_by=body.get("blocked_by"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of ``GET /events``, newest first; ``next_cursor`` continues it (``None``: the last page)."""

    items: tuple[Event, ...]
    next_cursor: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EventPage:
        return cls(tuple(Event.from_json(item) for item in body["items"]), body.get("next_cursor"), body)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at an event (SPEC §12). ``outcome`` is ``processed``, ``retrying``, ``failed``,
    ``released`` or ``lost``; ``response_status`` is the webhook receiver's status, else ``None``."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: str | None
    duration_ms: float | None
    response_status: int | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Attempt:
        started_at = _time(body["started_at"])
        assert started_at is not None
        return cls(
            attempt=body["attempt"],
            started_at=started_at,
            finished_at=_time(body.get("finished_at")),
            outcome=body.get("outcome"),
            error=body.get("error"),
            duration_ms=body.get("duration_ms"),
            response_status=body.get("response_status"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What ``POST /events/bulk`` did (SPEC §11): ``matched`` events the filter selects that the action may
    change (``replay``: failed ones; ``delete``: processed and failed ones), ``changed`` of them (0 in a dry
    run)."""

    action: str
    matched: int
    changed: int
    dry_run: bool
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BulkResult:
        return cls(body["action"], body["matched"], body["changed"], body["dry_run"], body)


@dataclass(frozen=True, slots=True)
class SendResult:
    """The event is stored. ``already_stored`` is true when this call did not store it: an earlier try of the
    same call did, and its answer was lost (a retried send met a 409 whose payload matches).
    ``event_status`` is ``accepted`` for a new event, the stored event's status otherwise."""

    event_id: str
    already_stored: bool
    event_status: str
    location: str | None = None

    @property
    def stored_now(self) -> bool:
        return not self.already_stored


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What became of one item of ``send_many``, in the shape of SPEC §11's batch results.

    ``status`` is 202 (accepted), 409 (a duplicate: of a stored event or of an earlier item of the same
    batch; ``payload_matches`` says whether the payloads are equal), 400 (invalid; ``errors`` says why, with
    pointers relative to the item) or 413 (the item alone is larger than the service accepts).
    """

    index: int
    event_id: str | None
    status: int
    event_status: str | None = None
    payload_matches: bool | None = None
    errors: tuple[Mapping[str, Any], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED

    @property
    def already_stored(self) -> bool:
        """A duplicate with an equal payload: the event is stored, as asked (by an earlier send, say)."""
        return self.status == DUPLICATE and self.payload_matches is True

    @property
    def conflict(self) -> bool:
        """A duplicate with a different payload: another event already has this id."""
        return self.status == DUPLICATE and self.payload_matches is not True

    @property
    def invalid(self) -> bool:
        return self.status in (INVALID, TOO_LARGE)

    @classmethod
    def from_json(cls, body: Mapping[str, Any], index: int | None = None) -> ItemResult:
        errors = body.get("errors") or ()
        return cls(
            index=body["index"] if index is None else index,
            event_id=body.get("event_id"),
            status=body["status"],
            event_status=body.get("event_status"),
            payload_matches=body.get("payload_matches"),
            errors=tuple(error for error in errors if isinstance(error, Mapping)),
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What ``send_many`` did: one ``ItemResult`` per event given, in order (``index`` counts from 0 over
    everything given, across batches), and the counts of SPEC §11."""

    items: tuple[ItemResult, ...]

    @property
    def accepted(self) -> int:
        return sum(item.accepted for item in self.items)

    @property
    def duplicates(self) -> int:
        return sum(item.status == DUPLICATE for item in self.items)

    @property
    def invalid(self) -> int:
        return sum(item.invalid for item in self.items)

    @property
    def already_stored(self) -> int:
        """Duplicates whose payload matches: stored before, as asked."""
        return sum(item.already_stored for item in self.items)

    @property
    def conflicts(self) -> int:
        """Duplicates whose payload differs: another event has the id."""
        return sum(item.conflict for item in self.items)

    @property
    def ok(self) -> bool:
        """Every event given is stored with the payload given: accepted now, or already stored."""
        return all(item.accepted or item.already_stored for item in self.items)

    @classmethod
    def of(cls, parts: Iterable[BatchResult]) -> BatchResult:
        """One result for several consecutive ones (their items already numbered across all of them)."""
        return cls(tuple(item for part in parts for item in part.items))


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health``: ``status`` is ``ok``; ``uptime`` as the service wrote it (``5m32s``)."""

    status: str
    uptime: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def uptime_seconds(self) -> float:
        return parse_duration(self.uptime)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Health:
        return cls(body["status"], body["uptime"], body)


@dataclass(frozen=True, slots=True)
class Readiness:
    """``GET /ready``: ``ready`` is false while the service starts, drains or cannot reach its store."""

    ready: bool
    status: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Readiness:
        return cls(bool(body["ready"]), body["status"], body)
