"""Real ``eventctl serve`` processes on free ports, with their own SQLite files, cleaned up after each test."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres_support import pg_url, private_postgres

__all__ = ["pg_url", "private_postgres"]  # fixtures, made visible to every test module

ROOT = Path(__file__).parent.parent
STARTUP_TIMEOUT_SECONDS = 30
SCRIPTED = "tests.scripted_handlers:scripted"  # see tests/scripted_handlers.py
LISTENING = re.compile(r"eventctl listening on (http://[\w.:\[\]-]+)")
# Under coverage (``[tool.coverage.run] patch = ["subprocess"]`` sets this variable), servers still running at
# the end of a test are stopped with SIGTERM, so that they write their coverage data; otherwise with SIGKILL.
MEASURING_COVERAGE = "COVERAGE_PROCESS_CONFIG" in os.environ
GRACEFUL_STOP_SECONDS = 20  # the default SHUTDOWN_TIMEOUT_S, and time for the listener to close


SettingValue = str | int | float | Path  # a setting as the test writes it; the server gets str(value)


@dataclass
class ServerProcess:
    """One running ``eventctl serve``; its log goes to a file so a full pipe can never stall it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    url: str = ""
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=10)
        return self._client

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, as in a crash."""
        self.process.kill()
        self.process.wait(timeout=10)

    def wait_listening(self) -> None:
        """Wait until the server listens, and take its URL: for servers started with ``wait_ready=False``,
        so that several start at once."""
        self.url = _wait_for_listening(self)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.process.poll() is None and MEASURING_COVERAGE:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=GRACEFUL_STOP_SECONDS)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class ServerFactory:
    """Starts servers; every setting is passed as its environment variable, as a user would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.database_url = f"sqlite:///{directory / 'events.db'}"
        self._started: list[ServerProcess] = []

    def start(self, wait_ready: bool = True, **settings: SettingValue) -> ServerProcess:
        return self.start_with(settings, wait_ready=wait_ready)

    def start_with(self, settings: Mapping[str, SettingValue], *, wait_ready: bool = True) -> ServerProcess:
        """``start``, for settings gathered in a mapping."""
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "DATABASE_URL": self.database_url,
            "PROCESSING_DELAY_MS": "0",
            "LOG_LEVEL": "info",
            # so that HANDLER=tests.scripted_handlers:... imports from the server's temporary directory
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.update({key: str(value) for key, value in settings.items()})
        log_path = self.directory / f"server-{len(self._started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "eventctl", "serve"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        server = ServerProcess(process, log_path, env)
        self._started.append(server)
        if wait_ready:
            server.wait_listening()
        return server

    def close(self) -> None:
        for server in self._started:
            server.close()


def _wait_for_listening(server: ServerProcess) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        match = LISTENING.search(server.log)
        if match:
            return match.group(1)
        if server.process.poll() is not None:
            pytest.fail(f"eventctl serve exited with {server.process.returncode}:\n{server.log}")
        time.sleep(0.05)
    pytest.fail(f"eventctl serve did not start within {STARTUP_TIMEOUT_SECONDS}s:\n{server.log}")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def shared_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """For tests that only read or add distinct events: one server start per module."""
    factory = ServerFactory(tmp_path_factory.mktemp("server"))
    yield factory
    factory.close()


def wait_until(condition: Callable[[], bool], timeout: float = 30, message: str = "condition") -> None:
    """Poll ``condition``; generous timeouts keep this from flaking on a busy machine."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.05)


def event_status(client: httpx.Client, event_id: str) -> str | None:
    response = client.get(f"/events/{event_id}")
    return response.json()["status"] if response.status_code == 200 else None


def wait_for_status(client: httpx.Client, event_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
    """Poll until the event has one of ``statuses``; return it."""
    wait_until(lambda: event_status(client, event_id) in statuses, timeout, f"{event_id} to be {'/'.join(statuses)}")
    event: dict[str, Any] = client.get(f"/events/{event_id}").json()
    return event


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
