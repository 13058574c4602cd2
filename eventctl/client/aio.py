"""``AsyncClient``: the eventctl API over an ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
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

DEFAULT_IN_FLIGHT = 16


class AsyncClient(ClientBase):
    """The same calls as ``Client``, to be awaited. ``in_flight`` bounds the requests one ``send_many``
    sends at once where it falls back to one request per event; ``transport`` replaces httpx's."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        in_flight: int = DEFAULT_IN_FLIGHT,
    ) -> None:
        super().__init__(url, api_key, timeout, retries)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout, transport=transport)
        self._in_flight = in_flight

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        event_id: str,
        payload: Any = None,
        *,
        deliver_at: datetime | str | None = None,
        delay_ms: int | None = None,
        ordering_key: str | None = None,
    ) -> SendResult:
        """See ``Client.send``."""
        body = protocol.send_body(event_id, payload, deliver_at, delay_ms, ordering_key)
        return await self._run(protocol.send_flow(self._context, body))

    async def send_many(
        self,
        events: Iterable[Mapping[str, Any]],
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        on_result: Callable[[ItemResult], None] | None = None,
    ) -> BatchResult:
        """See ``Client.send_many``; one by one, it keeps up to ``in_flight`` requests going at once."""
        parts, sent = [], 0
        for chunk in many.chunks(events, batch_size):
            flow = many.send_many_flow(self._context, self._batch, chunk, sent, on_result)
            parts.append(await self._run(flow))
            sent += len(chunk)
        return BatchResult.of(parts)

    async def get(self, event_id: str) -> Event:
        return await self._run(protocol.get_flow(self._context, event_id))

    async def events(self, **filters: Any) -> AsyncIterator[Event]:
        """See ``Client.events``: ``async for event in client.events(status="failed")``."""
        limit = filters.pop("limit", None)
        cursor = filters.pop("cursor", None)
        while True:
            page = await self.events_page(cursor=cursor, limit=limit, **filters)
            for event in page.items:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def events_page(self, cursor: str | None = None, limit: int | None = None, **filters: Any) -> EventPage:
        return await self._run(protocol.page_flow(self._context, filters, cursor, limit))

    async def attempts(self, event_id: str) -> list[Attempt]:
        return await self._run(protocol.attempts_flow(self._context, event_id))

    async def replay(self, event_id: str) -> None:
        await self._run(protocol.replay_flow(self._context, event_id))

    async def delete(self, event_id: str) -> None:
        await self._run(protocol.delete_flow(self._context, event_id))

    async def bulk(self, action: str, dry_run: bool = False, **filters: Any) -> BulkResult:
        """See ``Client.bulk``."""
        return await self._run(protocol.bulk_flow(self._context, action, dry_run, filters))

    async def wait(self, event_id: str, timeout: float = 300) -> Event:  # noqa: ASYNC109 (as Client.wait: a polling deadline)
        return await self._run(protocol.wait_flow(self._context, event_id, timeout))

    async def health(self) -> Health:
        return await self._run(protocol.health_flow(self._context))

    async def ready(self) -> Readiness:
        return await self._run(protocol.ready_flow(self._context))

    async def metrics(self) -> str:
        return await self._run(protocol.metrics_flow(self._context))

    async def _run(self, flow: Flow[T], gate: asyncio.Semaphore | None = None) -> T:
        outcome: Any = None
        while True:
            try:
                step = flow.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Request):
                if gate is None:
                    outcome = await self._transmit(step)
                else:
                    async with gate:
                        outcome = await self._transmit(step)
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                outcome = None
            else:
                assert isinstance(step, Parallel)
                outcome = await self._run_all(step)

    async def _run_all(self, step: Parallel) -> list[Any]:
        """Every flow of ``step`` at once, at most ``in_flight`` requests at a time; the first error cancels
        the rest and is raised."""
        gate = asyncio.Semaphore(self._in_flight)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._run(flow, gate)) for flow in step.flows]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _transmit(self, request: Request) -> Answer | httpx.TransportError:
        headers = {"Content-Type": "application/json"} if request.body is not None else None
        try:
            response = await self._http.request(
                request.method, request.path, params=request.params, content=request.body, headers=headers
            )
        except httpx.TransportError as exc:
            return exc
        return self._answer_of(response)
