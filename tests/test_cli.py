"""The CLI against a real server: every command, ``--json``, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerFactory, ServerProcess, wait_until


def eventctl(
    *args: str, url: str | None = None, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventctl", *args]
    if url is not None:
        command += ["--url", url]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200", **env}
    )


@pytest.fixture(scope="module")
def server(shared_servers: ServerFactory) -> Iterator[ServerProcess]:
    return shared_servers.start(PROCESSING_DELAY_MS=0)


def test_send_prints_the_accepted_event_and_exits_0(server: ServerProcess) -> None:
    result = eventctl("send", "cli_1", "--payload", '{"k": "v"}', url=server.url)
    assert result.returncode == 0, result.stderr
    assert "accepted" in result.stdout
    assert "cli_1" in result.stdout
    assert server.client.get("/events/cli_1").json()["payload"] == {"k": "v"}


def test_send_json_prints_the_service_body_as_it_came(server: ServerProcess) -> None:
    result = eventctl("send", "cli_json", "--json", url=server.url)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"event_id": "cli_json", "status": "accepted"}


def test_send_reads_the_payload_from_a_file_and_from_stdin(server: ServerProcess, tmp_path: Path) -> None:
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"from": "file"}')
    assert eventctl("send", "cli_file", "--payload", f"@{payload_file}", url=server.url).returncode == 0
    assert eventctl("send", "cli_stdin", "--payload", "-", url=server.url, stdin='["from", "stdin"]').returncode == 0
    assert server.client.get("/events/cli_file").json()["payload"] == {"from": "file"}
    assert server.client.get("/events/cli_stdin").json()["payload"] == ["from", "stdin"]


def test_a_duplicate_exits_1_with_one_line_and_json_prints_the_problem(server: ServerProcess) -> None:
    eventctl("send", "cli_dup", url=server.url)
    result = eventctl("send", "cli_dup", url=server.url)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "Conflict" in result.stderr
    as_json = eventctl("send", "cli_dup", "--json", url=server.url)
    assert as_json.returncode == 1
    problem = json.loads(as_json.stdout)
    assert problem["status"] == 409
    assert problem["event_id"] == "cli_dup"


@pytest.mark.parametrize("payload", ["{not json", "@/no/such/file.json"])
def test_an_unusable_payload_is_a_usage_error(server: ServerProcess, payload: str) -> None:
    result = eventctl("send", "cli_bad", "--payload", payload, url=server.url)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert server.client.get("/events/cli_bad").status_code == 404


def test_status_shows_the_event_and_json_gives_every_field(server: ServerProcess) -> None:
    eventctl("send", "cli_status", "--payload", '{"x": 1}', url=server.url)
    wait_until(lambda: server.client.get("/events/cli_status").json()["status"] == "processed")
    table = eventctl("status", "cli_status", url=server.url)
    assert table.returncode == 0
    assert "processed" in table.stdout
    assert "attempts" in table.stdout
    body = json.loads(eventctl("status", "cli_status", "--json", url=server.url).stdout)
    assert body["status"] == "processed"
    assert body["payload"] == {"x": 1}


def test_status_of_an_event_id_with_reserved_characters(server: ServerProcess) -> None:
    assert eventctl("send", "a/b?c#d", url=server.url).returncode == 0
    body = json.loads(eventctl("status", "a/b?c#d", "--json", url=server.url).stdout)
    assert body["event_id"] == "a/b?c#d"


def test_status_of_an_unknown_event_exits_1(server: ServerProcess) -> None:
    result = eventctl("status", "cli_never", url=server.url)
    assert result.returncode == 1
    assert "Not Found" in result.stderr


def test_health_and_ready(server: ServerProcess) -> None:
    health = eventctl("health", url=server.url)
    assert health.returncode == 0
    assert "ok" in health.stdout
    assert json.loads(eventctl("health", "--json", url=server.url).stdout)["status"] == "ok"
    ready = eventctl("ready", url=server.url)
    assert ready.returncode == 0
    assert "ready" in ready.stdout
    assert json.loads(eventctl("ready", "--json", url=server.url).stdout) == {"status": "ready", "ready": True}


def test_the_url_comes_from_eventctl_url(server: ServerProcess) -> None:
    assert eventctl("health", EVENTCTL_URL=server.url).returncode == 0


def test_ready_exits_1_while_the_server_drains(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=60_000, SHUTDOWN_TIMEOUT_S=30)
    server.client.post("/events", json={"event_id": "busy"})
    wait_until(lambda: server.client.get("/events/busy").json()["status"] == "processing")
    server.signal(signal.SIGTERM)
    wait_until(lambda: server.client.get("/ready").status_code == 503)
    result = eventctl("ready", url=server.url)
    assert result.returncode == 1
    assert "not ready" in result.stderr
    as_json = eventctl("ready", "--json", url=server.url)
    assert json.loads(as_json.stdout) == {"status": "not ready", "ready": False}


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["health"], ["ready"], ["status", "x"], ["send", "x"]])
def test_an_unreachable_server_exits_3_with_one_line_and_no_traceback(command: list[str]) -> None:
    result = eventctl(*command, url=f"http://127.0.0.1:{_unused_port()}")
    assert result.returncode == 3
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "ServiceUnreachable" in result.stderr


def test_a_server_that_does_not_answer_in_time_exits_3() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        result = eventctl("health", "--timeout", "0.5", url=f"http://127.0.0.1:{silent.getsockname()[1]}")
    assert result.returncode == 3
    assert "in time" in result.stderr


def test_missing_arguments_are_usage_errors() -> None:
    assert eventctl("send").returncode == 2
    assert eventctl("status").returncode == 2
    assert eventctl("nonsense").returncode == 2


def test_help_does_not_import_the_server_stack() -> None:
    probe = "import sys, eventctl.cli; sys.exit(int(any(m in sys.modules for m in ('fastapi', 'uvicorn'))))"
    assert subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 0
