"""A small typed client for the eventctl HTTP API, used by the CLI and importable by anyone.

Every call returns a ``Reply`` for a 2xx answer and raises ``ServiceError`` for any other (the reply is
attached, body as it came) or ``ServiceUnreachable`` when no answer arrived in time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from eventctl.domain import TERMINAL_STATUSES, event_path
from eventctl.errors import EventctlError

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer of the service: its status code and body exactly as they came."""

    status_code: int
    content: bytes
    headers: httpx.Headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or ``None`` if it is not JSON."""
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return None


class ServiceError(EventctlError):
    """The service answered, and said no (any status of 400 or more)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        body = reply.json()
        if isinstance(body, dict) and "title" in body:
            message = f"{body['title']}: {body.get('detail', '')}".rstrip(": ")
        elif isinstance(body, dict) and "status" in body:
            message = f"HTTP {reply.status_code}: {body['status']}"
        else:
            message = f"HTTP {reply.status_code}: {reply.text.strip()[:200]}"
        super().__init__(message)


class ServiceUnreachable(EventctlError):
    """No answer: the service could not be reached, or it did not answer in time."""


class WaitTimedOut(EventctlError):
    """An event did not reach a final status within the time given to wait for it."""


class EventctlClient:
    """Calls one eventctl service. Use it as a context manager, or call ``close``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> EventctlClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, event_id: str, payload: Any = None) -> Reply:
        """``POST /events``. A ``None`` payload is left out, and the service stores ``{}``."""
        body: dict[str, Any] = {"event_id": event_id}
        if payload is not None:
            body["payload"] = payload
        return self._call("POST", "/events", content=orjson.dumps(body))

    def send_body(self, body: bytes) -> Reply:
        """``POST /events`` with a body exactly as given (one line of a JSONL file, say)."""
        return self._call("POST", "/events", content=body)

    def status(self, event_id: str) -> Reply:
        """``GET /events/{event_id}``."""
        return self._call("GET", event_path(event_id))

    def list_events(self, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> Reply:
        """``GET /events``: one page, newest first; pass the reply's ``next_cursor`` for the next."""
        params = {key: value for key, value in (("status", status), ("limit", limit), ("cursor", cursor)) if value}
        return self._call("GET", "/events", params=params)

    def replay(self, event_id: str) -> Reply:
        """``POST /events/{event_id}/replay``: a failed event back to accepted."""
        return self._call("POST", event_path(event_id) + "/replay")

    def wait_until_final(self, event_id: str, *, timeout: float, poll_seconds: float = 0.2) -> Reply:
        """Follow an event until it is ``processed`` or ``failed``; raise ``WaitTimedOut`` after ``timeout``
        seconds."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.status(event_id)
            if reply.json().get("status") in TERMINAL_STATUSES:
                return reply
            if time.monotonic() >= deadline:
                raise WaitTimedOut(f"{event_id!r} is still {reply.json().get('status')} after {timeout:g}s")
            time.sleep(poll_seconds)

    def metrics(self) -> Reply:
        """``GET /metrics``: Prometheus text."""
        return self._call("GET", "/metrics")

    def health(self) -> Reply:
        return self._call("GET", "/health")

    def ready(self) -> Reply:
        return self._call("GET", "/ready")

    def _call(
        self, method: str, path: str, *, content: bytes | None = None, params: dict[str, Any] | None = None
    ) -> Reply:
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers, params=params)
        except httpx.TimeoutException as exc:
            raise ServiceUnreachable(f"{self._http.base_url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ServiceUnreachable(f"cannot reach {self._http.base_url}: {exc or type(exc).__name__}") from exc
        reply = Reply(response.status_code, response.content, response.headers)
        if response.status_code >= 400:
            raise ServiceError(reply)
        return reply
