"""The webhook handler at its edges, against real local sockets: the whole attempt is bounded by
``WEBHOOK_TIMEOUT_S``, every failure names the URL, and the requests say they come from eventctl."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from eventctl import __version__
from eventctl.handlers import Delivery, WebhookError, WebhookHandler

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
DELIVERY = Delivery("evt_1", b'{"order": 42}', 1)


@dataclass
class Receiver:
    """A raw HTTP receiver: it reads each request, remembers its headers, then runs ``answer``."""

    answer: Callable[[asyncio.StreamWriter], Awaitable[None]]
    url: str = ""
    headers: list[dict[str, str]] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader) -> dict[str, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")[1:]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return headers


@contextlib.asynccontextmanager
async def receiver(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[Receiver]:
    state = Receiver(answer)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            state.headers.append(await read_request(reader))
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the handler hung up: what the timeout tests expect
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        yield state
    finally:
        server.close()


async def answer_ok(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    await writer.drain()


async def answer_a_byte_every_300ms(writer: asyncio.StreamWriter) -> None:
    """A 200 that would take a minute to arrive: each read gets a byte well within any read timeout."""
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 150\r\n\r\n" + b"x" * 150
    for byte in response:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.3)


async def test_a_receiver_that_trickles_its_answer_is_timed_out_after_webhook_timeout_s() -> None:
    async with receiver(answer_a_byte_every_300ms) as hook:
        handler = WebhookHandler(hook.url, SECRET, timeout_seconds=1, concurrency=1)
        started = time.monotonic()
        try:
            with pytest.raises(WebhookError) as caught:
                await asyncio.wait_for(handler(DELIVERY), timeout=30)
        finally:
            await handler.aclose()
        # About the timeout of 1 s; the trickle would last a minute. The margin is for a busy machine.
        assert time.monotonic() - started < 1 + 10
        assert str(caught.value) == f"no answer from {hook.url} within 1s (WEBHOOK_TIMEOUT_S)"


async def test_a_receiver_that_never_answers_times_out_naming_the_url() -> None:
    async def silent(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    async with receiver(silent) as hook:
        handler = WebhookHandler(hook.url, SECRET, timeout_seconds=0.5, concurrency=1)
        try:
            with pytest.raises(WebhookError, match=f"no answer from {hook.url} within 0.5s"):
                await handler(DELIVERY)
        finally:
            await handler.aclose()


async def test_a_connection_error_names_the_url() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    handler = WebhookHandler(url, SECRET, timeout_seconds=5, concurrency=1)
    try:
        with pytest.raises(WebhookError) as caught:
            await handler(DELIVERY)
    finally:
        await handler.aclose()
    assert str(caught.value) == f"ConnectError: All connection attempts failed ({url})"


async def test_an_http_error_names_the_url_and_the_status() -> None:
    async def unavailable(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    async with receiver(unavailable) as hook:
        handler = WebhookHandler(hook.url, SECRET, timeout_seconds=5, concurrency=1)
        try:
            with pytest.raises(WebhookError) as caught:
                await handler(DELIVERY)
        finally:
            await handler.aclose()
    assert str(caught.value) == f"HTTP 503 from {hook.url}"


async def test_the_webhook_user_agent_is_eventctl_and_its_version() -> None:
    async with receiver(answer_ok) as hook:
        handler = WebhookHandler(hook.url, SECRET, timeout_seconds=5, concurrency=1)
        try:
            await handler(DELIVERY)
        finally:
            await handler.aclose()
    [headers] = hook.headers
    assert headers["user-agent"] == f"eventctl/{__version__}"
    assert headers["webhook-id"] == "evt_1"
