"""The CLI against a real server: every command, ``--json``, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SCRIPTED, ServerFactory, ServerProcess, wait_for_status, wait_until


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
def server(shared_servers: ServerFactory) -> ServerProcess:
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


@pytest.fixture(scope="module")
def scripted_server(shared_servers: ServerFactory) -> ServerProcess:
    return shared_servers.start(
        DATABASE_URL="memory://", HANDLER=SCRIPTED, MAX_ATTEMPTS=2, RETRY_BACKOFF_MS=10, RETRY_BACKOFF_MAX_MS=10
    )


def test_send_wait_follows_the_event_to_processed_and_exits_0(scripted_server: ServerProcess) -> None:
    result = eventctl("send", "w_ok", "--payload", '{"fail_times": 1}', "--wait", url=scripted_server.url)
    assert result.returncode == 0, result.stderr
    assert "processed" in result.stdout
    as_json = eventctl("send", "w_ok_json", "--wait", "--json", url=scripted_server.url)
    assert json.loads(as_json.stdout)["status"] == "processed"


def test_send_wait_exits_1_when_the_event_fails(scripted_server: ServerProcess) -> None:
    result = eventctl("send", "w_bad", "--payload", '{"permanent": true}', "--wait", url=scripted_server.url)
    assert result.returncode == 1
    assert "failed" in result.stdout
    assert "PermanentError" in result.stdout


def test_events_lists_newest_first_and_filters_by_status(scripted_server: ServerProcess) -> None:
    for name in ("l_one", "l_two"):
        eventctl("send", name, "--payload", '{"permanent": true}', "--wait", url=scripted_server.url)
    listed = json.loads(eventctl("events", "--status", "failed", "--json", url=scripted_server.url).stdout)
    ids = [item["event_id"] for item in listed["items"]]
    assert ids.index("l_two") < ids.index("l_one")
    assert {item["status"] for item in listed["items"]} == {"failed"}
    table = eventctl("events", "--status", "failed", "--limit", "1", url=scripted_server.url)
    assert table.returncode == 0
    assert "failed" in table.stdout
    assert "--cursor" in table.stdout
    assert eventctl("events", "--status", "bogus", url=scripted_server.url).returncode == 1


def test_replay_puts_a_failed_event_back_and_refuses_others(scripted_server: ServerProcess, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    payload = json.dumps({"fail_unless_exists": str(fixed)})
    eventctl("send", "r_one", "--payload", payload, "--wait", url=scripted_server.url)
    fixed.touch()
    result = eventctl("replay", "r_one", url=scripted_server.url)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: scripted_server.client.get("/events/r_one").json()["status"] == "processed")
    again = eventctl("replay", "r_one", "--json", url=scripted_server.url)
    assert again.returncode == 1
    assert json.loads(again.stdout)["event_status"] == "processed"
    assert eventctl("replay", url=scripted_server.url).returncode == 2


def test_replay_all_failed_replays_every_failed_event(scripted_server: ServerProcess, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    payload = json.dumps({"fail_unless_exists": str(fixed)})
    for i in range(3):
        eventctl("send", f"ra_{i}", "--payload", payload, "--wait", url=scripted_server.url)
    fixed.touch()
    result = eventctl("replay", "--all-failed", "--json", url=scripted_server.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["replayed"] >= 3
    for i in range(3):
        wait_for_status(scripted_server.client, f"ra_{i}", "processed")


def test_send_file_reports_a_malformed_line_by_number_and_sends_the_rest(
    scripted_server: ServerProcess, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    eventctl("send", "file_sent_before", url=scripted_server.url)
    events.write_text(
        '{"event_id": "file_1", "payload": {"n": 1}}\n'
        "\n"
        "{this is not json\n"
        '{"event_id": "file_2"}\n'
        '{"payload": "no id"}\n'
        '{"event_id": "file_sent_before"}\n'
    )
    result = eventctl("send", "--file", str(events), url=scripted_server.url)
    assert result.returncode == 1
    assert "line 3" in result.stderr
    assert "line 5" in result.stderr
    assert "line 6" in result.stderr
    assert "Traceback" not in result.stderr
    assert "accepted" in result.stdout
    assert "malformed" in result.stdout
    for event_id in ("file_1", "file_2"):
        assert scripted_server.client.get(f"/events/{event_id}").status_code == 200


def test_send_file_with_wait_and_json_gives_one_line_per_event(scripted_server: ServerProcess, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(f'{{"event_id": "fw_{i}", "payload": {{"fail_times": 1}}}}\n' for i in range(20)))
    result = eventctl("send", "--file", str(events), "--wait", "--json", url=scripted_server.url)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["line"] for line in lines] == list(range(1, 21))
    assert {line["outcome"] for line in lines} == {"processed"}
    assert {line["body"]["attempts"] for line in lines} == {2}
