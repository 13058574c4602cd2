"""Filters, delete, bulk actions and attempts from the outside (SPEC §11, §12, §14): the Python client and
the CLI against one real server (SQLite)."""

from __future__ import annotations

import json

import pytest

from eventctl.client import BadRequest, BulkResult, Client, Conflict, NotFound
from tests.conftest import SCRIPTED, ServerFactory, ServerProcess, wait_for_status, wait_until
from tests.test_cli import eventctl


@pytest.fixture(scope="module")
def server(shared_servers: ServerFactory) -> ServerProcess:
    return shared_servers.start(HANDLER=SCRIPTED, MAX_ATTEMPTS=2, RETRY_BACKOFF_MS=0, RETRY_BACKOFF_MAX_MS=0)


def seed_failed(server: ServerProcess, prefix: str, count: int, error: str = "timeout") -> list[str]:
    """``count`` events that fail for good: permanent ones (``error`` ``permanent``) or after their attempts
    (``scripted failure``)."""
    ids = [f"{prefix}{i}" for i in range(count)]
    payload = {"permanent": True} if error == "permanent" else {"fail_times": 9}
    for event_id in ids:
        assert server.client.post("/events", json={"event_id": event_id, "payload": payload}).status_code == 202
    for event_id in ids:
        wait_for_status(server.client, event_id, "failed")
    return ids


def seed_processed(server: ServerProcess, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(count)]
    for event_id in ids:
        server.client.post("/events", json={"event_id": event_id})
    for event_id in ids:
        wait_for_status(server.client, event_id, "processed")
    return ids


def test_the_client_filters_lists_and_bulk_acts(server: ServerProcess) -> None:
    seed_failed(server, "lib_f_", 3)
    seed_failed(server, "lib_p_", 2, error="permanent")
    seed_processed(server, "lib_ok_", 2)
    with Client(server.url) as client:
        assert sorted(e.event_id for e in client.events(id_prefix="lib_", status="failed", error="SCRIPTED")) == [
            "lib_f_0",
            "lib_f_1",
            "lib_f_2",
        ]
        assert len(list(client.events(id_prefix="lib_", status=["failed", "processed"], since="1h"))) == 7
        assert list(client.events(id_prefix="lib_", until="1h")) == []
        with pytest.raises(BadRequest) as bad:
            client.events_page(since="tomorrow")
        assert "#/query/since" in str(bad.value)
        dry = client.bulk("replay", dry_run=True, id_prefix="lib_", error="can never")
        assert dry == BulkResult("replay", 2, 0, True)
        assert client.bulk("replay", id_prefix="lib_", error="can never") == BulkResult("replay", 2, 2, False)
        for event_id in ("lib_p_0", "lib_p_1"):
            assert client.wait(event_id).status == "failed"
            assert [attempt.outcome for attempt in client.attempts(event_id)] == ["failed", "failed"]
        deleted = client.bulk("delete", id_prefix="lib_", status=["processed", "accepted"])
        assert (deleted.matched, deleted.changed) == (2, 2)  # an accepted event is never deleted in bulk
        client.delete("lib_f_0")
        with pytest.raises(NotFound):
            client.delete("lib_f_0")
        with pytest.raises(BadRequest):
            client.bulk("purge")
    assert server.client.post("/events", json={"event_id": "lib_f_0"}).status_code == 202  # the id is free


def test_the_client_cannot_delete_a_processing_event(server: ServerProcess) -> None:
    server.client.post("/events", json={"event_id": "lib_busy", "payload": {"sleep_s": 30, "sleep_attempts": 1}})
    wait_for_status(server.client, "lib_busy", "processing")
    with Client(server.url) as client, pytest.raises(Conflict) as busy:
        client.delete("lib_busy")
    assert busy.value.problem["event_status"] == "processing"


def test_cli_events_takes_every_filter(server: ServerProcess) -> None:
    seed_failed(server, "cli_ev_", 2)
    server.client.post("/events", json={"event_id": "cli_ev_keyed", "ordering_key": "cli-key", "delay_ms": 3_600_000})
    args = ["events", "--id-prefix", "cli_ev_", "--status", "failed", "--status", "accepted", "--since", "1h"]
    result = eventctl(*args, "--json", url=server.url)
    assert result.returncode == 0, result.stderr
    assert sorted(item["event_id"] for item in json.loads(result.stdout)["items"]) == [
        "cli_ev_0",
        "cli_ev_1",
        "cli_ev_keyed",
    ]
    keyed = eventctl("events", "--ordering-key", "cli-key", "--error", "nothing", "--until", "0", url=server.url)
    assert keyed.returncode == 0, keyed.stderr
    assert "cli_ev_keyed" not in keyed.stdout
    table = eventctl("events", "--ordering-key", "cli-key", url=server.url)
    assert "cli_ev_keyed" in table.stdout


def test_cli_a_bad_filter_names_its_parameter(server: ServerProcess) -> None:
    result = eventctl("events", "--since", "last week", "--ordering-key", "a\tb", url=server.url)
    assert result.returncode == 1
    assert "#/query/since" in result.stderr
    assert "#/query/ordering_key" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_cli_replay_by_filter_asks_with_the_count_and_can_be_declined(server: ServerProcess) -> None:
    seed_failed(server, "cli_rp_", 3)
    declined = eventctl("replay", "--id-prefix", "cli_rp_", "--error", "scripted", url=server.url, stdin="n\n")
    assert declined.returncode == 1
    assert "Replay 3 failed events?" in declined.stderr
    assert server.client.get("/events/cli_rp_0").json()["status"] == "failed"
    dry = eventctl("replay", "--id-prefix", "cli_rp_", "--dry-run", "--json", url=server.url)
    assert json.loads(dry.stdout) == {"action": "replay", "matched": 3, "changed": 0, "dry_run": True}
    confirmed = eventctl("replay", "--id-prefix", "cli_rp_", "--since", "1h", url=server.url, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "replay: 3 matched, 3 changed" in confirmed.stdout
    for i in range(3):  # replayed, each runs its two attempts again
        wait_until(lambda: len(server.client.get(f"/events/cli_rp_{i}/attempts").json()["items"]) == 4)  # noqa: B023 (called at once)


def test_cli_replay_needs_one_target(server: ServerProcess) -> None:
    assert eventctl("replay", url=server.url).returncode == 2
    assert eventctl("replay", "x", "--status", "failed", url=server.url).returncode == 2
    assert eventctl("replay", "x", "--yes", url=server.url).returncode == 2


def test_cli_purge_deletes_processed_and_failed_with_yes(server: ServerProcess) -> None:
    seed_failed(server, "cli_pg_", 1)
    seed_processed(server, "cli_pg_ok_", 2)
    server.client.post("/events", json={"event_id": "cli_pg_later", "delay_ms": 3_600_000})
    result = eventctl("purge", "--id-prefix", "cli_pg_", "--yes", "--json", url=server.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"action": "delete", "matched": 3, "changed": 3, "dry_run": False}
    assert server.client.get("/events/cli_pg_later").status_code == 200
    nothing = eventctl("purge", "--id-prefix", "cli_pg_", url=server.url)  # no prompt when nothing matches
    assert nothing.returncode == 0
    assert "delete: 0 matched" in nothing.stdout


def test_cli_delete_and_status_with_its_attempt_timeline(server: ServerProcess) -> None:
    server.client.post("/events", json={"event_id": "cli_tl", "payload": {"fail_times": 1}})
    wait_for_status(server.client, "cli_tl", "processed")
    shown = eventctl("status", "cli_tl", url=server.url)
    assert shown.returncode == 0, shown.stderr
    timeline = shown.stdout[shown.stdout.index("outcome") :]
    assert "retrying" in timeline
    assert "scripted failure on attempt 1" in timeline
    assert "processed" in timeline
    deleted = eventctl("delete", "cli_tl", url=server.url)
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted cli_tl" in deleted.stdout
    again = eventctl("delete", "cli_tl", url=server.url)
    assert again.returncode == 1
    assert "NotFound" in again.stderr
