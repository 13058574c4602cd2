"""``BatchedWrite``: calls that arrive together share one write, and every caller hears its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from eventctl.errors import StoreUnavailable
from eventctl.store.batching import BatchedWrite

pytestmark = pytest.mark.anyio


class Recorder:
    """A write that doubles each item, remembers its batches, and can be made to wait or to fail (the next
    writes raise ``failures`` in turn)."""

    def __init__(self, *failures: Exception) -> None:
        self.batches: list[list[int]] = []
        self.failures = list(failures)
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        return [item * 2 for item in items]


async def test_calls_that_arrive_together_share_one_write_and_get_their_own_results() -> None:
    write = Recorder()
    batched = BatchedWrite(write, name="test")
    assert await asyncio.gather(*(batched(i) for i in range(10))) == [i * 2 for i in range(10)]
    assert write.batches == [list(range(10))]


async def test_calls_made_during_a_write_go_together_in_the_next() -> None:
    write = Recorder()
    write.gate.clear()
    batched = BatchedWrite(write, name="test")
    first = asyncio.ensure_future(batched(1))
    await asyncio.sleep(0.01)  # the first write has started and waits at the gate
    later = [asyncio.ensure_future(batched(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    write.gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [4, 6, 8]
    assert write.batches == [[1], [2, 3, 4]]


async def test_a_failed_write_reaches_every_caller_of_its_batch_and_only_those() -> None:
    write = Recorder(StoreUnavailable("down"))
    write.gate.clear()
    batched = BatchedWrite(write, name="test")
    failing = [asyncio.ensure_future(batched(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    later = asyncio.ensure_future(batched(3))
    await asyncio.sleep(0.01)
    write.gate.set()
    for call in failing:
        with pytest.raises(StoreUnavailable, match="down"):
            await call
    assert await later == 6


async def test_a_bug_in_the_write_reaches_every_caller_of_its_batch_as_the_bug_itself() -> None:
    """A bug is not an outage (``store/base.py``): wrapped in ``StoreUnavailable`` it would be retried forever
    and answered 503 instead of being logged with its traceback."""
    bug = RuntimeError("bug in the write")
    write = Recorder(bug)
    batched = BatchedWrite(write, name="test")
    outcomes = await asyncio.gather(batched(1), batched(2), return_exceptions=True)
    assert list(outcomes) == [bug, bug]


async def test_flush_waits_for_everything_handed_over() -> None:
    write = Recorder()
    write.gate.clear()
    batched = BatchedWrite(write, name="test")
    call = asyncio.ensure_future(batched(1))
    await asyncio.sleep(0.01)
    flushing = asyncio.ensure_future(batched.flush())
    await asyncio.sleep(0.01)
    assert not flushing.done()
    write.gate.set()
    await flushing
    assert call.done()
    assert await call == 2
