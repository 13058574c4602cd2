"""uvicorn's HTTP/1.1 protocol, with eventctl's rules at the two edges uvicorn handles without the app.

- A request uvicorn cannot parse (Content-Length beside Transfer-Encoding, a Content-Length that is no number,
  a malformed head) is answered with a 400 problem, as every other error is, instead of uvicorn's text/plain.
- A connection must send a complete request head within ``timeout_keep_alive`` (uvicorn's, 5 s) of opening or
  of its previous response, or it is closed. uvicorn arms its keep-alive timer only after a response, and
  disarms it at the first byte that arrives, so that a connection which never sends a request, or sends a
  byte and stops, was held open for ever.

The implementation is the one uvicorn would choose (httptools when it is installed, else h11).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from eventctl.api.problems import problem_body
from eventctl.api.schemas import PROBLEM_MEDIA_TYPE

MALFORMED_DETAIL = "the request is not valid HTTP/1.1: its head or its framing cannot be parsed"


def _malformed() -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = problem_body(400, "malformed-request", MALFORMED_DETAIL)
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return headers, body


class _HeadDeadline:
    """Closes a connection whose next request head is not complete within ``seconds`` of the moment the
    connection began to wait for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self._seconds = seconds
        self._timer: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.BaseTransport) -> None:
        self.cancel()
        if not transport.is_closing():
            self._timer = self._loop.call_later(self._seconds, transport.close)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _request_in_progress(cycle: Any) -> bool:
    return cycle is not None and not cycle.response_complete


class _HeadDeadlineMixin:
    """Starts a ``_HeadDeadline`` when a connection opens and after each response, and cancels it once a
    request is under way; mixed into both of uvicorn's protocols, whose attribute names it uses. Its
    ``super()`` calls reach the uvicorn protocol it is mixed into, which mypy cannot see from here: hence
    the ``misc`` ignores."""

    loop: asyncio.AbstractEventLoop
    timeout_keep_alive: int
    transport: asyncio.Transport
    cycle: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline = _HeadDeadline(self.loop, self.timeout_keep_alive)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_deadline.start(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if _request_in_progress(self.cycle):
            self._head_deadline.cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not _request_in_progress(self.cycle):
            self._head_deadline.start(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)  # type: ignore[misc]


class EventctlHttpToolsProtocol(_HeadDeadlineMixin, HttpToolsProtocol):
    """uvicorn's httptools protocol with eventctl's edges (see the module docstring)."""

    def send_400_response(self, msg: str) -> None:
        headers, body = _malformed()
        content = [STATUS_LINE[400]]
        for name, value in [*self.server_state.default_headers, *headers]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()


class EventctlH11Protocol(_HeadDeadlineMixin, H11Protocol):
    """uvicorn's h11 protocol with eventctl's edges (see the module docstring)."""

    def send_400_response(self, msg: str) -> None:
        headers, body = _malformed()
        for output in (
            self.conn.send(
                h11.Response(
                    status_code=400, headers=[*self.server_state.default_headers, *headers], reason=b"Bad Request"
                )
            ),
            self.conn.send(h11.Data(data=body)),
            self.conn.send(h11.EndOfMessage()),
        ):
            self.transport.write(output or b"")
        self.transport.close()


def http_protocol_class() -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``: uvicorn's own choice, with eventctl's edges."""
    return EventctlHttpToolsProtocol if AutoHTTPProtocol is HttpToolsProtocol else EventctlH11Protocol
