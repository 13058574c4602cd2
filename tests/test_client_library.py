"""The client library against real ``eventctl serve`` processes: every call, its typed results and errors, and
its retries (rate limit, backlog, a lost answer)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventctl import AsyncClient, Client, Conflict, RetryPolicy
from eventctl.client import (
    BadRequest,
    Event,
    Forbidden,
    InvalidServiceURL,
    NotFound,
    ServiceUnreachable,
    Unauthorized,
)
from tests.conftest import SCRIPTED, ServerFactory, ServerProcess, wait_for_status, wait_until
from tests.net import silent_port, unused_port

QUICK_RETRIES = RetryPolicy(unreachable=2, throttled=2, base_delay=0.01, max_delay=30)


@pytest.fixture(scope="module")
def server(shared_servers: ServerFactory) -> ServerProcess:
    return shared_servers.start(
        DATABASE_URL="memory://", HANDLER=SCRIPTED, MAX_ATTEMPTS=1, RETRY_BACKOFF_MS=10, RETRY_BACKOFF_MAX_MS=10
    )


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url) as client:
        yield client


class LosesFirstAnswer(httpx.BaseTransport):
    """A network that delivers the first request but loses its answer, as a dropped connection would."""

    def __init__(self) -> None:
        self._network = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._network.handle_request(request)
        if self.lost == 0:
            self.lost += 1
            response.read()
            response.close()
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        return response

    def close(self) -> None:
        self._network.close()


class CountsRequests(httpx.BaseTransport):
    """The real network, counting the requests sent to each path."""

    def __init__(self) -> None:
        self._network = httpx.HTTPTransport()
        self.paths: list[str] = []
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        response = self._network.handle_request(request)
        self.statuses.append(response.status_code)
        return response

    def close(self) -> None:
        self._network.close()


def test_three_lines_send_an_event(server: ServerProcess) -> None:
    with Client(server.url) as client:
        client.send("lib_three_lines", {"order": 42})
    assert server.client.get("/events/lib_three_lines").json()["payload"] == {"order": 42}


def test_send_returns_a_result_stored_now_and_get_a_typed_event(client: Client) -> None:
    before = datetime.now(UTC)
    result = client.send("lib_send", {"n": 1})
    assert result.stored_now
    assert not result.already_stored
    assert result.event_status == "accepted"
    assert result.location == "/events/lib_send"
    event = client.get("lib_send")
    assert isinstance(event, Event)
    assert event.event_id == "lib_send"
    assert event.payload == {"n": 1}
    assert event.received_at.tzinfo is not None
    assert event.received_at >= before.replace(microsecond=0)


def test_send_without_payload_stores_an_empty_object_and_keeps_big_integers(client: Client) -> None:
    client.send("lib_empty")
    assert client.get("lib_empty").payload == {}
    big = 10**40 + 1
    client.send("lib_big", {"n": big})
    assert client.get("lib_big").payload == {"n": big}


def test_a_duplicate_on_the_first_try_is_a_conflict_that_shows_why(client: Client) -> None:
    client.send("lib_dup", {"a": 1})
    with pytest.raises(Conflict) as same:
        client.send("lib_dup", {"a": 1})
    assert same.value.payload_matches is True
    assert same.value.event_status in {"accepted", "processing", "processed"}
    with pytest.raises(Conflict) as different:
        client.send("lib_dup", {"a": 2})
    assert different.value.payload_matches is False
    assert different.value.status == 409
    assert "payload_matches=false" in str(different.value)
    assert f"event_status={different.value.event_status}" in str(different.value)


def test_a_retried_send_whose_lost_first_try_was_stored_is_already_stored(server: ServerProcess) -> None:
    network = LosesFirstAnswer()
    with Client(server.url, retries=QUICK_RETRIES, transport=network) as client:
        result = client.send("lib_lost_answer", {"k": "v"})
    assert network.lost == 1
    assert result.already_stored
    assert result.event_id == "lib_lost_answer"
    assert server.client.get("/events/lib_lost_answer").json()["payload"] == {"k": "v"}


def test_a_retried_send_that_meets_another_payload_is_still_a_conflict(server: ServerProcess) -> None:
    server.client.post("/events", json={"event_id": "lib_taken", "payload": {"owner": "someone else"}})
    with (
        Client(server.url, retries=QUICK_RETRIES, transport=LosesFirstAnswer()) as client,
        pytest.raises(Conflict) as taken,
    ):
        client.send("lib_taken", {"owner": "me"})
    assert taken.value.payload_matches is False


def test_an_invalid_event_is_a_bad_request_with_the_services_reasons(client: Client) -> None:
    with pytest.raises(BadRequest) as invalid:
        client.send("bad\nid")
    assert invalid.value.errors[0]["pointer"] == "#/event_id"
    assert "#/event_id: event_id must not contain control characters" in str(invalid.value)


def test_an_unknown_event_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as missing:
        client.get("lib_never_sent")
    assert missing.value.status == 404
    assert "lib_never_sent" in str(missing.value)


def test_events_iterates_over_every_page_with_filters(client: Client, server: ServerProcess) -> None:
    ids = [f"lib_page_{i}" for i in range(7)]
    for event_id in ids:
        client.send(event_id, {"permanent": True})
    for event_id in ids:
        wait_for_status(server.client, event_id, "failed")
    failed = [event.event_id for event in client.events(status="failed", limit=2)]
    assert [event_id for event_id in failed if event_id.startswith("lib_page_")] == ids[::-1]
    page = client.events_page(limit=2, status="failed")
    assert len(page.items) == 2
    assert page.next_cursor is not None
    with pytest.raises(BadRequest) as bogus:
        client.events_page(status="bogus")
    assert "#/query/status" in str(bogus.value)


def test_replay_puts_a_failed_event_back_and_refuses_one_that_is_not(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    client.send("lib_replay", {"fail_unless_exists": str(fixed)})
    wait_for_status(server.client, "lib_replay", "failed")
    fixed.touch()
    client.replay("lib_replay")
    wait_for_status(server.client, "lib_replay", "processed")
    with pytest.raises(Conflict) as not_failed:
        client.replay("lib_replay")
    assert not_failed.value.event_status == "processed"


def test_wait_follows_an_event_until_it_is_final(client: Client) -> None:
    client.send("lib_wait", {"fail_times": 0})
    assert client.wait("lib_wait", timeout=30).status == "processed"


def test_health_and_ready_are_typed(client: Client) -> None:
    health = client.health()
    assert health.status == "ok"
    assert health.uptime_seconds >= 0
    ready = client.ready()
    assert ready.ready is True
    assert ready.status == "ready"


def test_metrics_is_the_prometheus_text(client: Client) -> None:
    assert "eventctl_events_accepted_total" in client.metrics()


class WithoutBatches(CountsRequests):
    """The real network to a service of before ``POST /events/batch``: that path answers 404 there."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/events/batch":
            self.paths.append(request.url.path)
            return httpx.Response(404, json={"status": 404, "detail": "not found"})
        return super().handle_request(request)


def many_events(prefix: str) -> list[dict[str, Any]]:
    """7 new events, a stored duplicate, a conflicting one, and an invalid one."""
    events: list[dict[str, Any]] = [{"event_id": f"{prefix}_{i}", "payload": {"i": i}} for i in range(7)]
    return [
        *events,
        {"event_id": f"{prefix}_taken", "payload": {"x": 0}},
        {"event_id": f"{prefix}_taken"},
        {"payload": 1},
    ]


@pytest.mark.parametrize(("network", "batches"), [(CountsRequests, 4), (WithoutBatches, 1)])
def test_send_many_sends_batches_or_falls_back_to_single_posts_and_remembers_it(
    server: ServerProcess, network: type[CountsRequests], batches: int
) -> None:
    """With POST /events/batch, batch after batch; without it (an older service), one attempt there, then
    every event through POST /events. Either way the same results."""
    prefix = f"lib_many_{network.__name__}"
    server.client.post("/events", json={"event_id": f"{prefix}_taken", "payload": {"x": 0}})
    events = many_events(prefix)
    transport = network()
    with Client(server.url, transport=transport) as client:
        result = client.send_many(events, batch_size=4)
        again = client.send_many(events[:3], batch_size=4)
    assert transport.paths.count("/events/batch") == batches
    assert ("/events" in transport.paths) == (network is WithoutBatches)
    assert (result.accepted, result.duplicates, result.invalid) == (7, 2, 1)
    assert result.already_stored == 1
    assert result.conflicts == 1
    assert [item.index for item in result.items] == list(range(10))
    assert result.items[9].errors[0]["pointer"] == "#/event_id"
    assert again.already_stored == 3
    assert again.ok
    assert server.client.get(f"/events/{prefix}_6").json()["payload"] == {"i": 6}


def test_a_low_rate_limit_accepts_everything_the_client_sends(servers: ServerFactory) -> None:
    server = servers.start(RATE_LIMIT="5/s")
    with Client(server.url) as client:
        results = [client.send(f"lib_limited_{i}") for i in range(15)]
    assert all(result.stored_now for result in results)
    assert 'status="429"' in server.client.get("/metrics").text  # the limit did refuse, and was waited out


def test_a_full_backlog_accepts_everything_the_client_sends(servers: ServerFactory) -> None:
    server = servers.start(MAX_BACKLOG=3, PROCESSING_DELAY_MS=1000, WORKER_CONCURRENCY=1, DATABASE_URL="memory://")
    for i in range(5):
        server.client.post("/events", json={"event_id": f"lib_backlog_before_{i}"})
    probes = iter(range(1_000_000))
    wait_until(
        lambda: server.client.post("/events", json={"event_id": f"lib_probe_{next(probes)}"}).status_code == 503,
        message="the backlog to be full",
    )
    network = CountsRequests()
    with Client(server.url, retries=RetryPolicy(throttled=None), transport=network) as client:
        results = [client.send(f"lib_backlog_{i}") for i in range(4)]
    assert all(result.stored_now for result in results)
    assert 503 in network.statuses  # the backlog did refuse the client, which waited it out


def test_api_keys_are_sent_and_their_refusals_are_typed(servers: ServerFactory) -> None:
    writer, reader = "w" * 20, "r" * 20
    server = servers.start(API_KEYS=f"{writer}:events:write,{reader}:events:read")
    with Client(server.url, api_key=writer) as client:
        client.send("lib_keyed")
        with pytest.raises(Forbidden):
            client.get("lib_keyed")
    with Client(server.url, api_key=reader) as client:
        assert client.get("lib_keyed").event_id == "lib_keyed"
    with Client(server.url) as client, pytest.raises(Unauthorized):
        client.get("lib_keyed")


def test_an_unreachable_service_raises_after_the_retries() -> None:
    with (
        Client(f"http://127.0.0.1:{unused_port()}", retries=QUICK_RETRIES) as client,
        pytest.raises(ServiceUnreachable) as refused,
    ):
        client.health()
    assert "tried 3 times" in str(refused.value)


def test_a_service_that_never_answers_times_out() -> None:
    with (
        silent_port() as port,
        Client(f"http://127.0.0.1:{port}", timeout=0.3, retries=0) as client,
        pytest.raises(ServiceUnreachable) as silent,
    ):
        client.health()
    assert "did not answer in time" in str(silent.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("127.0.0.1:8080", "did you mean 'http://127.0.0.1:8080'"),
        ("localhost:8080", "did you mean 'http://localhost:8080'"),
        ("ftp://host", "http:// or https://"),
        ("http://[::1", "not a valid URL"),
        ("http://", "no host"),
    ],
)
def test_an_unusable_url_is_refused_before_any_request(url: str, reason: str) -> None:
    with pytest.raises(InvalidServiceURL, match=reason):
        Client(url)


@pytest.mark.anyio
async def test_the_async_client_makes_the_same_calls(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as client:
        assert (await client.send("lib_async", {"a": 1})).stored_now
        assert (await client.get("lib_async")).payload == {"a": 1}
        with pytest.raises(Conflict):
            await client.send("lib_async", {"a": 2})
        result = await client.send_many([{"event_id": f"lib_async_{i}"} for i in range(40)], batch_size=25)
        assert result.accepted == 40
        assert [item.index for item in result.items] == list(range(40))
        seen = [event.event_id async for event in client.events(limit=10)]
        assert {f"lib_async_{i}" for i in range(40)} <= set(seen)
        assert (await client.health()).status == "ok"
        assert (await client.ready()).ready
        assert (await client.wait("lib_async", timeout=30)).final


def test_importing_eventctl_loads_neither_the_server_nor_its_frameworks() -> None:
    probe = (
        "import sys, json, eventctl\n"
        "bare = sorted(sys.modules)\n"
        "from eventctl import Client, AsyncClient\n"
        "print(json.dumps([bare, sorted(sys.modules)]))\n"
    )
    bare, with_client = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    )
    heavy = ("fastapi", "uvicorn", "starlette", "pydantic", "asyncpg", "prometheus_client", "standardwebhooks")
    server_side = ("eventctl.api", "eventctl.store", "eventctl.service", "eventctl.worker", "eventctl.server")
    for loaded in (bare, with_client):
        assert not [name for name in loaded if name.split(".")[0] in heavy]
        assert not [name for name in loaded if name.startswith(server_side)]
    assert [name for name in bare if name.startswith("eventctl")] == ["eventctl"]
    assert "httpx" not in bare


def test_the_version_is_the_packages() -> None:
    import eventctl

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    assert eventctl.__version__ == project["version"]
