"""The HTTP edges: HEAD wherever GET answers (RFC 9110), malformed requests answered as problems even where
uvicorn answers them itself, connections that never finish a request closed, and X-Forwarded-For believed
only from the proxies FORWARDED_ALLOW_IPS names."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
import uvicorn

from eventctl.api import create_app
from eventctl.auth import parse_api_keys
from eventctl.http_protocol import EventctlH11Protocol, EventctlHttpToolsProtocol
from tests import inprocess
from tests.conftest import ServerFactory, ServerProcess

KEY = "evk_head-test-reader-key"
# uvicorn's keep-alive timeout (5 s) bounds how long a connection may take to send a request head.
HEAD_DEADLINE_SECONDS = 5
MARGIN_SECONDS = 10


@pytest.fixture(scope="module")
def server(shared_servers: ServerFactory) -> ServerProcess:
    """One real server for the tests of this module that only read."""
    return shared_servers.start()


# -- HEAD ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/openapi.json", "/events", "/events/e1", "/nope"])
async def test_head_answers_as_get_does_without_a_body(path: str) -> None:
    async with inprocess.running_app() as running:
        assert (await running.client.post("/events", json={"event_id": "e1"})).status_code == 202
        for _ in range(3000):  # processed, so that nothing changes between the two calls
            if (await running.client.get("/events/e1")).json()["status"] == "processed":
                break
            await asyncio.sleep(0.01)
        get = await running.client.get(path)
        head = await running.client.head(path)
    assert head.status_code == get.status_code
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # the metrics change between the two calls
        assert head.headers["content-length"] == get.headers["content-length"]


@pytest.mark.anyio
async def test_a_405_lists_head_wherever_get_is_allowed() -> None:
    async with inprocess.running_app() as running:
        health = await running.client.put("/health")
        events = await running.client.delete("/events")
    assert health.status_code == 405
    assert health.headers["allow"] == "GET, HEAD"
    assert events.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.anyio
async def test_head_needs_the_scope_get_needs() -> None:
    async with inprocess.running_app(api_keys=parse_api_keys(f"{KEY}:events:read")) as running:
        anonymous = await running.client.head("/events/e1")
        reader = await running.client.head("/events/e1", headers={"Authorization": f"Bearer {KEY}"})
    assert anonymous.status_code == 401
    assert reader.status_code == 404


def test_head_on_a_real_server_counts_under_its_route(server: ServerProcess) -> None:
    response = server.client.head("/health")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0
    metrics = server.client.get("/metrics").text
    assert 'eventctl_http_requests_total{method="HEAD",route="/health",status="200"} 1.0' in metrics


# -- requests uvicorn answers itself -------------------------------------------------------------------------

MALFORMED = {
    "content-length beside chunked": b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "an absurd content-length": b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "a content-length that is no number": b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
    "a 100 kB URL": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "a header without a colon": b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
}


def exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send ``request`` on a new connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def problem_in(answer: bytes) -> dict[str, object]:
    """The problem an HTTP/1.1 answer carries, its framing checked."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert headers["content-type"] == "application/problem+json", answer
    assert int(headers["content-length"]) == len(body)
    problem: dict[str, object] = orjson.loads(body)
    assert status_line.startswith(f"HTTP/1.1 {problem['status']} ")
    return problem


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_request_uvicorn_cannot_parse_gets_a_400_problem(server: ServerProcess, case: str) -> None:
    problem = problem_in(exchange(httpx.URL(server.url).port or 0, MALFORMED[case]))
    assert (problem["status"], problem["type"]) == (400, "urn:eventctl:problem:malformed-request")


@pytest.fixture
async def h11_server() -> AsyncIterator[int]:
    """uvicorn with eventctl's h11 protocol (what uvicorn runs where httptools is not installed), on a real
    socket in this process; its port. A kept-alive connection is closed after 1 s (uvicorn's default is 5 s), as
    ``exchange`` reads until the server closes."""
    app = create_app(inprocess.test_settings())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(
        app, http=EventctlH11Protocol, lifespan="on", log_config=None, access_log=False, timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve([sock]))
    for _ in range(1500):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    await serving
    sock.close()


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_h11_answers_malformed_requests_with_problems(h11_server: int, case: str) -> None:
    """h11 takes two of these cases as valid (chunked wins over Content-Length; a long URL that arrives whole)
    and the app answers them; every answer is a problem all the same."""
    problem = problem_in(await asyncio.to_thread(exchange, h11_server, MALFORMED[case]))
    assert problem["status"] in (400, 404)


def test_the_protocol_is_the_one_uvicorn_would_choose() -> None:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from eventctl.http_protocol import http_protocol_class

    chosen = http_protocol_class()
    assert issubclass(chosen, AutoHTTPProtocol)
    assert chosen in (EventctlHttpToolsProtocol, EventctlH11Protocol)


# -- connections that never finish a request -----------------------------------------------------------------


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, from a connection that stays open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += sock.recv(65536)
    return received


def closed_by_server(sock: socket.socket) -> bool:
    """Wait for the server to close ``sock`` (or the margin to run out); whether it did."""
    sock.settimeout(HEAD_DEADLINE_SECONDS + MARGIN_SECONDS)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


@pytest.fixture
def idle_sockets(server: ServerProcess) -> Iterator[tuple[int, list[socket.socket]]]:
    port = httpx.URL(server.url).port or 0
    opened: list[socket.socket] = []
    yield port, opened
    for sock in opened:
        sock.close()


def test_connections_that_do_not_finish_a_request_are_closed_and_kept_alive_ones_are_served(
    idle_sockets: tuple[int, list[socket.socket]],
) -> None:
    """Three kinds of connection at once, so that they wait out one deadline together: twenty that never send
    a request are closed, not at once; one that stops in the middle of a request head is closed; one kept
    alive is served each request it sends within the deadline, and closed once it goes quiet."""
    port, opened = idle_sockets
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    started = time.monotonic()
    halfway = socket.create_connection(("127.0.0.1", port))
    halfway.sendall(b"GET /health HT")
    kept_alive = socket.create_connection(("127.0.0.1", port))
    opened.extend([*idle, halfway, kept_alive])
    kept_alive.settimeout(MARGIN_SECONDS)
    for _ in range(3):
        kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(kept_alive).startswith(b"HTTP/1.1 200 OK")
        time.sleep(1)
    assert all(closed_by_server(sock) for sock in idle)
    assert time.monotonic() - started >= HEAD_DEADLINE_SECONDS - 1  # not at once: they had their time
    assert closed_by_server(halfway)
    assert closed_by_server(kept_alive)


# -- forwarded headers ---------------------------------------------------------------------------------------


def rotating_forwarded_for(server_url: str, requests: int) -> list[int]:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        return [
            client.get("/events/missing", headers={"X-Forwarded-For": f"203.0.113.{i % 250 + 1}"}).status_code
            for i in range(requests)
        ]


def test_a_client_rotating_x_forwarded_for_is_limited_as_one_caller(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://", RATE_LIMIT="1/m,burst=10")
    statuses = rotating_forwarded_for(server.url, 30)
    assert statuses.count(404) == 10
    assert statuses.count(429) == 20


def test_forwarded_allow_ips_names_the_proxy_whose_x_forwarded_for_is_believed(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="memory://", RATE_LIMIT="1/m,burst=10", FORWARDED_ALLOW_IPS="127.0.0.1")
    statuses = rotating_forwarded_for(server.url, 30)
    assert statuses == [404] * 30  # thirty clients behind the proxy, each within its own limit
