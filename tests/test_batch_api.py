"""``POST /events/batch`` (SPEC §11) on the real app in process: per-item results, the envelope's problems,
scheduling and ordering keys in items, rate limiting by item, load shedding, scopes and the OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.inprocess import RunningApp, running_app, settings_from_env, wait_until

pytestmark = pytest.mark.anyio

WRITER = "writer-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def app() -> AsyncIterator[RunningApp]:
    settings = settings_from_env(PROCESSING_DELAY_MS=600_000, MAX_BATCH_EVENTS=5, MAX_BODY_BYTES=4096)
    async with running_app(settings) as running:
        yield running


async def post_batch(client: httpx.AsyncClient, events: Any, **kwargs: Any) -> httpx.Response:
    return await client.post("/events/batch", json={"events": events}, **kwargs)


async def test_a_mixed_batch_has_one_result_per_item_in_request_order(app: RunningApp) -> None:
    client = app.client
    assert (await client.post("/events", json={"event_id": "mix-stored", "payload": {"a": 1}})).status_code == 202
    items = [
        {"event_id": "mix-new", "payload": {"n": 1}},
        {"event_id": "mix-stored", "payload": {"a": 1}},
        {"event_id": "mix-new", "payload": {"n": 2}},
        {"payload": {}},
        {"event_id": 7},
    ]
    answer = await post_batch(client, items)
    assert answer.status_code == 200
    body = answer.json()
    assert body["results"] == [
        {"index": 0, "event_id": "mix-new", "status": 202, "event_status": "accepted"},
        {"index": 1, "event_id": "mix-stored", "status": 409, "event_status": "accepted", "payload_matches": True},
        {"index": 2, "event_id": "mix-new", "status": 409, "event_status": "accepted", "payload_matches": False},
        {"index": 3, "event_id": None, "status": 400,
         "errors": [{"detail": "event_id is required", "pointer": "#/event_id"}]},
        {"index": 4, "event_id": 7, "status": 400,
         "errors": [{"detail": "event_id must be a string", "pointer": "#/event_id"}]},
    ]  # fmt: skip
    assert (body["accepted"], body["duplicates"], body["invalid"]) == (1, 2, 2)
    stored = (await client.get("/events/mix-new")).json()
    assert stored["payload"] == {"n": 1}  # the first one won


async def test_a_duplicate_of_a_stored_duplicate_reports_the_stored_event(app: RunningApp) -> None:
    client = app.client
    assert (await client.post("/events", json={"event_id": "dd", "payload": [1]})).status_code == 202
    body = (await post_batch(client, [{"event_id": "dd", "payload": [2]}, {"event_id": "dd", "payload": [1]}])).json()
    assert [(r["status"], r["payload_matches"]) for r in body["results"]] == [(409, False), (409, True)]
    assert body["accepted"] == 0


INVALID_ITEMS = [
    ("not an object", "#", "the body must be a JSON object"),
    ({"event_id": ""}, "#/event_id", "event_id must not be empty"),
    ({"event_id": "x" * 257}, "#/event_id", "event_id must be at most 256 characters"),
    ({"event_id": "a\nb"}, "#/event_id", "control characters"),
    ({"event_id": "i", "deliver_at": "soon"}, "#/deliver_at", "RFC 3339"),
    ({"event_id": "i", "deliver_at": "2026-12-01T09:30:00"}, "#/deliver_at", "RFC 3339"),
    ({"event_id": "i", "delay_ms": -1}, "#/delay_ms", "whole number"),
    ({"event_id": "i", "delay_ms": True}, "#/delay_ms", "whole number"),
    ({"event_id": "i", "delay_ms": 1, "deliver_at": "2026-12-01T09:30:00Z"}, "#/delay_ms", "not both"),
    ({"event_id": "i", "delay_ms": 366 * 86_400_000}, "#/delay_ms", "at most 365 days"),
    ({"event_id": "i", "ordering_key": ""}, "#/ordering_key", "ordering_key must be"),
    ({"event_id": "i", "ordering_key": 3}, "#/ordering_key", "ordering_key must be"),
]


@pytest.mark.parametrize(("item", "pointer", "detail"), INVALID_ITEMS)
async def test_each_kind_of_invalid_item_is_a_400_result_pointing_into_the_item(
    app: RunningApp, item: Any, pointer: str, detail: str
) -> None:
    answer = await post_batch(app.client, [{"event_id": "neighbour-" + pointer + detail}, item])
    assert answer.status_code == 200
    first, second = answer.json()["results"]
    assert first["status"] in (202, 409)
    assert second["status"] == 400
    [error] = second["errors"]
    assert error["pointer"] == pointer
    assert detail in error["detail"]
    assert "events" not in error["pointer"]


async def test_a_payload_nested_too_deep_is_an_invalid_item() -> None:
    async with running_app(settings_from_env(PROCESSING_DELAY_MS=600_000)) as running:
        deep: Any = 0
        for _ in range(70):
            deep = [deep]
        body = (await post_batch(running.client, [{"event_id": "deep", "payload": deep}, {"event_id": "flat"}])).json()
    assert body["results"][0]["errors"] == [
        {"detail": "the payload is nested more than 64 levels deep", "pointer": "#/payload"}
    ]
    assert body["results"][1]["status"] == 202


@pytest.mark.parametrize(
    ("content", "pointer"),
    [
        (b"{not json", "#"),
        (b"[]", "#"),
        (b"{}", "#/events"),
        (b'{"events": {}}', "#/events"),
        (b'{"events": []}', "#/events"),
        (b'{"events": [{"event_id": "1"}, {"event_id": "2"}, {"event_id": "3"}, {"event_id": "4"},'
         b' {"event_id": "5"}, {"event_id": "6"}]}', "#/events"),
    ],
)  # fmt: skip
async def test_a_bad_envelope_is_a_400_problem_and_stores_nothing(
    app: RunningApp, content: bytes, pointer: str
) -> None:
    answer = await app.client.post("/events/batch", content=content)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["pointer"] == pointer
    assert (await app.client.get("/events/6")).status_code == 404


async def test_a_body_over_max_body_bytes_is_413(app: RunningApp) -> None:
    answer = await post_batch(app.client, [{"event_id": "big", "payload": "x" * 5000}])
    assert answer.status_code == 413
    assert (await app.client.get("/events/big")).status_code == 404


async def test_items_are_scheduled_and_keyed_as_single_events_are(app: RunningApp) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    items = [
        {"event_id": "sch-at", "deliver_at": later, "ordering_key": "k1"},
        {"event_id": "sch-delay", "delay_ms": 3_600_000},
        {"event_id": "sch-past", "deliver_at": "2000-01-01T00:00:00Z"},
    ]
    answer = await post_batch(app.client, items)
    assert [r["status"] for r in answer.json()["results"]] == [202, 202, 202]
    soon = datetime.now(UTC) + timedelta(minutes=59)
    at, delayed, past = [await app.store.get(event_id) for event_id in ("sch-at", "sch-delay", "sch-past")]
    assert at is not None
    assert delayed is not None
    assert past is not None
    assert at.ordering_key == "k1"
    assert at.next_attempt_at is not None
    assert at.next_attempt_at > soon
    assert delayed.next_attempt_at is not None
    assert delayed.next_attempt_at > soon
    assert past.next_attempt_at is None or past.next_attempt_at < datetime.now(UTC) + timedelta(seconds=5)


async def test_accepted_items_are_counted_in_the_metrics(app: RunningApp) -> None:
    def accepted(text: str) -> float:
        [line] = [line for line in text.splitlines() if line.startswith("eventctl_events_accepted_total")]
        return float(line.split()[-1])

    before = accepted((await app.client.get("/metrics")).text)
    await post_batch(app.client, [{"event_id": "m1"}, {"event_id": "m2"}, {"event_id": "m1"}])
    assert accepted((await app.client.get("/metrics")).text) == before + 2


async def test_rate_limiting_counts_every_item() -> None:
    async with running_app(settings_from_env(RATE_LIMIT="1/m,burst=5", PROCESSING_DELAY_MS=600_000)) as running:
        client = running.client
        first = await post_batch(client, [{"event_id": f"r{i}"} for i in range(3)])
        assert first.status_code == 200
        assert "r=2" in first.headers["ratelimit"]
        refused = await post_batch(client, [{"event_id": f"s{i}"} for i in range(3)])  # needs 3, 2 left
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) == 60  # one more token, at 1 a minute
        assert "q=5" in refused.headers["ratelimit-policy"]
        assert await running.store.get("s0") is None
        assert (await post_batch(client, [{"event_id": "s0"}, {"event_id": "s1"}])).status_code == 200
        assert (await client.post("/events", json={"event_id": "single"})).status_code == 429  # none left


async def test_a_draining_service_refuses_a_batch_with_503() -> None:
    async with running_app(settings_from_env(PROCESSING_DELAY_MS=0)) as running:
        running.app.service.begin_drain()
        answer = await post_batch(running.client, [{"event_id": "drained"}])
        assert answer.status_code == 503
        assert int(answer.headers["retry-after"]) >= 1
        assert (await running.client.get("/events/drained")).status_code == 404


async def test_past_max_backlog_a_batch_is_shed_with_503() -> None:
    settings = settings_from_env(MAX_BACKLOG=3, PROCESSING_DELAY_MS=600_000, WORKER_CONCURRENCY=1, SHUTDOWN_TIMEOUT_S=0)
    async with running_app(settings) as running:
        client = running.client
        assert (await post_batch(client, [{"event_id": f"b{i}"} for i in range(3)])).json()["accepted"] == 3

        async def shedding(running: RunningApp = running) -> bool:
            probe = await post_batch(running.client, [{"event_id": f"probe{time.monotonic_ns()}"}])
            return probe.status_code == 503

        await wait_until(shedding, message="the backlog to be shed")
        shed = await post_batch(client, [{"event_id": "shed"}])
        assert shed.status_code == 503
        assert int(shed.headers["retry-after"]) >= 1
        assert (await client.get("/events/shed")).status_code == 404


async def test_a_batch_needs_the_events_write_scope() -> None:
    keys = f"{WRITER}:events:write,{READER}:events:read"
    async with running_app(settings_from_env(API_KEYS=keys, ENV="prod")) as running:
        batch = {"events": [{"event_id": "scoped"}]}
        none = await running.client.post("/events/batch", json=batch)
        reader = await running.client.post("/events/batch", json=batch, headers={"Authorization": f"Bearer {READER}"})
        writer = await running.client.post("/events/batch", json=batch, headers={"Authorization": f"Bearer {WRITER}"})
        assert (none.status_code, reader.status_code, writer.status_code) == (401, 403, 200)


async def test_other_methods_are_405_allowing_post(app: RunningApp) -> None:
    answer = await app.client.put("/events/batch", json={})
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


async def test_the_openapi_document_describes_the_batch_that_validates(app: RunningApp) -> None:
    document = (await app.client.get("/openapi.json")).json()
    operation = document["paths"]["/events/batch"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchIn"}
    assert {"200", "400", "413", "429", "503"} <= set(operation["responses"])
    batch = document["components"]["schemas"]["BatchIn"]
    assert {"$ref": "#/components/schemas/EventIn"} in batch["properties"]["events"]["items"]["anyOf"]
    assert {"deliver_at", "delay_ms", "ordering_key"} <= set(document["components"]["schemas"]["EventIn"]["properties"])
