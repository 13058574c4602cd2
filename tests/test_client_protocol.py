"""The client's logic without a server process: retry decisions, Retry-After, error messages, and the
``POST /events/batch`` path of ``send_many`` against a stand-in for a server that has it (SPEC §11).

The stand-in is an ``httpx.MockTransport`` that answers as SPEC §11 says; the server does not have the
endpoint yet, and ``test_client_library`` covers the fallback against the real one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from eventctl.client import AsyncClient, Client, Conflict, ItemResult, RetryPolicy, ServiceError
from eventctl.client.errors import describe_problem
from eventctl.client.retries import retry_after_seconds

Handler = Callable[[httpx.Request], httpx.Response]


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_a_throttled_answer_waits_at_least_its_retry_after_and_at_most_a_quarter_more() -> None:
    policy = RetryPolicy(throttled=5, random=random.Random(7))
    waits = [policy.after_answer(0, 429, "2") for _ in range(200)]
    assert all(wait is not None and 2 <= wait <= 2.5 for wait in waits)
    assert len(set(waits)) > 1  # jittered, so that clients do not come back together


def test_without_retry_after_the_wait_is_exponential_with_full_jitter() -> None:
    policy = RetryPolicy(unreachable=10, base_delay=0.5, max_delay=4, random=random.Random(1))
    for retry, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        waits = [policy.after_failure(retry) for _ in range(100)]
        assert all(wait is not None and 0 <= wait <= cap for wait in waits)
        assert max(w for w in waits if w is not None) > cap / 2


def test_retries_stop_at_the_policys_count_and_never_for_a_final_answer() -> None:
    policy = RetryPolicy(unreachable=1, throttled=2)
    assert policy.after_failure(0) is not None
    assert policy.after_failure(1) is None
    assert policy.after_answer(1, 503) is not None
    assert policy.after_answer(2, 503) is None
    for final in (200, 400, 404, 409, 500):
        assert policy.after_answer(0, final) is None


def test_a_retry_after_longer_than_the_longest_wait_is_not_waited_for() -> None:
    policy = RetryPolicy(throttled=None, max_delay=60)
    assert policy.after_answer(1000, 429, "60") is not None
    assert policy.after_answer(0, 429, "3600") is None


def test_a_problems_message_shows_every_reason_on_one_line() -> None:
    invalid = {
        "title": "Bad Request",
        "detail": "the body is not a valid event",
        "errors": [{"pointer": "#/event_id", "detail": "event_id is required"}, {"detail": "and\nmore"}],
    }
    assert describe_problem(400, invalid) == (
        "Bad Request (400): the body is not a valid event [#/event_id: event_id is required; and more]"
    )
    duplicate = {"title": "Conflict", "detail": "exists", "event_status": "processed", "payload_matches": True}
    assert describe_problem(409, duplicate) == "Conflict (409): exists [event_status=processed; payload_matches=true]"
    assert describe_problem(500, {}) == "HTTP 500 (500)"


class BatchServer:
    """Answers ``POST /events/batch`` as SPEC §11 says, keeping the events in a dict; ``POST /events`` as the
    single endpoint does. ``max_body`` and ``burst`` stand for ``MAX_BODY_BYTES`` and the rate limit's burst."""

    def __init__(self, max_body: int = 1 << 20, burst: int | None = None) -> None:
        self.stored: dict[str, Any] = {}
        self.batches: list[int] = []  # the size of every batch that was answered 200
        self.singles = 0
        self.max_body = max_body
        self.burst = burst

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if len(request.content) > self.max_body:
            return _problem(413, "the body is larger than allowed")
        if request.url.path == "/events":
            self.singles += 1
            return self._single(json.loads(request.content))
        events = json.loads(request.content)["events"]
        if self.burst is not None and len(events) > self.burst:
            headers = {"Retry-After": "1", "RateLimit-Policy": f'"default";q={self.burst};w=1'}
            return _problem(429, "over the rate limit", headers)
        self.batches.append(len(events))
        results = [self._item(index, event) for index, event in enumerate(events)]
        counts = {
            "accepted": sum(result["status"] == 202 for result in results),
            "duplicates": sum(result["status"] == 409 for result in results),
            "invalid": sum(result["status"] == 400 for result in results),
        }
        return httpx.Response(200, json={"results": results, **counts})

    def _item(self, index: int, event: Any) -> dict[str, Any]:
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if not isinstance(event_id, str):
            errors = [{"detail": "required", "pointer": "#/event_id"}]
            return {"index": index, "event_id": None, "status": 400, "errors": errors}
        payload = event.get("payload", {})
        if event_id in self.stored:
            matches = self.stored[event_id] == payload
            return {
                "index": index,
                "event_id": event_id,
                "status": 409,
                "event_status": "accepted",
                "payload_matches": matches,
            }
        self.stored[event_id] = payload
        return {"index": index, "event_id": event_id, "status": 202, "event_status": "accepted"}

    def _single(self, event: Any) -> httpx.Response:
        item = self._item(0, event)
        if item["status"] == 202:
            return httpx.Response(202, json={"event_id": item["event_id"], "status": "accepted"})
        return _problem(
            item["status"], "refused", {}, **{k: v for k, v in item.items() if k not in ("index", "status")}
        )


def _problem(status: int, detail: str, headers: dict[str, str] | None = None, **extensions: Any) -> httpx.Response:
    body = {"type": "urn:eventctl:problem:x", "title": "t", "status": status, "detail": detail, **extensions}
    return httpx.Response(
        status, content=json.dumps(body), headers={"Content-Type": "application/problem+json", **(headers or {})}
    )


def _client(handler: Handler) -> Client:
    return Client("http://eventctl.test", retries=RetryPolicy(base_delay=0), transport=httpx.MockTransport(handler))


def test_send_many_sends_batches_and_reports_each_item_in_order() -> None:
    server = BatchServer()
    server.stored["taken"] = {"v": 1}
    events = [{"event_id": f"e{i}", "payload": {"i": i}} for i in range(5)]
    events += [{"event_id": "taken", "payload": {"v": 1}}, {"event_id": "taken", "payload": {"v": 2}}, {"no": "id"}]
    with _client(server) as client:
        result = client.send_many(events, batch_size=3)
    assert server.batches == [3, 3, 2]
    assert server.singles == 0
    assert (result.accepted, result.duplicates, result.invalid) == (5, 2, 1)
    assert (result.already_stored, result.conflicts) == (1, 1)
    assert [item.index for item in result.items] == list(range(8))
    assert result.items[5] == ItemResult(5, "taken", 409, "accepted", True)
    assert result.items[7].errors == ({"detail": "required", "pointer": "#/event_id"},)
    assert not result.ok


def test_a_batch_over_the_body_limit_is_split_and_a_lone_oversized_event_is_reported() -> None:
    server = BatchServer(max_body=300)
    events = [{"event_id": f"s{i}", "payload": "x" * 40} for i in range(6)] + [
        {"event_id": "huge", "payload": "x" * 400}
    ]
    with _client(server) as client:
        result = client.send_many(events, batch_size=7)
    assert result.accepted == 6
    assert [item.index for item in result.items] == list(range(7))
    assert result.items[6].status == 413
    assert result.items[6].invalid
    assert sum(server.batches) == 6
    assert max(server.batches) < 7


def test_a_batch_larger_than_the_rate_limits_burst_is_sent_in_parts_that_fit() -> None:
    server = BatchServer(burst=3)
    with _client(server) as client:
        result = client.send_many([{"event_id": f"b{i}"} for i in range(8)], batch_size=8)
    assert result.accepted == 8
    assert server.batches == [3, 3, 2]


def test_a_service_without_the_batch_endpoint_gets_single_posts_for_the_clients_life() -> None:
    singles: list[bytes] = []

    def old_server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/events/batch":
            return _problem(405, "Method Not Allowed")
        singles.append(request.content)
        return httpx.Response(202, json={"event_id": json.loads(request.content)["event_id"], "status": "accepted"})

    batch_tries = 0

    def counting(request: httpx.Request) -> httpx.Response:
        nonlocal batch_tries
        batch_tries += request.url.path == "/events/batch"
        return old_server(request)

    with _client(counting) as client:
        assert client.send_many([{"event_id": "o1"}, {"event_id": "o2"}]).accepted == 2
        assert client.send_many([{"event_id": "o3"}]).accepted == 1
    assert batch_tries == 1
    assert len(singles) == 3


def test_a_batch_refused_whole_raises_with_the_services_reason() -> None:
    refusing = _client(lambda request: _problem(400, "the events array is empty or too long"))
    with refusing as client, pytest.raises(ServiceError, match="too long"):
        client.send_many([{"event_id": "x"}])


def test_a_throttled_batch_is_retried_until_it_is_accepted() -> None:
    server = BatchServer()
    answers = iter([_problem(503, "draining", {"Retry-After": "0"}), _problem(429, "slow down", {"Retry-After": "0"})])

    def throttled_twice(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or server(request)

    with _client(throttled_twice) as client:
        assert client.send_many([{"event_id": "t1"}]).accepted == 1


def test_a_conflict_on_a_first_try_keeps_the_stored_status_and_payload_match() -> None:
    def duplicate(request: httpx.Request) -> httpx.Response:
        return _problem(409, "exists", event_id="d", event_status="failed", payload_matches=True)

    with _client(duplicate) as client, pytest.raises(Conflict) as conflict:
        client.send("d", {"same": True})
    assert (conflict.value.event_status, conflict.value.payload_matches) == ("failed", True)


@pytest.mark.anyio
async def test_the_async_client_sends_the_same_batches() -> None:
    server = BatchServer()
    transport = httpx.MockTransport(server)
    async with AsyncClient("http://eventctl.test", transport=transport) as client:
        result = await client.send_many([{"event_id": f"a{i}"} for i in range(5)], batch_size=2)
    assert server.batches == [2, 2, 1]
    assert result.accepted == 5


def test_attempts_are_typed_oldest_first_and_delete_takes_a_204() -> None:
    """Against a stand-in: the server has neither ``GET /events/{id}/attempts`` nor ``DELETE`` yet (SPEC §11, §12)."""
    attempt = {
        "attempt": 1,
        "started_at": "2026-12-02T12:00:00.000001Z",
        "finished_at": "2026-12-02T12:00:01.5Z",
        "outcome": "retrying",
        "error": "HTTP 500 from http://receiver",
        "duration_ms": 1500.0,
        "response_status": 500,
    }

    def stand_in(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            if request.url.path == "/events/busy":
                return _problem(409, "processing", event_status="processing")
            return httpx.Response(204)
        assert request.url.raw_path == b"/events/a%2Fb/attempts"  # the id percent-encoded, slash and all
        return httpx.Response(200, json={"items": [attempt, {**attempt, "attempt": 2, "finished_at": None}]})

    with _client(stand_in) as client:
        first, second = client.attempts("a/b")
        client.delete("gone")
        with pytest.raises(Conflict) as busy:
            client.delete("busy")
    assert (first.attempt, first.outcome, first.response_status, first.duration_ms) == (1, "retrying", 500, 1500.0)
    assert first.started_at == datetime(2026, 12, 2, 12, 0, 0, 1, tzinfo=UTC)
    assert second.finished_at is None
    assert busy.value.event_status == "processing"
