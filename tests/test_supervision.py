"""Supervision (``eventctl/supervision.py``): an unexpected error never stops processing silently. A failed
loop is logged, counted and restarted; one that cannot recover makes the service give up, so that the process
can be restarted by whatever supervises it."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from eventctl.api import create_app
from eventctl.domain import Claim
from eventctl.metrics import Metrics
from eventctl.service import Service
from eventctl.store import Store
from eventctl.supervision import RestartPolicy, Supervisor, describe_error
from tests import inprocess
from tests.inprocess import BASE_URL, running_app
from tests.test_metrics import samples

pytestmark = pytest.mark.anyio

FAST = RestartPolicy(first_delay=0.01, max_delay=0.05, max_failures=3)


def restarts(metrics: Metrics, task: str) -> float:
    return samples(metrics).get(("eventctl_background_restarts_total", frozenset({("task", task)})), 0.0)


class FatalRecorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.called = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.called.set()


async def test_a_loop_that_fails_once_is_restarted_and_the_restart_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, fatal = Metrics(), FatalRecorder()
    runs: list[int] = []

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("a surprise")

    supervised = Supervisor(metrics.background_restarts, fatal, FAST).start("test_loop", loop)
    await asyncio.wait_for(supervised.task, timeout=10)
    assert runs == [0, 1]
    assert restarts(metrics, "test_loop") == 1
    assert fatal.reasons == []
    [record] = [r for r in caplog.records if "test_loop stopped on an unexpected error" in r.getMessage()]
    assert record.exc_info is not None  # logged with its traceback
    assert record.levelno == logging.ERROR


async def test_a_loop_that_keeps_failing_gives_up_and_calls_the_fatal_hook() -> None:
    metrics, fatal = Metrics(), FatalRecorder()

    async def loop() -> None:
        raise RuntimeError("always")

    supervised = Supervisor(metrics.background_restarts, fatal, FAST).start("doomed", loop)
    await asyncio.wait_for(supervised.task, timeout=10)
    assert fatal.reasons == ["doomed failed 3 times in a row, last with RuntimeError: always"]
    assert restarts(metrics, "doomed") == 2
    assert not supervised.up


async def test_a_loop_that_ran_for_a_healthy_stretch_before_failing_starts_its_count_again() -> None:
    metrics, fatal = Metrics(), FatalRecorder()
    policy = RestartPolicy(first_delay=0.01, max_failures=2, healthy_after=0.05)
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs <= 4:
            await asyncio.sleep(0.1)  # a healthy stretch, then a failure
            raise RuntimeError("now and then")

    supervised = Supervisor(metrics.background_restarts, fatal, policy).start("flaky", loop)
    await asyncio.wait_for(supervised.task, timeout=10)
    assert fatal.reasons == []
    assert runs == 5
    assert restarts(metrics, "flaky") == 4


async def test_stopping_a_loop_that_waits_to_restart_ends_it_without_the_fatal_hook() -> None:
    metrics, fatal = Metrics(), FatalRecorder()
    failed = asyncio.Event()

    async def loop() -> None:
        failed.set()
        raise RuntimeError("once")

    supervised = Supervisor(metrics.background_restarts, fatal, RestartPolicy(first_delay=60)).start("slow", loop)
    await asyncio.wait_for(failed.wait(), timeout=10)
    await asyncio.wait_for(supervised.stop(), timeout=10)
    assert supervised.task.done()
    assert fatal.reasons == []


def test_describing_an_error_never_raises() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ValueError("no")

    assert describe_error(Unprintable()) == "Unprintable: <str() raised ValueError>"
    assert describe_error(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert describe_error(RuntimeError("x" * 5000)) == ("RuntimeError: " + "x" * 5000)[:2000]


def fail_once(store: Store, name: str, error: BaseException) -> list[BaseException]:
    """Wrap the store's method ``name`` (its boundary, not our logic) so that its next call raises ``error``."""
    original: Callable[..., Coroutine[Any, Any, Any]] = getattr(store, name)
    raised: list[BaseException] = []

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append(error)
            raise error
        return await original(*args, **kwargs)

    setattr(store, name, wrapper)
    return raised


async def wait_for_status(client: httpx.AsyncClient, event_id: str, status: str, within: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            response = await client.get(f"/events/{event_id}")
            if response.status_code == 200 and response.json()["status"] == status:
                event: dict[str, Any] = response.json()
                return event
            await asyncio.sleep(0.02)


async def test_an_unexpected_store_error_in_the_claim_loop_is_survived_and_counted() -> None:
    async with running_app() as running:
        service = running.app.service
        raised = fail_once(service.store, "claim", RuntimeError("the driver surprised us"))
        assert (await running.client.post("/events", json={"event_id": "e1"})).status_code == 202
        await wait_for_status(running.client, "e1", "processed")
        assert raised  # the claim loop did meet the error
        assert restarts(service.metrics, "claim_loop") == 1
        assert (await running.client.get("/ready")).status_code == 200


async def test_ready_is_503_while_the_claim_loop_waits_to_restart_and_200_once_it_runs() -> None:
    async with running_app() as running:
        service = running.app.service
        store = service.store
        original = store.claim
        broken = asyncio.Event()

        async def failing_claim(limit: int, lease_seconds: float) -> list[Claim]:
            broken.set()
            raise RuntimeError("claims are broken for now")

        store.claim = failing_claim  # type: ignore[method-assign]
        await running.client.post("/events", json={"event_id": "e1"})
        await asyncio.wait_for(broken.wait(), timeout=10)
        not_ready = await running.client.get("/ready")
        assert not_ready.status_code == 503
        assert not_ready.json() == {"status": "not ready", "ready": False}

        store.claim = original  # type: ignore[method-assign]
        await wait_for_status(running.client, "e1", "processed")
        assert (await running.client.get("/ready")).status_code == 200


@pytest.fixture
async def service_giving_up_fast() -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """A running service whose loops are given up after three quick failures in a row."""
    app = create_app(inprocess.test_settings())
    service = app.service
    service.supervisor = Supervisor(service.metrics.background_restarts, service.fatal, FAST)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield service, client


async def test_a_claim_loop_that_keeps_failing_makes_the_service_give_up(
    service_giving_up_fast: tuple[Service, httpx.AsyncClient],
) -> None:
    service, client = service_giving_up_fast
    fatal = FatalRecorder()
    service.on_fatal(fatal)

    async def failing_claim(limit: int, lease_seconds: float) -> list[Claim]:
        raise RuntimeError("claims are broken for good")

    service.store.claim = failing_claim  # type: ignore[method-assign]
    await client.post("/events", json={"event_id": "e1"})
    await asyncio.wait_for(fatal.called.wait(), timeout=10)
    assert fatal.reasons == ["claim_loop failed 3 times in a row, last with RuntimeError: claims are broken for good"]
    assert service.fatal_reason == fatal.reasons[0]
    assert (await client.get("/ready")).status_code == 503
    refused = await client.post("/events", json={"event_id": "e2"})
    assert refused.status_code == 503
    assert "retry-after" in refused.headers
    assert (await client.get("/health")).status_code == 200  # the process answers until it is ended


async def test_a_bug_while_recording_an_outcome_is_logged_and_the_event_runs_again_after_its_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        async with running_app(lease_seconds=1.0) as running:
            raised = fail_once(running.app.service.store, "complete", RuntimeError("a bug in completing"))
            await running.client.post("/events", json={"event_id": "e1"})
            event = await wait_for_status(running.client, "e1", "processed")
            assert raised
            assert event["attempts"] == 2  # the first attempt's outcome was lost; the lease gave it back
        gc.collect()  # a task whose exception nobody retrieved reports it when it is collected
    finally:
        loop.set_exception_handler(None)
    assert unretrieved == []
    [record] = [r for r in caplog.records if "could not record the outcome of the attempt" in r.getMessage()]
    assert record.exc_info is not None
    assert getattr(record, "event_id", None) == "e1"
