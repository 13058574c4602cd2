"""The attempt history as the worker records it (SPEC §12), on a real store of each kind: each attempt's
outcome, error and duration, the webhook's response status, and the attempt a shutdown released."""

from __future__ import annotations

import asyncio
import base64
import http.server
import os
import threading
from collections.abc import Iterator

import pytest

from eventctl.domain import AttemptOutcome, Status
from eventctl.handlers import Delivery, WebhookHandler
from eventctl.store import Store
from tests.store_fixtures import event, store, store_url
from tests.worker_support import Recorder, start_worker, wait_for_status

__all__ = ["store", "store_url"]  # fixtures

pytestmark = pytest.mark.anyio


async def test_every_attempt_is_recorded_with_its_outcome_error_and_duration(store: Store) -> None:
    async def work(delivery: Delivery) -> None:
        await asyncio.sleep(0.02)
        if delivery.attempt < 3:
            raise RuntimeError(f"flaky on attempt {delivery.attempt}")

    worker = start_worker(store, Recorder(work), max_attempts=5)
    try:
        await store.add(event("e1"))
        await wait_for_status(store, "e1", Status.PROCESSED)
    finally:
        await worker.stop(grace_seconds=5)
    attempts = await store.attempts("e1")
    assert attempts is not None
    assert [(a.attempt, a.outcome, a.error) for a in attempts] == [
        (1, AttemptOutcome.RETRYING, "RuntimeError: flaky on attempt 1"),
        (2, AttemptOutcome.RETRYING, "RuntimeError: flaky on attempt 2"),
        (3, AttemptOutcome.PROCESSED, None),
    ]
    for attempt in attempts:
        assert attempt.duration_ms is not None
        assert attempt.duration_ms >= 20
        assert attempt.response_status is None  # not a webhook


async def test_a_shutdown_records_the_attempt_it_released(store: Store) -> None:
    started = asyncio.Event()

    async def hang(delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(60)

    worker = start_worker(store, Recorder(hang))
    await store.add(event("e1"))
    await asyncio.wait_for(started.wait(), 20)
    await worker.stop(grace_seconds=0.1)
    worker = start_worker(store, Recorder())
    try:
        await wait_for_status(store, "e1", Status.PROCESSED)
    finally:
        await worker.stop(grace_seconds=5)
    attempts = await store.attempts("e1")
    assert attempts is not None
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, AttemptOutcome.RELEASED), (1, AttemptOutcome.PROCESSED)]


@pytest.fixture
def receiver_url() -> Iterator[str]:
    """A webhook receiver that answers 503 to an event's first delivery and 204 to the next."""
    seen: set[str] = set()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            event_id = self.headers["webhook-id"]
            self.send_response(204 if event_id in seen else 503)
            seen.add(event_id)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


async def test_the_webhooks_response_status_is_recorded_with_each_attempt(store: Store, receiver_url: str) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    webhook = WebhookHandler(receiver_url, secret, timeout_seconds=10, concurrency=4)
    worker = start_worker(store, webhook)
    try:
        await store.add(event("e1"))
        await wait_for_status(store, "e1", Status.PROCESSED)
    finally:
        await worker.stop(grace_seconds=5)
        await webhook.aclose()
    attempts = await store.attempts("e1")
    assert attempts is not None
    assert [(a.outcome, a.response_status) for a in attempts] == [
        (AttemptOutcome.RETRYING, 503),
        (AttemptOutcome.PROCESSED, 204),
    ]
    assert attempts[0].error == f"WebhookError: HTTP 503 from {receiver_url}"
