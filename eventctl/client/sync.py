"""``Client``: the eventctl API over a blocking ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from eventctl.client import many, protocol
from eventctl.client.base import ClientBase
from eventctl.client.defaults import DEFAULT_BATCH_SIZE, DEFAULT_RETRIES, DEFAULT_TIMEOUT_SECONDS
from eventctl.client.protocol import (
    Answer,
    Flow,
    Parallel,
    Pause,
    Request,
)
from eventctl.client.results import (
    Attempt,
    BatchResult,
    BulkResult,
    Event,
    EventPage,
    Health,
    ItemResult,
    Readiness,
    SendResult,
)
from eventctl.client.retries import RetryPolicy

T = TypeVar("T")


class Client(ClientBase):
    """A blocking client of one eventctl service. Use it as a context manager, or call ``close``.

    ``transport`` replaces httpx's network transport (``httpx.MockTransport`` in tests, say).
    Every method raises an ``EventctlClientError``: ``ServiceError`` (and its subclasses, by status) when
    the service said no, ``ServiceUnreachable`` when no answer came, ``NotAnEventctlService`` when what
    answered is not eventctl.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout, retries)
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        event_id: str,
        payload: Any = None,
        *,
        deliver_at: datetime | str | None = None,
        delay_ms: int | None = None,
        ordering_key: str | None = None,
    ) -> SendResult:
        """``POST /events``: store one event (``payload`` ``None`` stores ``{}``). ``result.already_stored``
        tells a retried send whose first try was stored; a different event with this id is a ``Conflict``."""
        body = protocol.send_body(event_id, payload, deliver_at, delay_ms, ordering_key)
        return self._run(protocol.send_flow(self._context, body))

    def send_many(
        self,
        events: Iterable[Mapping[str, Any]],
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        on_result: Callable[[ItemResult], None] | None = None,
    ) -> BatchResult:
        """Store many events (bodies shaped like ``POST /events``), ``batch_size`` per ``POST /events/batch``,
        or one by one where the service has no batch endpoint. Items that are duplicates or invalid are
        reported in the result, not raised; ``on_result`` is given each item's result as soon as it is known
        (to show progress, or to know how far a send that raised got)."""
        parts, sent = [], 0
        for chunk in many.chunks(events, batch_size):
            flow = many.send_many_flow(self._context, self._batch, chunk, sent, on_result)
            parts.append(self._run(flow))
            sent += len(chunk)
        return BatchResult.of(parts)

    def get(self, event_id: str) -> Event:
        """``GET /events/{event_id}``; ``NotFound`` if no event has this id."""
        return self._run(protocol.get_flow(self._context, event_id))

    def events(self, **filters: Any) -> Iterator[Event]:
        """Every event the filters select, newest first, fetching page after page as the iteration goes.
        Filters are ``GET /events``'s query parameters (``status="failed"``, ``status=["failed",
        "retrying"]``, ``since="1h"``, ``limit=500`` for the page size...)."""
        limit = filters.pop("limit", None)
        cursor = filters.pop("cursor", None)
        while True:
            page = self.events_page(cursor=cursor, limit=limit, **filters)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def events_page(self, cursor: str | None = None, limit: int | None = None, **filters: Any) -> EventPage:
        """One page of ``GET /events``; pass its ``next_cursor`` as ``cursor`` for the next."""
        return self._run(protocol.page_flow(self._context, filters, cursor, limit))

    def attempts(self, event_id: str) -> list[Attempt]:
        """``GET /events/{event_id}/attempts``: every attempt, oldest first."""
        return self._run(protocol.attempts_flow(self._context, event_id))

    def replay(self, event_id: str) -> None:
        """``POST /events/{event_id}/replay``: a failed event back to accepted; ``Conflict`` if not failed."""
        self._run(protocol.replay_flow(self._context, event_id))

    def delete(self, event_id: str) -> None:
        """``DELETE /events/{event_id}``; ``Conflict`` while it is processing, ``NotFound`` if unknown."""
        self._run(protocol.delete_flow(self._context, event_id))

    def bulk(self, action: str, dry_run: bool = False, **filters: Any) -> BulkResult:
        """``POST /events/bulk``: ``action`` (``"replay"`` or ``"delete"``) on every event the filters select
        (``GET /events``'s, e.g. ``status="failed", since="1h", error="timeout"``); with ``dry_run``, only
        count. No filter at all means every event the action may change."""
        return self._run(protocol.bulk_flow(self._context, action, dry_run, filters))

    def wait(self, event_id: str, timeout: float = 300) -> Event:
        """Follow an event until it is ``processed`` or ``failed``; ``WaitTimedOut`` after ``timeout`` s."""
        return self._run(protocol.wait_flow(self._context, event_id, timeout))

    def health(self) -> Health:
        return self._run(protocol.health_flow(self._context))

    def ready(self) -> Readiness:
        """Readiness; a service that is not ready is ``Readiness(ready=False)``, not an error."""
        return self._run(protocol.ready_flow(self._context))

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text."""
        return self._run(protocol.metrics_flow(self._context))

    def _run(self, flow: Flow[T]) -> T:
        outcome: Any = None
        while True:
            try:
                step = flow.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Request):
                outcome = self._transmit(step)
            elif isinstance(step, Pause):
                time.sleep(step.seconds)
                outcome = None
            else:
                assert isinstance(step, Parallel)
                outcome = [self._run(sub) for sub in step.flows]  # one at a time: this client blocks

    def _transmit(self, request: Request) -> Answer | httpx.TransportError:
        headers = {"Content-Type": "application/json"} if request.body is not None else None
        try:
            response = self._http.request(
                request.method, request.path, params=request.params, content=request.body, headers=headers
            )
        except httpx.TransportError as exc:
            return exc
        return self._answer_of(response)
