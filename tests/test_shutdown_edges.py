"""Shutdown keeps its bound whatever the handlers do (SPEC §7): exit 0 within about SHUTDOWN_TIMEOUT_S with a
sync handler still sleeping or an async one that swallows its cancellation; a second signal stops at once; the
service giving up on its own ends the process with an error. Never a traceback, and the unfinished events are
processed after a restart."""

from __future__ import annotations

import asyncio
import gc
import signal
import time

import pytest

from eventctl.api import create_app
from eventctl.listen import listening_sockets
from eventctl.server import DrainingServer, uvicorn_config
from eventctl.signals import StopSignals
from tests import inprocess
from tests.conftest import ServerFactory, ServerProcess, event_status, wait_for_status, wait_until

# Margins for a busy machine: far below the 40 s a stuck handler would hold the process, far above the bound.
EXIT_MARGIN_SECONDS = 10
STUCK = "tests.scripted_handlers:ignores_cancellation"
SLOW_SYNC = "tests.scripted_handlers:scripted_sync"
SLOW_ASYNC = "tests.scripted_handlers:scripted"
SLOW_PAYLOAD = {"sleep_s": 40}


def start_processing(servers: ServerFactory, handler: str, shutdown_timeout_s: float) -> ServerProcess:
    """A server whose handler has begun on the event ``slow``."""
    server = servers.start(HANDLER=handler, SHUTDOWN_TIMEOUT_S=shutdown_timeout_s)
    assert server.client.post("/events", json={"event_id": "slow", "payload": SLOW_PAYLOAD}).status_code == 202
    wait_until(lambda: event_status(server.client, "slow") == "processing", message="the event to be claimed")
    return server


def assert_processed_after_a_restart(servers: ServerFactory) -> None:
    restarted = servers.start()  # the default handler: a no-op with the tests' PROCESSING_DELAY_MS=0
    event = wait_for_status(restarted.client, "slow", "processed", "failed")
    assert event["status"] == "processed"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("handler", [SLOW_SYNC, STUCK])
def test_a_handler_that_will_not_stop_does_not_keep_the_process_past_the_grace(
    servers: ServerFactory, handler: str, sig: signal.Signals
) -> None:
    server = start_processing(servers, handler, shutdown_timeout_s=2)
    signalled = time.monotonic()
    server.signal(sig)
    assert server.wait(timeout=60) == 0
    assert time.monotonic() - signalled < 2 + EXIT_MARGIN_SECONDS
    assert "Traceback" not in server.log
    assert_processed_after_a_restart(servers)


@pytest.mark.parametrize("handler", [SLOW_ASYNC, SLOW_SYNC, STUCK])
def test_a_second_signal_during_the_drain_stops_at_once(servers: ServerFactory, handler: str) -> None:
    server = start_processing(servers, handler, shutdown_timeout_s=120)
    server.signal(signal.SIGINT)
    wait_until(lambda: "draining" in server.log, timeout=10, message="the drain to begin")
    assert server.client.get("/ready").status_code == 503
    stopped_now = time.monotonic()
    server.signal(signal.SIGINT)
    assert server.wait(timeout=60) == 0
    assert time.monotonic() - stopped_now < EXIT_MARGIN_SECONDS  # not the 120 s of grace
    assert "stopping now" in server.log
    assert "Traceback" not in server.log
    assert_processed_after_a_restart(servers)


def test_a_released_event_of_a_second_signal_keeps_its_attempt_count(servers: ServerFactory) -> None:
    """Stopping now releases the claims it cuts short: the interrupted attempt is not counted."""
    server = start_processing(servers, SLOW_ASYNC, shutdown_timeout_s=120)
    server.signal(signal.SIGTERM)
    wait_until(lambda: "draining" in server.log, timeout=10, message="the drain to begin")
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0
    assert "released 1 unfinished events back to accepted" in server.log
    restarted = servers.start()
    event = wait_for_status(restarted.client, "slow", "processed")
    assert event["attempts"] == 1


@pytest.mark.anyio
async def test_the_service_giving_up_drains_and_ends_the_server_with_its_reason() -> None:
    settings = inprocess.test_settings(port=0, shutdown_timeout_s=1)
    app = create_app(settings)
    app.service.load_handler()
    sockets = listening_sockets("127.0.0.1", 0, 16)
    server = DrainingServer(uvicorn_config(app, settings), app)
    try:
        serving = asyncio.ensure_future(server.run_service(sockets, StopSignals()))
        for _ in range(600):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.05)
        assert server.started
        app.service.fatal("the claim loop keeps failing")
        assert await asyncio.wait_for(serving, timeout=30) == "the claim loop keeps failing"
        assert not await app.service.is_ready()
    finally:
        gc.unfreeze()  # the server froze the test process's heap as it would its own
        for sock in sockets:
            sock.close()
