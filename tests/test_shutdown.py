"""SIGTERM and SIGINT drain the service (SPEC §7): ready turns 503, new events get 503 with Retry-After,
reads keep working, handlers get SHUTDOWN_TIMEOUT_S, unfinished events are processed after the next start,
and the process exits 0."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import ServerFactory, event_status, wait_until


def test_sigterm_drains_with_the_listener_open_and_exits_0(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=60_000, SHUTDOWN_TIMEOUT_S=2, WORKER_CONCURRENCY=2)
    client = server.client
    for i in range(4):
        assert client.post("/events", json={"event_id": f"e{i}"}).status_code == 202
    wait_until(lambda: event_status(client, "e1") == "processing", message="two events to be claimed")

    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    wait_until(lambda: client.get("/ready").status_code == 503, timeout=5, message="/ready to turn 503")
    assert client.get("/ready").json() == {"status": "not ready", "ready": False}
    refused = client.post("/events", json={"event_id": "late"})
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert client.get("/events/e0").status_code == 200  # reads keep working during the drain
    assert client.get("/health").status_code == 200

    assert server.wait(timeout=30) == 0
    # Exiting took about the grace; the margin is for process start-up noise, not a performance claim.
    assert time.monotonic() - signalled < 2 + 10

    restarted = servers.start(PROCESSING_DELAY_MS=0)
    wait_until(
        lambda: all(event_status(restarted.client, f"e{i}") == "processed" for i in range(4)),
        message="the drained events to be processed after the restart",
    )
    # The attempts cut short by the drain were released, not counted.
    assert [restarted.client.get(f"/events/e{i}").json()["attempts"] for i in range(4)] == [1, 1, 1, 1]
    assert restarted.client.get("/events/late").status_code == 404


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_handlers_that_finish_within_the_grace_complete_before_exit(
    servers: ServerFactory, sig: signal.Signals
) -> None:
    server = servers.start(PROCESSING_DELAY_MS=1000, SHUTDOWN_TIMEOUT_S=20)
    assert server.client.post("/events", json={"event_id": "short"}).status_code == 202
    wait_until(lambda: event_status(server.client, "short") == "processing", message="the event to be claimed")
    server.signal(sig)
    assert server.wait(timeout=30) == 0
    assert "drain finished" in server.log

    restarted = servers.start(PROCESSING_DELAY_MS=60_000)
    event = restarted.client.get("/events/short").json()
    assert event["status"] == "processed"
    assert event["attempts"] == 1
