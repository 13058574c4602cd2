"""Scheduled events through the API (SPEC §12): with a real ``eventctl serve``, a delay is never run early
and is run on time, also when the server is killed and restarted in between; in process, a bad schedule or
key is a 400 naming the field."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.conftest import SCRIPTED, ServerFactory, wait_for_status
from tests.inprocess import running_app

# How late a scheduled event may start here: the worker's wake-up is exact, the rest is a busy machine's
# slack. A worker that missed the wake-up would start it only at its idle cap, the lease (30 s by default).
ON_TIME_SECONDS = 5.0


def started_at(log: Path, event_id: str) -> float:
    entries = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    [entry] = [entry for entry in entries if entry["event_id"] == event_id]
    start: float = entry["time"]
    return start


def test_a_delay_is_never_run_early_and_is_run_on_time_even_across_a_restart(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "attempts.jsonl"
    server = servers.start(HANDLER=SCRIPTED, ATTEMPT_LOG=str(log))
    sent = time.time()
    deliver_at = datetime.now(UTC) + timedelta(seconds=4)
    assert server.client.post("/events", json={"event_id": "delayed", "delay_ms": 1500}).status_code == 202
    body = {"event_id": "at-time", "deliver_at": deliver_at.isoformat()}
    assert server.client.post("/events", json=body).status_code == 202
    waiting = server.client.get("/events/at-time").json()
    assert waiting["status"] == "accepted"
    assert datetime.fromisoformat(waiting["next_attempt_at"].replace("Z", "+00:00")) == deliver_at
    wait_for_status(server.client, "delayed", "processed")
    assert sent + 1.5 <= started_at(log, "delayed") < sent + 1.5 + ON_TIME_SECONDS

    server.kill()  # the other one is still ahead: it is a row, not a timer, and outlives the process
    restarted = servers.start(HANDLER=SCRIPTED, ATTEMPT_LOG=str(log))
    wait_for_status(restarted.client, "at-time", "processed")
    start = started_at(log, "at-time")
    assert deliver_at.timestamp() <= start < deliver_at.timestamp() + ON_TIME_SECONDS


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delay_ms": -1}, "delay_ms"),
        ({"delay_ms": "soon"}, "delay_ms"),
        ({"delay_ms": 366 * 86_400_000}, "delay_ms"),
        ({"deliver_at": "tomorrow"}, "deliver_at"),
        ({"deliver_at": "2030-01-01T00:00:00"}, "deliver_at"),  # no offset
        ({"deliver_at": "2026-01-01T00:00:00Z", "delay_ms": 5}, "delay_ms"),
        ({"ordering_key": ""}, "ordering_key"),
        ({"ordering_key": 7}, "ordering_key"),
        ({"ordering_key": "a\nb"}, "ordering_key"),
    ],
)
@pytest.mark.anyio
async def test_a_bad_schedule_or_key_is_a_400_naming_the_field(body: dict[str, object], field: str) -> None:
    async with running_app() as running:
        response = await running.client.post("/events", json={"event_id": f"bad-{field}", **body})
        assert (await running.client.get(f"/events/bad-{field}")).status_code == 404  # nothing was stored
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["pointer"] for error in response.json()["errors"]] == [f"#/{field}"]
