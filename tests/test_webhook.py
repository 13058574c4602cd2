"""The webhook handler, in the real app in process, against a real local receiver (an HTTP server on a
port of its own) that verifies every delivery with the reference Standard Webhooks library."""

from __future__ import annotations

import base64
import collections
import contextlib
import http.server
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import ServerFactory
from tests.inprocess import RunningApp, running_app, settings_from_env, wait_for_status

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Receiver:
    """Answers 500 to the first ``failures`` deliveries of each event, then 200; ``slow`` ids stall once."""

    failures: int = 2
    stall_seconds: float = 0.0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    verifier = Webhook(SECRET)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {name: value for name, value in self.headers.items()}
            try:
                verifier.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
            event_id = headers.get("webhook-id", "")
            with lock:
                state.counts[event_id] += 1
                seen = state.counts[event_id]
                state.deliveries.append({"event_id": event_id, "verified": verified, "body": orjson.loads(body)})
            if seen == 1 and state.stall_seconds:
                time.sleep(state.stall_seconds)
            status = 500 if seen <= state.failures else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@contextlib.asynccontextmanager
async def webhook_app(receiver: Receiver, **environ: str | float) -> AsyncIterator[RunningApp]:
    """The app with the webhook handler, its settings read from the environment as ``eventctl serve`` reads
    them (the secret's format included)."""
    settings = settings_from_env(
        HANDLER="webhook",
        WEBHOOK_URL=receiver.url,
        WEBHOOK_SECRET=SECRET,
        RETRY_BACKOFF_MS=10,
        RETRY_BACKOFF_MAX_MS=50,
        **environ,
    )
    async with running_app(settings) as running:
        yield running


async def test_a_receiver_failing_twice_gets_the_event_processed_on_the_third_signed_attempt(
    receiver: Receiver,
) -> None:
    async with webhook_app(receiver) as running:
        await running.client.post("/events", json={"event_id": "hook_1", "payload": {"order": 42}})
        event = await wait_for_status(running.client, "hook_1", "processed")
    assert event["attempts"] == 3
    assert len(receiver.deliveries) == 3
    assert all(delivery["verified"] for delivery in receiver.deliveries)
    assert [d["body"]["data"]["attempt"] for d in receiver.deliveries] == [1, 2, 3]
    assert all(d["body"]["data"]["payload"] == {"order": 42} for d in receiver.deliveries)
    assert all(d["event_id"] == "hook_1" for d in receiver.deliveries)


async def test_a_receiver_that_does_not_answer_in_time_is_retried(receiver: Receiver) -> None:
    receiver.failures = 0
    receiver.stall_seconds = 3
    async with webhook_app(receiver, WEBHOOK_TIMEOUT_S=0.5) as running:
        await running.client.post("/events", json={"event_id": "hook_slow"})
        event = await wait_for_status(running.client, "hook_slow", "processed")
    assert event["attempts"] == 2


def test_webhook_without_url_or_secret_stops_the_start(servers: ServerFactory) -> None:
    server = servers.start(wait_ready=False, HANDLER="webhook", WEBHOOK_URL="http://127.0.0.1:9/hook")
    assert server.wait(timeout=30) != 0
    assert "WEBHOOK_SECRET" in server.log
