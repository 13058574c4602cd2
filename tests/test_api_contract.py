"""The HTTP contract (SPEC §2): codes, headers and bodies, through the real app in process; and once over
the wire, where uvicorn's framing matters."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ServerFactory
from tests.inprocess import running_app, wait_for_status

pytestmark = pytest.mark.anyio

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 4096


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(processing_delay_ms=50, max_body_bytes=MAX_BODY_BYTES) as running:
        yield running.client


def new_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


async def post(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post("/events", content=content, headers={"content-type": "application/json"}, **kwargs)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    return problem


async def test_new_event_is_202_with_location_and_accepted_body(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    response = await post(client, {"event_id": event_id, "payload": {"any": "data"}})
    assert response.status_code == 202
    assert response.json() == {"event_id": event_id, "status": "accepted"}
    assert response.headers["location"] == f"/events/{event_id}"
    assert response.headers["content-type"] == "application/json"


async def test_accepted_event_is_readable_at_its_location_with_every_field(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    location = (await post(client, {"event_id": event_id, "payload": {"n": 1}})).headers["location"]
    event = (await client.get(location)).json()
    assert set(event) == {
        "event_id", "status", "payload", "attempts", "received_at", "updated_at",
        "processed_at", "next_attempt_at", "last_error", "ordering_key", "blocked_by",
    }  # fmt: skip
    assert event["event_id"] == event_id
    assert event["payload"] == {"n": 1}
    assert RFC3339_UTC.match(event["received_at"])
    assert RFC3339_UTC.match(event["updated_at"])


async def test_event_reaches_processed_with_one_attempt(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    await post(client, {"event_id": event_id})
    event = await wait_for_status(client, event_id, "processed")
    assert event["attempts"] == 1
    assert RFC3339_UTC.match(event["processed_at"])
    assert event["next_attempt_at"] is None
    assert event["last_error"] is None


async def test_duplicate_is_409_with_stored_status_and_matching_payload(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    assert (await post(client, {"event_id": event_id, "payload": {"a": 1, "b": [1, 2]}})).status_code == 202
    problem = assert_problem(await post(client, {"event_id": event_id, "payload": {"b": [1, 2], "a": 1}}), 409)
    assert problem["event_id"] == event_id
    assert problem["event_status"] in {"accepted", "processing", "processed"}
    assert problem["payload_matches"] is True


async def test_duplicate_with_a_different_payload_says_it_does_not_match(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    await post(client, {"event_id": event_id, "payload": {"a": 1}})
    different = await post(client, {"event_id": event_id, "payload": {"a": 2}})
    assert assert_problem(different, 409)["payload_matches"] is False
    assert assert_problem(await post(client, {"event_id": event_id}), 409)["payload_matches"] is False


async def test_duplicate_while_processing_reports_processing() -> None:
    async with running_app(processing_delay_ms=60_000, shutdown_timeout_s=0) as running:
        event_id = new_id()
        await post(running.client, {"event_id": event_id})
        await wait_for_status(running.client, event_id, "processing")
        duplicate = await post(running.client, {"event_id": event_id})
        assert assert_problem(duplicate, 409)["event_status"] == "processing"


async def test_missing_payload_is_stored_as_empty_object(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    await post(client, {"event_id": event_id})
    assert (await client.get(f"/events/{event_id}")).json()["payload"] == {}


@pytest.mark.parametrize("payload", [[1, "two", None], "text", 42, 1.5, None, True, {"deep": {"er": [{}]}}])
async def test_payload_may_be_any_json_value(client: httpx.AsyncClient, payload: Any) -> None:
    event_id = new_id()
    assert (await post(client, {"event_id": event_id, "payload": payload})).status_code == 202
    assert (await client.get(f"/events/{event_id}")).json()["payload"] == payload


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**40, 12345678901234567890123])
async def test_integers_of_any_size_are_kept_exactly(client: httpx.AsyncClient, number: int) -> None:
    event_id = new_id()
    body = f'{{"event_id": "{event_id}", "payload": {{"n": {number}, "s": "x"}}}}'.encode()
    assert (await post(client, body)).status_code == 202
    stored = await client.get(f"/events/{event_id}")
    assert f'"n":{number}' in stored.text


async def test_other_top_level_fields_are_ignored(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    assert (await post(client, {"event_id": event_id, "extra": "ignored", "payload": 1})).status_code == 202
    assert "extra" not in (await client.get(f"/events/{event_id}")).json()


async def test_body_is_parsed_as_json_whatever_the_content_type(client: httpx.AsyncClient) -> None:
    event_id = new_id()
    response = await client.post(
        "/events", content=orjson.dumps({"event_id": event_id}), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 202


INVALID_BODIES = {
    "invalid JSON": b'{"event_id": "x"',
    "empty body": b"",
    "array": b'[{"event_id": "x"}]',
    "string": b'"evt_1"',
    "number": b"12",
    "null": b"null",
    "missing event_id": b'{"payload": {}}',
    "empty event_id": b'{"event_id": ""}',
    "numeric event_id": b'{"event_id": 123}',
    "null event_id": b'{"event_id": null}',
    "object event_id": b'{"event_id": {"id": "x"}}',
    "too long event_id": orjson.dumps({"event_id": "x" * 257}),
    "event_id with a line break": b'{"event_id": "a\\nb"}',
    "event_id with a control character": b'{"event_id": "a\\u0000b"}',
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_invalid_body_is_400_problem_with_errors(client: httpx.AsyncClient, body: bytes) -> None:
    problem = assert_problem(await post(client, body), 400)
    assert problem["errors"]
    assert all({"detail", "pointer"} <= error.keys() for error in problem["errors"])


async def test_event_id_of_exactly_256_characters_is_accepted(client: httpx.AsyncClient) -> None:
    event_id = uuid.uuid4().hex * 8
    assert len(event_id) == 256
    assert (await post(client, {"event_id": event_id})).status_code == 202


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    body = orjson.dumps({"event_id": new_id(), "payload": "x" * 5000})
    assert_problem(await post(client, body), 413)


async def test_streamed_body_over_the_limit_is_413_without_a_content_length(client: httpx.AsyncClient) -> None:
    event_id = new_id()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"event_id": "' + event_id.encode() + b'", "payload": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = await client.post("/events", content=chunks())
    assert_problem(response, 413)
    assert (await client.get(f"/events/{event_id}")).status_code == 404


@pytest.mark.parametrize("event_id", ["a/b", "with space", "q?x=1#frag", "100%", "ünïcødé", "replay", "x/replay"])
async def test_any_printable_event_id_round_trips_through_its_location(
    client: httpx.AsyncClient, event_id: str
) -> None:
    event_id = f"{event_id}-{uuid.uuid4().hex[:8]}"
    response = await post(client, {"event_id": event_id})
    assert response.status_code == 202
    event = await client.get(response.headers["location"])
    assert event.status_code == 200
    assert event.json()["event_id"] == event_id


async def test_unknown_event_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/events/never-sent"), 404)


async def test_health_is_200_with_go_style_uptime(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert re.fullmatch(r"(\d+h\d+m\d+s|\d+m\d+s|\d+s)", body["uptime"])


async def test_ready_is_200_when_worker_runs_and_store_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "ready": True}


async def test_unknown_route_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404)
    assert_problem(await client.delete("/health"), 405)


async def test_empty_event_id_in_the_path_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/events/"), 404)


async def test_openapi_documents_every_response_and_never_422(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "422" not in orjson.dumps(document).decode()
    post_events = document["paths"]["/events"]["post"]
    assert set(post_events["responses"]) == {"202", "400", "409", "413", "429", "503"}
    assert "Location" in post_events["responses"]["202"]["headers"]
    assert set(document["paths"]["/events/{event_id}"]["get"]["responses"]) >= {"200", "404"}
    assert set(document["paths"]["/ready"]["get"]["responses"]) == {"200", "503"}
    assert "200" in document["paths"]["/health"]["get"]["responses"]
    assert {"EventIn", "EventAccepted", "EventOut", "Problem"} <= set(document["components"]["schemas"])


async def test_interactive_docs_are_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_payload_nested_deeper_than_the_limit_is_400(client: httpx.AsyncClient) -> None:
    shallow: Any = "leaf"
    for _ in range(64):
        shallow = [shallow]
    assert (await post(client, {"event_id": new_id(), "payload": shallow})).status_code == 202
    deep = [shallow]
    problem = assert_problem(await post(client, {"event_id": new_id(), "payload": deep}), 400)
    assert problem["errors"][0]["pointer"] == "#/payload"


async def test_wrong_method_is_405_with_the_documented_methods_in_allow(client: httpx.AsyncClient) -> None:
    assert (await client.request("OPTIONS", "/events")).headers["allow"] == "GET, HEAD, POST"  # HEAD where GET
    assert (await client.put("/events/x")).headers["allow"] == "DELETE, GET, HEAD"
    assert (await client.get("/events/x/replay")).status_code == 404  # an event whose id is "x/replay"
    assert (await client.put("/events/x/replay")).headers["allow"] == "POST"


def test_a_real_server_answers_the_contract_over_the_wire(servers: ServerFactory) -> None:
    """What uvicorn's framing decides: a chunked body over the limit is refused as it streams, and the
    answers' headers arrive as the app sent them."""
    server = servers.start(DATABASE_URL="memory://", MAX_BODY_BYTES=MAX_BODY_BYTES)
    event_id = new_id()
    accepted = server.client.post("/events", json={"event_id": event_id})
    assert accepted.status_code == 202
    assert accepted.headers["location"] == f"/events/{event_id}"
    assert accepted.headers["content-type"] == "application/json"
    duplicate = server.client.post("/events", json={"event_id": event_id})
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == PROBLEM

    def chunks() -> Iterator[bytes]:
        yield b'{"event_id": "streamed", "payload": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = server.client.post("/events", content=chunks())
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == PROBLEM
    assert server.client.get("/events/streamed").status_code == 404
