"""An operator sees what the service does (SPEC §9): logs, metrics, traces and a live view, checked on real
servers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import SCRIPTED, ServerFactory, ServerProcess, wait_for_status, wait_until

MARKER = "PAYLOAD-MARKER-7f3a"


def json_lines(server: ServerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log.splitlines() if line.startswith("{")]


def test_json_logs_carry_the_request_id_and_the_worker_lines_the_event_and_attempt(servers: ServerFactory) -> None:
    server = servers.start(
        DATABASE_URL="memory://", HANDLER=SCRIPTED, LOG_FORMAT="json", LOG_LEVEL="debug",
        MAX_ATTEMPTS=2, RETRY_BACKOFF_MS=10, RETRY_BACKOFF_MAX_MS=10,
    )  # fmt: skip
    response = server.client.post(
        "/events",
        json={"event_id": "logged", "payload": {"fail_times": 1, "secret": MARKER}},
        headers={"X-Request-ID": "req-from-client-42"},
    )
    assert response.headers["x-request-id"] == "req-from-client-42"
    made = {server.client.get("/health").headers["x-request-id"] for _ in range(3)}  # made when none was sent
    assert len(made) == 3
    assert all(made)
    wait_for_status(server.client, "logged", "processed")

    lines = json_lines(server)
    assert lines, "no JSON log lines"
    request_lines = [line for line in lines if line.get("request_id") == "req-from-client-42"]
    assert any(line["logger"] == "eventctl.access" and line.get("event_id") == "logged" for line in request_lines)
    worker_lines = [line for line in lines if line["logger"] == "eventctl.worker"]
    assert any(line.get("event_id") == "logged" and line.get("attempt") == 1 for line in worker_lines)
    assert MARKER not in server.log  # payloads are never logged


def test_console_logs_in_dev_are_readable_lines(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://")
    server.client.post("/events", json={"event_id": "plain"}, headers={"X-Request-ID": "abc"})
    wait_until(lambda: "POST /events 202" in server.log, message="the access line")
    line = next(line for line in server.log.splitlines() if "POST /events 202" in line)
    assert "request_id=abc" in line
    assert "event_id=plain" in line


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_counters_read_exactly_what_happened(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://", HANDLER=SCRIPTED, MAX_ATTEMPTS=1)
    accepted, duplicates, failing = 7, 3, 2
    for i in range(accepted):
        payload = {"permanent": True} if i < failing else {}
        server.client.post("/events", json={"event_id": f"c{i}", "payload": payload})
    for i in range(duplicates):
        assert server.client.post("/events", json={"event_id": f"c{i}"}).status_code == 409
    for i in range(accepted):
        wait_for_status(server.client, f"c{i}", "processed", "failed")
    text = server.client.get("/metrics").text
    assert metric(text, "eventctl_events_accepted_total") == accepted
    assert metric(text, "eventctl_events_duplicate_total") == duplicates
    assert metric(text, "eventctl_events_processed_total") == accepted - failing
    assert metric(text, "eventctl_events_failed_total") == failing
    assert metric(text, "eventctl_http_requests_total", method="POST", route="/events", status="409") == duplicates
    assert metric(text, "eventctl_event_processing_duration_seconds_count", outcome="processed") == accepted - failing


def test_queue_gauges_match_the_store(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://", PROCESSING_DELAY_MS=600_000, WORKER_CONCURRENCY=2)
    for i in range(6):
        server.client.post("/events", json={"event_id": f"q{i}"})

    def gauges_match() -> bool:
        text = server.client.get("/metrics").text
        counts = {
            status: len(server.client.get("/events", params={"status": status}).json()["items"])
            for status in ("accepted", "processing")
        }
        return counts == {"accepted": 4, "processing": 2} and all(
            metric(text, "eventctl_queue_events", status=status) == count for status, count in counts.items()
        )

    wait_until(gauges_match, message="the queue gauges to match the store")
    text = server.client.get("/metrics").text
    assert metric(text, "eventctl_queue_oldest_waiting_age_seconds") > 0


def test_metrics_pass_promtool(servers: ServerFactory, tmp_path: object) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed; CI must run this check")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    server = servers.start(DATABASE_URL="memory://", PROCESSING_DELAY_MS=0)
    server.client.post("/events", json={"event_id": "m"})
    server.client.get("/events/m")
    server.client.get("/nowhere")
    text = server.client.get("/metrics").text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


SPAN = re.compile(r'"name": "([^"]+)",\s*"context": \{\s*"trace_id": "0x([0-9a-f]{32})"')


@pytest.mark.parametrize("incoming_trace", [None, "0af7651916cd43dd8448eb211c80319c"])
def test_processing_joins_the_trace_of_the_request_that_accepted_it(
    servers: ServerFactory, incoming_trace: str | None
) -> None:
    server = servers.start(DATABASE_URL="memory://", OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="test")
    headers = {"traceparent": f"00-{incoming_trace}-b7ad6b7169203331-01"} if incoming_trace else {}
    server.client.post("/events", json={"event_id": "traced"}, headers=headers)
    wait_for_status(server.client, "traced", "processed")
    server.signal(signal.SIGTERM)  # the exporter flushes at shutdown
    assert server.wait(timeout=30) == 0
    spans = SPAN.findall(server.log)
    request_traces = {trace for name, trace in spans if name == "POST /events"}
    processing_traces = {trace for name, trace in spans if name == "process event"}
    assert len(request_traces) == 1
    assert processing_traces == request_traces
    if incoming_trace:
        assert request_traces == {incoming_trace}


def test_without_otel_settings_the_tracing_sdk_is_never_loaded() -> None:
    """Tracing costs nothing unless asked for. (FastAPI itself imports the OpenTelemetry *API* when it is
    installed; the SDK, which the otel extra brings and eventctl drives, must stay out.)"""
    probe = (
        "import sys;"
        "from eventctl.api import create_app; from eventctl.settings import Settings;"
        "create_app(Settings.load({'DATABASE_URL': 'memory://'}));"
        "sys.exit(int(any(name.startswith('opentelemetry.sdk') for name in sys.modules)))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    assert subprocess.run([sys.executable, "-c", probe], env=env, timeout=60).returncode == 0


def test_top_once_shows_the_queue_the_store_holds(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://", PROCESSING_DELAY_MS=600_000, WORKER_CONCURRENCY=1)
    for i in range(4):
        server.client.post("/events", json={"event_id": f"top{i}"})
    wait_until(lambda: metric(server.client.get("/metrics").text, "eventctl_queue_events", status="accepted") == 3)
    command = [sys.executable, "-m", "eventctl", "top", "--once", "--interval", "0.2", "--url", server.url]
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    frame = json.loads(as_json.stdout)
    assert frame["queue"] == {"accepted": 3, "processing": 1, "retrying": 0, "failed": 0}
    assert frame["totals"]["accepted"] == 4
    table = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert table.returncode == 0
    assert re.search(r"queue accepted\s*│\s*3", table.stdout)
