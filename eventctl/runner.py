"""The event loop of ``eventctl serve``, with a way out that is bounded.

``asyncio.run`` ends by cancelling every task still alive and waiting for all of them without a bound, and the
interpreter ends by joining every non-daemon thread, also without a bound. A handler that swallows its
cancellation, or a sync handler's thread that is still sleeping, would then keep the process alive long after
the drain. Here leftover tasks get ``LEFTOVER_SECONDS`` once cancelled and threads as long again; whatever is
still running after that is logged and left behind, and the process ends without waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

LEFTOVER_SECONDS = 1.0  # how long cancelled tasks, and then threads, get to end at exit

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class BoundedRunner:
    """Runs one coroutine on a new loop from ``loop_factory`` (uvicorn's choice: uvloop when installed), then
    cleans up within a bound. ``left_behind`` says whether something outlived the clean-up: the process must
    then end with ``exit_at_once``."""

    def __init__(self, loop_factory: LoopFactory | None) -> None:
        self._loop_factory = loop_factory or asyncio.new_event_loop
        self.left_behind = False

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """The result of ``main``, or what it raised, once the loop is closed."""
        loop = self._loop_factory()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(main)
        finally:
            try:
                abandoned = _cancel_leftovers(loop)
                _wait_within(loop, loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()  # also lets the default executor's idle threads go, without waiting for busy ones
            lingering = _join_threads(LEFTOVER_SECONDS)
            if abandoned or lingering:
                log.warning(
                    "exiting without waiting for what did not stop: %s",
                    ", ".join([*(f"task {name}" for name in abandoned), *(f"thread {name}" for name in lingering)]),
                )
                self.left_behind = True


def exit_at_once(code: int) -> NoReturn:
    """End the process with ``code`` without waiting for the threads left behind (the interpreter would join
    them first) or running anything else."""
    logging.shutdown()  # flush every handler: nothing runs after os._exit
    os._exit(code)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Cancel the tasks still alive and give them ``LEFTOVER_SECONDS``; the names of those that did not end."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return []
    for task in tasks:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=LEFTOVER_SECONDS))
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "a task failed while the server stopped", "exception": task.exception(), "task": task}
            )
    return sorted(task.get_name() for task in pending)


def _wait_within(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
    task = loop.create_task(work)
    loop.run_until_complete(asyncio.wait([task], timeout=LEFTOVER_SECONDS))


def _join_threads(seconds: float) -> list[str]:
    """Wait up to ``seconds`` for the threads the interpreter would join at exit; the names of those still
    running."""
    deadline = time.monotonic() + seconds
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    return sorted(t.name for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive())
