"""Group calls that arrive together into one write: while a batch is being written, new calls queue up,
and the next write takes all of them. It is how completions, the most frequent write after inserts, cost
one store round trip per batch instead of one per event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatchedWrite(Generic[Item, Result]):
    """``await batched(item)`` returns ``item``'s result once the batch holding it was written.

    ``write`` takes a batch and returns one result per item, in order. If it raises, every caller of that
    batch gets that very error, whatever it is (a caller that never heard back would hold its worker slot
    forever): a ``StoreUnavailable`` stays one, and a bug stays the bug (``store/base.py``'s rule).
    """

    def __init__(self, write: Callable[[list[Item]], Awaitable[list[Result]]], name: str) -> None:
        self._write = write
        self._name = name
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_all(), name=self._name)
        return await future

    async def flush(self) -> None:
        """Wait until every item handed over so far is written (at close: nothing handed over is dropped)."""
        if self._writing is not None:
            await self._writing

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
