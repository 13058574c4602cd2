"""How long validating one ``POST /events`` body takes (µs per body), by the candidates for the one definition
of an event's body: a pydantic ``TypeAdapter`` and a bare msgspec ``Struct`` (structure only), and what the
service runs (``event_body.decode_event``: the msgspec ``EventIn`` and every rule after it). The figures, and
those of the hand check it replaced, are in ``eventctl/api/event_body.py``. Run: ``python benchmarks/event_body.py``."""

from __future__ import annotations

import functools
import timeit
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson
from pydantic import BaseModel, Field, TypeAdapter

from eventctl.api.event_body import decode_event
from eventctl.domain import EVENT_ID_PATTERN, MAX_EVENT_ID_LENGTH

BODIES = {
    "small": b'{"event_id": "evt_0123456789", "payload": {"order": 42}}',
    "typical": orjson.dumps(
        {
            "event_id": "evt_0123456789abcdef",
            "payload": {"order": 42, "customer": "c-17", "items": [{"sku": "a", "n": 2}, {"sku": "b", "n": 1}]},
        }
    ),
    "scheduled+key": orjson.dumps(
        {"event_id": "evt_k", "payload": {"a": 1}, "delay_ms": 5000, "ordering_key": "cart-7"}
    ),
}

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID_LENGTH, pattern=EVENT_ID_PATTERN)]


class EventStruct(msgspec.Struct):
    """The bare msgspec candidate."""

    event_id: Id
    payload: Any = msgspec.field(default_factory=dict)
    deliver_at: datetime | msgspec.UnsetType = msgspec.UNSET
    delay_ms: Annotated[int, msgspec.Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET
    ordering_key: Id | None = None


_decoder = msgspec.json.Decoder(EventStruct)


class EventModel(BaseModel):
    """The pydantic candidate: the same fields and constraints."""

    event_id: str = Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH, pattern=EVENT_ID_PATTERN)
    payload: Any = Field(default_factory=dict)
    deliver_at: datetime | None = None
    delay_ms: int | None = Field(default=None, ge=0)
    ordering_key: str | None = Field(default=None, min_length=1, max_length=MAX_EVENT_ID_LENGTH)


_adapter = TypeAdapter(EventModel)


def chosen(body: bytes) -> Any:
    """What ``POST /events`` runs: the msgspec ``EventIn`` and every rule after it."""
    return decode_event(body)


def pydantic_adapter(body: bytes) -> Any:
    event = _adapter.validate_json(body)
    return orjson.dumps(event.payload)


def msgspec_struct(body: bytes) -> Any:
    event = _decoder.decode(body)
    return orjson.dumps(event.payload)


def main() -> None:
    for name, body in BODIES.items():
        figures = []
        for candidate in (chosen, pydantic_adapter, msgspec_struct):
            runs = 20_000
            best = min(timeit.repeat(functools.partial(candidate, body), number=runs, repeat=5))
            figures.append(f"{candidate.__name__} {best / runs * 1e6:.2f} µs")
        print(f"{name:14} " + ", ".join(figures))


if __name__ == "__main__":
    main()
