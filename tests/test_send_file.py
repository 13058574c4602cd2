"""``eventctl send --file`` against real servers: imports that finish, can be stopped and resumed to exit 0,
wait out rate limits without losing a line, stop at once when the service cannot be reached, and send
everything before following anything."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import ServerFactory, ServerProcess, wait_until
from tests.net import silent_port, unused_port
from tests.test_cli import eventctl


def write_events(path: Path, count: int, prefix: str) -> Path:
    path.write_text("".join(json.dumps({"event_id": f"{prefix}{i}", "payload": {"i": i}}) + "\n" for i in range(count)))
    return path


def stored_count(server: ServerProcess, prefix: str) -> int:
    """How many events with ids starting with ``prefix`` the server holds."""
    count, cursor = 0, None
    while True:
        params: dict[str, str | int] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = server.client.get("/events", params=params).json()
        count += sum(bool(item["event_id"].startswith(prefix)) for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return count


def accepted_total(server: ServerProcess) -> float:
    match = re.search(r"^eventctl_events_accepted_total (\S+)$", server.client.get("/metrics").text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def server(servers: ServerFactory) -> ServerProcess:
    return servers.start(DATABASE_URL="memory://")


def test_running_an_import_again_exits_0_with_every_line_already_stored(server: ServerProcess, tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 300, "again_")
    first = eventctl("send", "--file", str(events), "--batch-size", "100", url=server.url)
    assert first.returncode == 0, first.stderr
    again = eventctl("send", "--file", str(events), "--batch-size", "100", "--json", url=server.url)
    assert again.returncode == 0, again.stderr
    outcomes = {json.loads(line)["outcome"] for line in again.stdout.splitlines()}
    assert outcomes == {"already stored"}
    assert stored_count(server, "again_") == 300


def test_an_import_goes_in_batches_of_batch_size(server: ServerProcess, tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 250, "batched_")
    result = eventctl("send", "--file", str(events), "--batch-size", "100", url=server.url)
    assert result.returncode == 0, result.stderr
    assert stored_count(server, "batched_") == 250
    metrics = server.client.get("/metrics").text
    assert 'eventctl_http_requests_total{method="POST",route="/events/batch",status="200"} 3.0' in metrics
    assert 'route="/events",status="202"' not in metrics  # no event went alone


def test_the_default_batch_size_is_500(server: ServerProcess, tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 501, "default_size_")
    assert eventctl("send", "--file", str(events), url=server.url).returncode == 0
    metrics = server.client.get("/metrics").text
    assert 'eventctl_http_requests_total{method="POST",route="/events/batch",status="200"} 2.0' in metrics


def test_an_import_stopped_with_ctrl_c_says_how_far_it_got_and_resumes_to_exit_0(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """The rate limit keeps the import going long enough to be interrupted; SIGINT is what Ctrl-C sends."""
    server = servers.start(DATABASE_URL="memory://", RATE_LIMIT="200/s")
    lines = 3_000
    events = write_events(tmp_path / "events.jsonl", lines, "resume_")
    command = [sys.executable, "-m", "eventctl", "send", "--file", str(events), "--url", server.url]
    importing = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: accepted_total(server) >= 300, timeout=60, message="the import to be under way")
        importing.send_signal(signal.SIGINT)
        stdout, stderr = importing.communicate(timeout=60)
    finally:
        importing.kill()
    assert importing.returncode == 130, stderr
    assert "Traceback" not in stderr
    interrupted = re.search(
        r"Interrupted: ([\d,]+) of 3,000 lines sent: ([\d,]+) accepted, ([\d,]+) already stored, 0 refused;"
        r" resume with --from-line (\d+)",
        stderr,
    )
    assert interrupted, stderr
    sent, accepted, resume_line = (int(interrupted.group(i).replace(",", "")) for i in (1, 2, 4))
    assert 0 < sent == accepted < lines
    assert resume_line <= sent + 1  # the first line not known to be stored; later ones may be
    assert "accepted" in stdout  # the summary table, as far as it got
    assert "not sent" in stdout
    resumed = eventctl("send", "--file", str(events), "--from-line", str(resume_line), url=server.url)
    assert resumed.returncode == 0, resumed.stderr
    whole_again = eventctl("send", "--file", str(events), url=server.url)
    assert whole_again.returncode == 0, whole_again.stderr
    assert stored_count(server, "resume_") == lines


def test_a_rate_limited_import_waits_and_loses_no_line(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(DATABASE_URL="memory://", RATE_LIMIT="20/s")
    events = write_events(tmp_path / "events.jsonl", 60, "limited_")
    result = eventctl("send", "--file", str(events), "--json", url=server.url)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["outcome"] for line in result.stdout.splitlines()] == ["accepted"] * 60
    assert 'status="429"' in server.client.get("/metrics").text  # it was refused, and waited
    assert stored_count(server, "limited_") == 60


def test_an_import_to_a_closed_port_stops_at_once_with_one_line(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 2_000, "closed_")
    result = eventctl("send", "--file", str(events), url=f"http://127.0.0.1:{unused_port()}")
    assert result.returncode == 3
    unreachable = [line for line in result.stderr.splitlines() if "ServiceUnreachable" in line]
    assert len(unreachable) == 1
    assert "0 of 2,000 lines sent" in unreachable[0]
    assert "resume with --from-line 1" in unreachable[0]
    assert "Traceback" not in result.stderr


def test_an_import_to_a_port_that_never_answers_costs_one_timeout_not_one_per_line(tmp_path: Path) -> None:
    """2,000 lines at a 1 s timeout: one timeout per line would take minutes; the bound is far below that."""
    events = write_events(tmp_path / "events.jsonl", 2_000, "silent_")
    with silent_port() as port:
        started = time.monotonic()
        result = eventctl("send", "--file", str(events), "--timeout", "1", url=f"http://127.0.0.1:{port}")
        took = time.monotonic() - started
    assert result.returncode == 3
    assert "did not answer in time" in result.stderr
    assert result.stderr.count("ServiceUnreachable") == 1
    assert took < 45  # generous: a slow machine still starts Python in a few seconds


def test_wait_sends_every_event_before_following_any(servers: ServerFactory, tmp_path: Path) -> None:
    """With a 3 s handler, an import that waited for each event before sending the next would receive later
    events after earlier ones were processed; sending first, every event arrives before the first finishes."""
    server = servers.start(DATABASE_URL="memory://", PROCESSING_DELAY_MS=3000)
    events = write_events(tmp_path / "events.jsonl", 80, "waited_")
    result = eventctl("send", "--file", str(events), "--wait", "--json", url=server.url)
    assert result.returncode == 0, result.stderr
    followed = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["outcome"] for line in followed} == {"processed"}
    received = [datetime.fromisoformat(line["event"]["received_at"]) for line in followed]
    processed = [datetime.fromisoformat(line["event"]["processed_at"]) for line in followed]
    assert max(received) < min(processed)


def test_the_progress_bar_shows_a_rate_and_an_eta_on_a_terminal(server: ServerProcess, tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 50, "bar_")
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "eventctl", "send", "--file", str(events), "--url", server.url]
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=terminal, env=env)
    os.close(terminal)
    shown = b""
    try:
        while chunk := _read(controller):
            shown += chunk
        assert process.wait(timeout=60) == 0
    finally:
        os.close(controller)
        process.kill()
    text = shown.decode("utf-8", "replace")
    assert "50/50" in text
    assert re.search(r"[\d,]+/s", text), text
    assert "ETA" in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the other end closed: the process is done with its terminal
        return b""
