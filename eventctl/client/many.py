"""``send_many``'s flow: ``POST /events/batch`` (SPEC §11) where the service has it, one ``POST /events`` per
event where it does not, and batches split where the service cannot take them whole."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventctl.client.errors import ServiceError
from eventctl.client.jsontext import dumps
from eventctl.client.protocol import Answer, Context, Flow, Parallel, Request, exchange, json_object, read
from eventctl.client.results import DUPLICATE, INVALID, TOO_LARGE, BatchResult, ItemResult

_BATCH_PATH = "/events/batch"
_BURST = re.compile(r"\bq=(\d+)")


@dataclass(slots=True)
class BatchSupport:
    """Whether the service has ``POST /events/batch``; learnt from the first batch and kept for the client's
    life (``None``: not known yet)."""

    available: bool | None = None


def chunks(events: Iterable[Any], size: int) -> Iterable[list[Any]]:
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    chunk: list[Any] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


OnResult = Callable[[ItemResult], None]


def send_many_flow(
    context: Context,
    support: BatchSupport,
    events: Sequence[Any],
    first_index: int = 0,
    on_result: OnResult | None = None,
) -> Flow[BatchResult]:
    """Send ``events`` (bodies shaped like ``POST /events``) as one batch, or one by one where the service has
    no batch endpoint (it answers 404, 405 or, where it guards unknown routes, 403 there). A batch over the
    service's body limit (413), or larger than its rate limit's burst, is split and its parts sent in turn.
    ``first_index`` numbers the items; ``on_result`` is given each item's result as soon as it is known."""
    tell = on_result or (lambda result: None)
    if support.available is False:
        return (yield from _one_by_one(context, events, first_index, tell))
    request = Request("POST", _BATCH_PATH, body=_batch_body(events))

    def never_fits(answer: Answer) -> bool:  # retrying cannot help a batch larger than the bucket
        return answer.status == 429 and _burst(answer) < len(events)

    done = yield from exchange(request, context.policy, context.base_url, context.timeout, never_fits)
    answer = done.answer
    if support.available is None and answer.status in (403, 404, 405):
        support.available = False
        return (yield from _one_by_one(context, events, first_index, tell))
    burst = _burst(answer)
    if len(events) > 1 and (answer.status == TOO_LARGE or (answer.status == 429 and burst < len(events))):
        size = max(1, min(burst, (len(events) + 1) // 2))
        parts = []
        for offset in range(0, len(events), size):
            part = events[offset : offset + size]
            parts.append((yield from send_many_flow(context, support, part, first_index + offset, tell)))
        return BatchResult.of(parts)
    if len(events) == 1 and answer.status == TOO_LARGE:
        results: tuple[ItemResult, ...] = (_too_large(answer, events[0], first_index),)
    else:
        body = read(answer, context.base_url, request)
        support.available = True
        results = tuple(ItemResult.from_json(item, first_index + item["index"]) for item in body["results"])
    for result in results:
        tell(result)
    return BatchResult(results)


def _batch_body(events: Sequence[Any]) -> bytes:
    return b'{"events":[' + b",".join(dumps(event) for event in events) + b"]}"


def _burst(answer: Answer) -> int:
    """The bucket size a 429's ``RateLimit-Policy`` names (``"default";q=400;w=2``), or a huge number."""
    match = _BURST.search(answer.headers.get("ratelimit-policy", "")) if answer.status == 429 else None
    return int(match.group(1)) if match else 1 << 62


def _event_id(event: Any) -> str | None:
    event_id = event.get("event_id") if isinstance(event, Mapping) else None
    return event_id if isinstance(event_id, str) else None


def _too_large(answer: Answer, event: Any, index: int) -> ItemResult:
    body = json_object(answer) or {}
    detail = body.get("detail") or "the event is larger than the service accepts"
    return ItemResult(index, _event_id(event), TOO_LARGE, errors=({"detail": detail, "pointer": "#"},))


def _one_by_one(context: Context, events: Sequence[Any], first_index: int, tell: OnResult) -> Flow[BatchResult]:
    flows = [_told(_send_item(context, event, first_index + offset), tell) for offset, event in enumerate(events)]
    return BatchResult(tuple((yield Parallel(flows))))


def _told(flow: Flow[ItemResult], tell: OnResult) -> Flow[ItemResult]:
    result = yield from flow
    tell(result)
    return result


def _send_item(context: Context, event: Any, index: int) -> Flow[ItemResult]:
    """One event of ``send_many`` through ``POST /events``, its answer in the shape of a batch item."""
    request = Request("POST", "/events", body=dumps(event))
    done = yield from exchange(request, context.policy, context.base_url, context.timeout)
    answer = done.answer
    event_id = _event_id(event)
    if answer.status == TOO_LARGE:
        return _too_large(answer, event, index)
    try:
        body = read(answer, context.base_url, request)
    except ServiceError as exc:
        if exc.status == DUPLICATE:
            matches = exc.problem.get("payload_matches")
            status = exc.problem.get("event_status")
            return ItemResult(index, event_id, DUPLICATE, status if isinstance(status, str) else None, matches)
        if exc.status == INVALID:
            return ItemResult(index, event_id, INVALID, errors=tuple(exc.errors))
        raise
    return ItemResult(index, body.get("event_id", event_id), answer.status, body.get("status"))
