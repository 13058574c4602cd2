"""Seeing what is stored: keyset pagination and the status filter; and retention, which frees ids."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.conftest import SCRIPTED, ServerFactory, event_status, wait_for_status, wait_until


def walk(client: httpx.Client, **params: str | int) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get("/events", params=query).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_250_events_walked_page_by_page_come_once_each_newest_first(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://", PROCESSING_DELAY_MS=0)
    event_ids = [f"p{i:03d}" for i in range(250)]
    for event_id in event_ids:
        assert server.client.post("/events", json={"event_id": event_id}).status_code == 202
    items = walk(server.client, limit=40)
    assert [item["event_id"] for item in items] == list(reversed(event_ids))
    assert set(items[0]) >= {"event_id", "status", "payload", "attempts", "received_at"}


def test_the_status_filter_lists_only_that_status(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://", HANDLER=SCRIPTED)
    for i in range(30):
        payload = {"permanent": True} if i % 3 == 0 else {}
        server.client.post("/events", json={"event_id": f"s{i}", "payload": payload})
    for i in range(30):
        wait_for_status(server.client, f"s{i}", "processed", "failed")
    failed = walk(server.client, status="failed", limit=4)
    assert sorted(item["event_id"] for item in failed) == sorted(f"s{i}" for i in range(0, 30, 3))
    assert {item["status"] for item in failed} == {"failed"}
    assert len(walk(server.client, status="processed", limit=7)) == 20
    assert walk(server.client, status="retrying") == []


@pytest.mark.parametrize(
    "query",
    [
        {"status": "lost"},
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"cursor": "not-a-cursor"},
        {"cursor": "1" * 19},
    ],
)
def test_bad_list_parameters_are_400_problems(servers: ServerFactory, query: dict[str, object]) -> None:
    server = servers.start(DATABASE_URL="memory://")
    response = server.client.get("/events", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]


def test_retention_deletes_processed_events_frees_their_ids_and_keeps_failed_ones(servers: ServerFactory) -> None:
    server = servers.start(HANDLER=SCRIPTED, RETENTION="1s")
    client = server.client
    client.post("/events", json={"event_id": "kept", "payload": {"permanent": True}})
    for i in range(20):
        client.post("/events", json={"event_id": f"old{i}"})
    wait_for_status(client, "kept", "failed")
    wait_until(lambda: all(event_status(client, f"old{i}") is None for i in range(20)), message="pruning")
    assert client.post("/events", json={"event_id": "old0"}).status_code == 202  # the id is free again
    assert event_status(client, "kept") == "failed"


def test_ingest_keeps_answering_while_a_large_prune_runs(servers: ServerFactory) -> None:
    """3,000 events expire together; posts made while they are deleted in batches all get 202."""
    server = servers.start(HANDLER=SCRIPTED, RETENTION="2s", WORKER_CONCURRENCY=64)
    client = server.client
    for i in range(3000):
        client.post("/events", json={"event_id": f"bulk{i}"})
    wait_until(lambda: event_status(client, "bulk2999") == "processed", message="the bulk to be processed")

    codes: list[int] = []
    stop = threading.Event()

    def keep_posting() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as poster:
            i = 0
            while not stop.is_set():
                codes.append(poster.post("/events", json={"event_id": f"during{i}"}).status_code)
                i += 1

    poster = threading.Thread(target=keep_posting)
    poster.start()
    try:
        wait_until(lambda: event_status(client, "bulk2999") is None, message="the bulk to be pruned")
    finally:
        stop.set()
        poster.join()
    assert codes
    assert set(codes) == {202}
