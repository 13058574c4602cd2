"""Handlers of every shape (SPEC §3: "a callable, sync or async"), on real servers with real handler modules:
whatever a handler raises is a failed attempt, whatever its call returns that is awaitable is awaited, and a
module that cannot be imported stops the start with one line naming HANDLER."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import LISTENING, ServerFactory, wait_for_status, wait_until
from tests.scripted_handlers import RAISABLE

EXPECTED_ERRORS = {
    "BaseException": "Abort: stop everything",
    "SystemExit": "SystemExit: 3",
    "KeyboardInterrupt": "KeyboardInterrupt",
    "CancelledError": "CancelledError",
    "UnprintableError": "UnprintableError: <str() raised RuntimeError>",
}


@pytest.mark.parametrize("handler", ["tests.scripted_handlers:scripted", "tests.scripted_handlers:scripted_sync"])
def test_whatever_a_handler_raises_is_a_failed_attempt_and_the_server_survives(
    servers: ServerFactory, handler: str
) -> None:
    """SystemExit from an async handler and KeyboardInterrupt from a sync one used to kill the server; other
    BaseExceptions left the event processing forever."""
    assert set(EXPECTED_ERRORS) == set(RAISABLE)
    server = servers.start(HANDLER=handler, MAX_ATTEMPTS=2, RETRY_BACKOFF_MS=10, RETRY_BACKOFF_MAX_MS=20)
    for kind in RAISABLE:
        assert server.client.post("/events", json={"event_id": kind, "payload": {"raise": kind}}).status_code == 202
    for kind, error in EXPECTED_ERRORS.items():
        event = wait_for_status(server.client, kind, "failed")
        assert (event["attempts"], event["last_error"]) == (2, error)
    assert server.process.poll() is None
    assert server.client.get("/health").status_code == 200
    assert server.client.get("/ready").status_code == 200
    assert "Task exception was never retrieved" not in server.log


@pytest.mark.parametrize("shape", ["async_callable", "decorated_async", "sync_returning_coroutine"])
def test_a_handler_whose_call_returns_an_awaitable_has_its_body_run(
    servers: ServerFactory, tmp_path: Path, shape: str
) -> None:
    """Marking such an event processed without awaiting the body would lose it silently."""
    attempt_log = tmp_path / "attempts.jsonl"
    server = servers.start(
        HANDLER=f"tests.scripted_handlers:{shape}", ATTEMPT_LOG=str(attempt_log), RETRY_BACKOFF_MS=10, MAX_ATTEMPTS=3
    )
    server.client.post("/events", json={"event_id": "ran", "payload": {"sleep_s": 0.1}})
    server.client.post("/events", json={"event_id": "failed-once", "payload": {"fail_times": 1}})
    assert wait_for_status(server.client, "ran", "processed")["attempts"] == 1
    assert wait_for_status(server.client, "failed-once", "processed")["attempts"] == 2
    attempts = [orjson.loads(line) for line in attempt_log.read_bytes().splitlines()]
    assert sorted((a["event_id"], a["attempt"]) for a in attempts) == [
        ("failed-once", 1),
        ("failed-once", 2),
        ("ran", 1),
    ]
    assert "never awaited" not in server.log


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "def handle(delivery):\n    pass\n\ndef broken(:\n",
            "SyntaxError: invalid syntax (bad_handlers.py, line 4)",
        ),
        ("raise RuntimeError('no PAYMENTS_URL')\n", "RuntimeError: no PAYMENTS_URL"),
        ("import no_such_dependency\n", "ModuleNotFoundError: No module named 'no_such_dependency'"),
        ("import sys\nsys.exit(4)\n", "SystemExit: 4"),
    ],
)
def test_a_handler_module_that_fails_to_import_stops_the_start_with_one_line_naming_handler(
    servers: ServerFactory, source: str, expected: str
) -> None:
    (servers.directory / "bad_handlers.py").write_text(source)
    server = servers.start(wait_ready=False, HANDLER="bad_handlers:handle")
    assert server.wait(timeout=30) != 0
    assert f"invalid HANDLER='bad_handlers:handle': importing bad_handlers raised {expected}" in server.log
    assert "Traceback" not in server.log


def test_a_handler_package_in_the_working_directory_imports_without_pythonpath(tmp_path: Path) -> None:
    """As uvicorn does for its app: ``eventctl serve`` (the installed script, which Python does not start in
    the working directory) imports ``myapp.handlers`` from where it was started."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "handlers.py").write_text(
        "import pathlib\n\ndef charge(delivery):\n    pathlib.Path('charged-' + delivery.event_id).touch()\n"
    )
    script = shutil.which("eventctl", path=os.path.dirname(sys.executable))
    assert script is not None
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HOST="127.0.0.1", PORT="0", DATABASE_URL="memory://", HANDLER="myapp.handlers:charge")
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([script, "serve"], env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: LISTENING.search(log_path.read_text()) is not None or process.poll() is not None,
            message="the server to listen",
        )
        listening = LISTENING.search(log_path.read_text())
        assert listening is not None, log_path.read_text()
        with httpx.Client(base_url=listening.group(1), timeout=10) as client:
            assert client.post("/events", json={"event_id": "order-1"}).status_code == 202
            wait_until(lambda: (tmp_path / "charged-order-1").exists(), message="the handler to run")
    finally:
        process.kill()
        process.wait(timeout=10)


def test_an_async_handler_that_swallows_its_cancellation_does_not_hold_the_shutdown(servers: ServerFactory) -> None:
    server = servers.start(HANDLER="tests.scripted_handlers:scripted", SHUTDOWN_TIMEOUT_S=1)
    payload = {"sleep_s": 40, "ignore_cancel": True, "sleep_attempts": 1}
    server.client.post("/events", json={"event_id": "stubborn", "payload": payload})
    wait_for_status(server.client, "stubborn", "processing")
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    # The grace, the hard deadline of about a second, start-up noise: far from the handler's 40 s.
    assert time.monotonic() - signalled < 1 + 1 + 15
    assert "handlers ignored their cancellation" in server.log

    restarted = servers.start()  # the sleep handler, no delay
    event = wait_for_status(restarted.client, "stubborn", "processed")
    assert event["attempts"] == 1  # the abandoned attempt was released, not counted


def test_a_sync_handler_that_outlives_the_grace_is_abandoned_and_the_process_exits(servers: ServerFactory) -> None:
    """Its thread is not waited for at exit, and a second signal during the drain prints no traceback."""
    server = servers.start(HANDLER="tests.scripted_handlers:scripted_sync", SHUTDOWN_TIMEOUT_S=2)
    server.client.post("/events", json={"event_id": "slow-sync", "payload": {"sleep_s": 40, "sleep_attempts": 1}})
    wait_for_status(server.client, "slow-sync", "processing")
    signalled = time.monotonic()
    server.signal(signal.SIGINT)
    wait_until(lambda: server.client.get("/ready").status_code == 503, timeout=10, message="the drain to start")
    server.signal(signal.SIGINT)
    server.wait(timeout=30)
    assert time.monotonic() - signalled < 2 + 1 + 15  # not the handler's 40 s
    assert "Traceback" not in server.log
    assert "Event loop is closed" not in server.log

    restarted = servers.start()  # the sleep handler, no delay
    event = wait_for_status(restarted.client, "slow-sync", "processed")
    assert event["attempts"] == 1
