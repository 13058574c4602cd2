"""An operator sees what the service does (SPEC §9): logs and metrics from the real app in process; traces
(flushed at shutdown) and the live view on real servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import SCRIPTED, ServerFactory
from tests.conftest import wait_for_status as wait_for_server_status
from tests.conftest import wait_until as wait_until_on_server
from tests.inprocess import running_app, server_logging, test_settings, wait_for_status, wait_until
from tests.tools import unavailable

pytestmark = pytest.mark.anyio

MARKER = "PAYLOAD-MARKER-7f3a"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_json_logs_carry_the_request_id_and_the_worker_lines_the_event_and_attempt(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = test_settings(
        handler=SCRIPTED, log_format="json", log_level="debug", max_attempts=2, retry_backoff_ms=10,
        retry_backoff_max_ms=10,
    )  # fmt: skip
    with server_logging(settings):
        async with running_app(settings) as running:
            client = running.client
            response = await client.post(
                "/events",
                json={"event_id": "logged", "payload": {"fail_times": 1, "secret": MARKER}},
                headers={"X-Request-ID": "req-from-client-42"},
            )
            assert response.headers["x-request-id"] == "req-from-client-42"
            made = {(await client.get("/health")).headers["x-request-id"] for _ in range(3)}  # made when none was sent
            assert len(made) == 3
            assert all(made)
            await wait_for_status(client, "logged", "processed")
    log = capsys.readouterr().err

    lines = json_lines(log)
    assert lines, "no JSON log lines"
    request_lines = [line for line in lines if line.get("request_id") == "req-from-client-42"]
    assert any(line["logger"] == "eventctl.access" and line.get("event_id") == "logged" for line in request_lines)
    worker_lines = [line for line in lines if line["logger"] == "eventctl.worker"]
    assert any(line.get("event_id") == "logged" and line.get("attempt") == 1 for line in worker_lines)
    assert MARKER not in log  # payloads are never logged


async def test_console_logs_in_dev_are_readable_lines(capsys: pytest.CaptureFixture[str]) -> None:
    settings = test_settings(env="dev")
    with server_logging(settings):
        async with running_app(settings) as running:
            await running.client.post("/events", json={"event_id": "plain"}, headers={"X-Request-ID": "abc"})
    line = next(line for line in capsys.readouterr().err.splitlines() if "POST /events 202" in line)
    assert "request_id=abc" in line
    assert "event_id=plain" in line


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_counters_read_exactly_what_happened() -> None:
    async with running_app(handler=SCRIPTED, max_attempts=1) as running:
        client = running.client
        accepted, duplicates, failing = 7, 3, 2
        for i in range(accepted):
            payload = {"permanent": True} if i < failing else {}
            await client.post("/events", json={"event_id": f"c{i}", "payload": payload})
        for i in range(duplicates):
            assert (await client.post("/events", json={"event_id": f"c{i}"})).status_code == 409
        for i in range(accepted):
            await wait_for_status(client, f"c{i}", "processed", "failed")
        text = (await client.get("/metrics")).text
    assert metric(text, "eventctl_events_accepted_total") == accepted
    assert metric(text, "eventctl_events_duplicate_total") == duplicates
    assert metric(text, "eventctl_events_processed_total") == accepted - failing
    assert metric(text, "eventctl_events_failed_total") == failing
    assert metric(text, "eventctl_http_requests_total", method="POST", route="/events", status="409") == duplicates
    assert metric(text, "eventctl_event_processing_duration_seconds_count", outcome="processed") == accepted - failing


async def test_queue_gauges_match_the_store() -> None:
    async with running_app(processing_delay_ms=600_000, worker_concurrency=2, shutdown_timeout_s=0) as running:
        client = running.client
        for i in range(6):
            await client.post("/events", json={"event_id": f"q{i}"})

        async def gauges_match() -> bool:
            text = (await client.get("/metrics")).text
            counts = {
                status: len((await client.get("/events", params={"status": status})).json()["items"])
                for status in ("accepted", "processing")
            }
            return counts == {"accepted": 4, "processing": 2} and all(
                metric(text, "eventctl_queue_events", status=status) == count for status, count in counts.items()
            )

        await wait_until(gauges_match, message="the queue gauges to match the store")
        text = (await client.get("/metrics")).text
    assert metric(text, "eventctl_queue_oldest_waiting_age_seconds") > 0


async def test_metrics_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    async with running_app() as running:
        client = running.client
        await client.post("/events", json={"event_id": "m"})
        await client.get("/events/m")
        await client.get("/nowhere")
        text = (await client.get("/metrics")).text
    result = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


SPAN = re.compile(r'"name": "([^"]+)",\s*"context": \{\s*"trace_id": "0x([0-9a-f]{32})"')


def test_processing_joins_the_trace_of_the_request_that_accepted_it(servers: ServerFactory) -> None:
    """Two events: one posted without a trace (the request starts one), one joining the caller's trace."""
    incoming_trace = "0af7651916cd43dd8448eb211c80319c"
    server = servers.start(DATABASE_URL="memory://", OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="test")
    server.client.post("/events", json={"event_id": "traced"})
    headers = {"traceparent": f"00-{incoming_trace}-b7ad6b7169203331-01"}
    server.client.post("/events", json={"event_id": "joined"}, headers=headers)
    wait_for_server_status(server.client, "traced", "processed")
    wait_for_server_status(server.client, "joined", "processed")
    server.signal(signal.SIGTERM)  # the exporter flushes at shutdown
    assert server.wait(timeout=30) == 0
    spans = SPAN.findall(server.log)
    request_traces = {trace for name, trace in spans if name == "POST /events"}
    processing_traces = {trace for name, trace in spans if name == "process event"}
    assert len(request_traces) == 2
    assert incoming_trace in request_traces
    assert processing_traces == request_traces


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
    wait_until_on_server(
        lambda: metric(server.client.get("/metrics").text, "eventctl_queue_events", status="accepted") == 3
    )
    command = [sys.executable, "-m", "eventctl", "top", "--once", "--interval", "0.2", "--url", server.url]
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    frame = json.loads(as_json.stdout)
    assert frame["queue"] == {"accepted": 3, "processing": 1, "retrying": 0, "failed": 0}
    assert frame["totals"]["accepted"] == 4
    table = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert table.returncode == 0
    assert re.search(r"queue accepted\s*│\s*3", table.stdout)
