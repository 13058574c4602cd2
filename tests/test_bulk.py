"""Deleting events, bulk actions and the attempts endpoint (SPEC §11, §12): the bulk logic on each store, then
the HTTP surface through the real app in process, scopes and the bulk log line included."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from eventctl.bulk import run_bulk
from eventctl.domain import BulkAction, EventFilter, Status
from eventctl.store import Store
from tests.inprocess import RunningApp, running_app, settings_from_env, wait_for_status, wait_until
from tests.store_fixtures import LEASE, event, store, store_url

__all__ = ["store", "store_url"]  # fixtures: every store test runs on SQLite, memory and PostgreSQL

pytestmark = pytest.mark.anyio

SCRIPTED = "tests.scripted_handlers:scripted"


async def seed(store: Store, *, failed: int, processed: int, accepted: int, processing: int = 0) -> None:
    """``failed_i`` (error "timeout i"), ``processed_i``, ``accepted_i`` (due in an hour), ``processing_i``
    (claimed, held)."""
    due = [f"failed_{i}" for i in range(failed)] + [f"processed_{i}" for i in range(processed)]
    await store.add_many([event(event_id) for event_id in due])
    for claim in await store.claim(len(due) + 1, LEASE):
        if claim.event_id.startswith("failed_"):
            assert await store.fail(claim, f"timeout {claim.event_id[7:]}")
        else:
            assert await store.complete(claim)
    await store.add_many([event(f"processing_{i}") for i in range(processing)])
    assert len(await store.claim(processing + 1, LEASE)) == processing
    await store.add_many([event(f"accepted_{i}", delay=3600) for i in range(accepted)])


async def statuses(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Status:
        counts[status.value] = await store.count_matching(EventFilter(statuses=frozenset({status})))
    return {status: count for status, count in counts.items() if count}


async def test_replay_changes_only_failed_events_across_batches(store: Store) -> None:
    await seed(store, failed=7, processed=3, accepted=2, processing=1)
    result = await run_bulk(store, BulkAction.REPLAY, EventFilter(), dry_run=False, key_fingerprint=None, batch_size=2)
    assert (result.matched, result.changed, result.dry_run) == (7, 7, False)
    assert await statuses(store) == {"accepted": 9, "processed": 3, "processing": 1}
    replayed = await store.get("failed_3")
    assert replayed is not None
    assert replayed.attempts == 0


async def test_delete_changes_only_processed_and_failed_events_across_batches(store: Store) -> None:
    await seed(store, failed=4, processed=5, accepted=2, processing=1)
    wanted = EventFilter(statuses=frozenset({Status.FAILED, Status.PROCESSED, Status.ACCEPTED}))
    result = await run_bulk(store, BulkAction.DELETE, wanted, dry_run=False, key_fingerprint=None, batch_size=3)
    assert (result.matched, result.changed) == (9, 9)
    assert await statuses(store) == {"accepted": 2, "processing": 1}
    assert await store.attempts("failed_0") is None  # the attempts went with the event


async def test_a_dry_run_counts_and_changes_nothing(store: Store) -> None:
    await seed(store, failed=3, processed=2, accepted=1)
    for action, matched in ((BulkAction.REPLAY, 3), (BulkAction.DELETE, 5)):
        result = await run_bulk(store, action, EventFilter(), dry_run=True, key_fingerprint=None, batch_size=2)
        assert (result.matched, result.changed, result.dry_run) == (matched, 0, True)
    assert await statuses(store) == {"failed": 3, "processed": 2, "accepted": 1}


async def test_a_filter_narrows_a_bulk_action(store: Store) -> None:
    await seed(store, failed=12, processed=2, accepted=0)
    timeout_1x = EventFilter(error="TIMEOUT 1")  # failed_1, failed_10, failed_11
    result = await run_bulk(store, BulkAction.REPLAY, timeout_1x, dry_run=False, key_fingerprint=None, batch_size=2)
    assert (result.matched, result.changed) == (3, 3)
    assert await statuses(store) == {"failed": 9, "processed": 2, "accepted": 3}
    only_processing = EventFilter(statuses=frozenset({Status.PROCESSING}))
    result = await run_bulk(store, BulkAction.DELETE, only_processing, dry_run=False, key_fingerprint=None)
    assert (result.matched, result.changed) == (0, 0)


# The HTTP surface.

WRITER = "writer-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef0"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def app() -> AsyncIterator[RunningApp]:
    async with running_app(
        handler=SCRIPTED, max_attempts=3, retry_backoff_ms=0, retry_backoff_max_ms=0, shutdown_timeout_s=0
    ) as running:
        yield running


async def test_delete_is_204_and_frees_the_id(app: RunningApp) -> None:
    client = app.client
    await client.post("/events", json={"event_id": "gone", "payload": {"n": 1}})
    await wait_for_status(client, "gone", "processed")
    response = await client.delete("/events/gone")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get("/events/gone")).status_code == 404
    assert (await client.get("/events/gone/attempts")).status_code == 404
    again = await client.post("/events", json={"event_id": "gone", "payload": {"n": 2}})
    assert again.status_code == 202


async def test_delete_of_an_unknown_event_is_404(app: RunningApp) -> None:
    for event_id in ("never-sent", "bad%00id"):
        response = await app.client.delete(f"/events/{event_id}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_delete_of_a_processing_event_is_409_and_keeps_it(app: RunningApp) -> None:
    client = app.client
    await client.post("/events", json={"event_id": "busy", "payload": {"sleep_s": 30}})
    await wait_for_status(client, "busy", "processing")
    response = await client.delete("/events/busy")
    assert response.status_code == 409
    assert response.json()["event_status"] == "processing"
    assert (await client.get("/events/busy")).json()["status"] == "processing"


async def test_attempts_are_listed_oldest_first(app: RunningApp) -> None:
    client = app.client
    await client.post("/events", json={"event_id": "twice", "payload": {"fail_times": 1}})
    await wait_for_status(client, "twice", "processed")
    response = await client.get("/events/twice/attempts")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(item["attempt"], item["outcome"]) for item in items] == [(1, "retrying"), (2, "processed")]
    assert "scripted failure on attempt 1" in items[0]["error"]
    assert items[1]["error"] is None
    assert set(items[0]) == {
        "attempt", "started_at", "finished_at", "outcome", "error", "duration_ms", "response_status"
    }  # fmt: skip
    assert items[0]["started_at"] <= items[0]["finished_at"] <= items[1]["started_at"]
    assert (await client.get("/events/nobody/attempts")).status_code == 404


async def test_the_event_shows_its_ordering_key_and_what_blocks_it(app: RunningApp) -> None:
    client = app.client
    await client.post("/events", json={"event_id": "head", "ordering_key": "acct-1", "payload": {"permanent": True}})
    await wait_for_status(client, "head", "failed")
    await client.post("/events", json={"event_id": "behind", "ordering_key": "acct-1"})
    behind = (await client.get("/events/behind")).json()
    assert (behind["status"], behind["ordering_key"], behind["blocked_by"]) == ("accepted", "acct-1", "head")
    head = (await client.get("/events/head")).json()
    assert (head["ordering_key"], head["blocked_by"]) == ("acct-1", None)


async def test_bulk_replay_and_delete_over_http(app: RunningApp) -> None:
    client = app.client
    for i in range(4):
        await client.post("/events", json={"event_id": f"bulk_fail_{i}", "payload": {"permanent": True}})
    await client.post("/events", json={"event_id": "bulk_ok"})
    await client.post("/events", json={"event_id": "bulk_later", "delay_ms": 3_600_000})
    for i in range(4):
        await wait_for_status(client, f"bulk_fail_{i}", "failed")
    await wait_for_status(client, "bulk_ok", "processed")
    body = {"action": "replay", "filter": {"id_prefix": "bulk_", "since": "1h"}, "dry_run": True}
    dry = await client.post("/events/bulk", json=body)
    assert dry.status_code == 200
    assert dry.json() == {"action": "replay", "matched": 4, "changed": 0, "dry_run": True}
    replayed = await client.post("/events/bulk", json={**body, "dry_run": False})
    assert replayed.json() == {"action": "replay", "matched": 4, "changed": 4, "dry_run": False}
    # replayed, they run (and fail) again: a second attempt each
    await wait_until(lambda: _all_failed_twice(client), message="the replayed events to fail again")
    deleted = await client.post("/events/bulk", json={"action": "delete", "filter": {"id_prefix": "bulk_"}})
    assert deleted.json() == {"action": "delete", "matched": 5, "changed": 5, "dry_run": False}
    left = (await client.get("/events", params={"id_prefix": "bulk_"})).json()["items"]
    assert [item["event_id"] for item in left] == ["bulk_later"]


async def _all_failed_twice(client: httpx.AsyncClient) -> bool:
    for i in range(4):
        items = (await client.get(f"/events/bulk_fail_{i}/attempts")).json()["items"]
        if [item["outcome"] for item in items] != ["failed", "failed"]:
            return False
    return True


async def test_bulk_over_more_events_than_one_batch(app: RunningApp) -> None:
    client = app.client
    count = 1100  # more than BULK_BATCH_SIZE
    batch = [event(f"many_{i:04d}") for i in range(count)]
    await app.store.add_many(batch)
    await wait_until(
        lambda: _count(app.store, EventFilter(statuses=frozenset({Status.PROCESSED}), id_prefix="many_"), count)
    )
    response = await client.post("/events/bulk", json={"action": "delete", "filter": {"id_prefix": "many_"}})
    assert response.json() == {"action": "delete", "matched": count, "changed": count, "dry_run": False}
    assert await app.store.count_matching(EventFilter(id_prefix="many_")) == 0


async def _count(store: Store, filter: EventFilter, expected: int) -> bool:
    return await store.count_matching(filter) == expected


@pytest.mark.parametrize(
    ("body", "pointers"),
    [
        (b"{", ["#"]),
        (b"[]", ["#"]),
        (b'{"action": "replay"}', ["#/filter"]),
        (b'{"action": "replay", "filter": null}', ["#/filter"]),
        (b'{"action": "purge", "filter": {}}', ["#/action"]),
        (b'{"action": "delete", "filter": {}, "dryrun": true}', ["#/dryrun"]),
        (b'{"action": "delete", "filter": {}, "dry_run": "yes"}', ["#/dry_run"]),
        (b'{"action": "delete", "filter": {"statuses": "failed"}}', ["#/filter/statuses"]),
        (
            b'{"action": "delete", "filter": {"status": "gone", "since": "later"}}',
            ["#/filter/status", "#/filter/since"],
        ),
    ],
)
async def test_a_bad_bulk_body_is_400_naming_each_key(app: RunningApp, body: bytes, pointers: list[str]) -> None:
    response = await app.client.post("/events/bulk", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["pointer"] for error in response.json()["errors"]] == pointers


@pytest.fixture
async def secured() -> AsyncIterator[RunningApp]:
    keys = f"{WRITER}:events:write,{READER}:events:read,{ADMIN}:admin"
    async with running_app(settings_from_env(API_KEYS=keys, ENV="prod")) as running:
        yield running


async def test_delete_and_bulk_need_the_admin_scope(secured: RunningApp) -> None:
    client = secured.client
    await client.post("/events", json={"event_id": "guarded"}, headers=bearer(WRITER))
    bulk = {"action": "delete", "filter": {}, "dry_run": True}
    for key in (READER, WRITER):
        assert (await client.delete("/events/guarded", headers=bearer(key))).status_code == 403
        assert (await client.post("/events/bulk", json=bulk, headers=bearer(key))).status_code == 403
    assert (await client.post("/events/bulk", json=bulk)).status_code == 401
    assert (await client.get("/events/guarded/attempts", headers=bearer(READER))).status_code == 200
    assert (await client.post("/events/bulk", json=bulk, headers=bearer(ADMIN))).status_code == 200
    await wait_until(lambda: _is_processed(client, "guarded"), message="guarded to be processed")
    assert (await client.delete("/events/guarded", headers=bearer(ADMIN))).status_code == 204


async def _is_processed(client: httpx.AsyncClient, event_id: str) -> bool:
    response = await client.get(f"/events/{event_id}", headers=bearer(READER))
    return bool(response.json()["status"] == "processed")


async def test_a_bulk_action_is_logged_with_filter_counts_and_fingerprint(
    secured: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"action": "replay", "filter": {"status": ["failed", "processed"], "error": "boom"}, "dry_run": True}
    with caplog.at_level(logging.INFO, logger="eventctl.bulk"):
        response = await secured.client.post("/events/bulk", json=body, headers=bearer(ADMIN))
    assert response.status_code == 200
    [line] = [record.getMessage() for record in caplog.records if record.name == "eventctl.bulk"]
    fingerprint = hashlib.sha256(ADMIN.encode()).hexdigest()[:8]
    assert line == (
        'bulk replay (dry run): matched=0 changed=0 filter={"status":["failed","processed"],"error":"boom"} '
        f"key={fingerprint}"
    )
    assert ADMIN not in caplog.text


async def test_the_openapi_document_describes_delete_bulk_and_attempts(app: RunningApp) -> None:
    spec = (await app.client.get("/openapi.json")).json()
    bulk = spec["paths"]["/events/bulk"]["post"]
    assert bulk["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/BulkIn")
    assert bulk["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/BulkOut")
    attempts = spec["paths"]["/events/{event_id}/attempts"]["get"]["responses"]["200"]
    assert attempts["content"]["application/json"]["schema"]["$ref"].endswith("/AttemptList")
    assert {"204", "404", "409"} <= set(spec["paths"]["/events/{event_id}"]["delete"]["responses"])
    assert {"ordering_key", "blocked_by"} <= set(spec["components"]["schemas"]["EventOut"]["properties"])
