"""The client's logic, without I/O: shared by ``Client`` and ``AsyncClient``, which only move the bytes.

Each call is a *flow*: a generator that yields what it needs done (a ``Request`` to send, a ``Pause`` to
wait, ``Parallel`` flows to run) and gets back the outcome (an ``Answer``, or the transport's exception), then
returns the call's result or raises its error. Request building and the reading of answers live here, once;
when to retry and how long to wait in ``retries``; ``send_many``'s flow in ``many``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from eventctl.client.errors import (
    InvalidServiceURL,
    NotAnEventctlService,
    ServiceError,
    ServiceUnreachable,
    UnknownRoute,
    WaitTimedOut,
    service_error,
)
from eventctl.client.jsontext import dumps, loads
from eventctl.client.results import (
    DUPLICATE,
    Attempt,
    BulkResult,
    Event,
    EventPage,
    Health,
    Readiness,
    SendResult,
)
from eventctl.client.retries import RetryPolicy
from eventctl.domain import event_path

T = TypeVar("T")

# Failures after which the request may or may not have reached the service; resending is safe because
# every write is idempotent by its event id (see ``send_flow``).
RETRIED_FAILURES = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_NO_ROUTE = "urn:eventctl:problem:not-found"  # the router's 404, not an event's ("event-not-found")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive (httpx.Headers)
    content: bytes

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class Parallel:
    """Run these flows, concurrently where the client can; the outcome is the list of their results."""

    flows: Sequence[Flow[Any]]


Step = Request | Pause | Parallel
Flow = Generator[Step, Any, T]


# -- URLs and JSON ------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """``url`` without a trailing slash, or ``InvalidServiceURL`` saying what is wrong with it."""
    if "://" not in url:
        raise InvalidServiceURL(f"{url!r} has no scheme; did you mean 'http://{url}'?")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError as exc:
        raise InvalidServiceURL(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidServiceURL(f"{url!r}: the scheme must be http:// or https://, not {parts.scheme}://")
    if not parts.hostname:
        raise InvalidServiceURL(f"{url!r} has no host; for example 'http://127.0.0.1:8080'")
    if parts.query or parts.fragment:
        raise InvalidServiceURL(f"{url!r}: the service URL takes no query or fragment")
    return url.rstrip("/")


def json_object(answer: Answer) -> dict[str, Any] | None:
    try:
        value = loads(answer.content)
    except (orjson.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# -- one request, with retries ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exchange:
    """The last answer to a request, and how many tries it took."""

    answer: Answer
    tries: int


def exchange(
    request: Request,
    policy: RetryPolicy,
    base_url: str,
    timeout: float,
    final: Callable[[Answer], bool] = lambda answer: False,
) -> Flow[Exchange]:
    """Send ``request`` until an answer is final (by ``policy``, or because ``final`` says so), retrying as
    ``policy`` allows; raise ``ServiceUnreachable`` when no answer came."""
    retry = 0
    while True:
        outcome = yield request
        if isinstance(outcome, Answer):
            delay = (
                None
                if final(outcome)
                else policy.after_answer(retry, outcome.status, outcome.headers.get("retry-after"))
            )
            if delay is None:
                return Exchange(outcome, retry + 1)
        else:
            delay = policy.after_failure(retry) if isinstance(outcome, RETRIED_FAILURES) else None
            if delay is None:
                raise unreachable(outcome, base_url, timeout, retry + 1) from outcome
        yield Pause(delay)
        retry += 1


def unreachable(failure: BaseException, base_url: str, timeout: float, tries: int) -> ServiceUnreachable:
    after = f" (tried {tries} times)" if tries > 1 else ""
    if isinstance(failure, httpx.TimeoutException):
        return ServiceUnreachable(f"{base_url} did not answer in time ({timeout:g}s, {type(failure).__name__}){after}")
    reason = str(failure) or type(failure).__name__
    return ServiceUnreachable(f"cannot reach {base_url}: {reason}{after}")


def read(answer: Answer, base_url: str, request: Request, *, allow: Iterable[int] = ()) -> dict[str, Any]:
    """The JSON object of a successful answer (status 2xx or one in ``allow``); ``ServiceError`` for an
    eventctl problem; ``NotAnEventctlService`` for anything else."""
    body = json_object(answer)
    if 200 <= answer.status < 300 or answer.status in allow:
        if body is not None and answer.media_type == "application/json":
            return body
        raise foreign(answer, base_url, request)
    if body is not None and answer.media_type == "application/problem+json":
        if answer.status == 404 and body.get("type") == _NO_ROUTE:
            raise UnknownRoute(
                404,
                body,
                answer.content,
                answer.headers,
                f"{base_url} has no route {request.method} {request.path}: give the service's base URL"
                " (like http://127.0.0.1:8080), without a path below it",
            )
        raise service_error(answer.status, body, answer.content, answer.headers)
    raise foreign(answer, base_url, request)


def foreign(answer: Answer, base_url: str, request: Request) -> NotAnEventctlService:
    """The error for an answer no eventctl service gives: says what answered, in one line."""
    what = f"{answer.status}"
    if 300 <= answer.status < 400 and "location" in answer.headers:
        what += f" (a redirect to {answer.headers['location']})"
    elif not answer.content:
        what += " with an empty body"
    else:
        what += f" with {answer.media_type or 'no content type'}"
        snippet = " ".join(answer.content[:60].decode("utf-8", "replace").split())
        what += f" ({snippet}…)" if len(answer.content) > 60 else f" ({snippet})"
    if server := answer.headers.get("server"):
        what += f", server {server}"
    return NotAnEventctlService(
        f"{base_url} does not look like an eventctl service: {request.method} {request.path} answered {what};"
        " check the URL (scheme, host, port, no path below the service)",
        answer.status,
    )


# -- the calls ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What every flow needs to know about its client."""

    base_url: str
    timeout: float
    policy: RetryPolicy


def call(context: Context, request: Request, *, allow: Iterable[int] = ()) -> Flow[dict[str, Any]]:
    """One request with retries, read as JSON."""
    done = yield from exchange(request, context.policy, context.base_url, context.timeout)
    return read(done.answer, context.base_url, request, allow=allow)


def send_body(
    event_id: str,
    payload: Any,
    deliver_at: datetime | str | None,
    delay_ms: int | None,
    ordering_key: str | None,
) -> dict[str, Any]:
    """A ``POST /events`` body; the scheduling and ordering fields only when given."""
    body: dict[str, Any] = {"event_id": event_id}
    if payload is not None:
        body["payload"] = payload
    if deliver_at is not None:
        body["deliver_at"] = deliver_at.isoformat() if isinstance(deliver_at, datetime) else deliver_at
    if delay_ms is not None:
        body["delay_ms"] = delay_ms
    if ordering_key is not None:
        body["ordering_key"] = ordering_key
    return body


def send_flow(context: Context, body: Mapping[str, Any]) -> Flow[SendResult]:
    """``POST /events``. A 409 whose payload matches, met on a retry, is success: the first try stored the
    event and its answer was lost. A 409 on the first try is a ``Conflict``."""
    request = Request("POST", "/events", body=dumps(body))
    done = yield from exchange(request, context.policy, context.base_url, context.timeout)
    try:
        answer = read(done.answer, context.base_url, request)
    except ServiceError as exc:
        problem = exc.problem
        if exc.status == DUPLICATE and done.tries > 1 and problem.get("payload_matches") is True:
            return SendResult(str(body["event_id"]), True, str(problem.get("event_status")), None)
        raise
    return SendResult(answer["event_id"], False, answer["status"], done.answer.headers.get("location"))


def get_flow(context: Context, event_id: str) -> Flow[Event]:
    return Event.from_json((yield from call(context, Request("GET", event_path(event_id)))))


def page_params(filters: Mapping[str, Any], cursor: str | None, limit: int | None) -> tuple[tuple[str, str], ...]:
    """Query parameters of ``GET /events``. A list or tuple value repeats its parameter
    (``status=["failed", "retrying"]``); a ``datetime`` is sent as RFC 3339; ``None`` is left out."""
    params: list[tuple[str, str]] = []
    for name, value in {**filters, "limit": limit, "cursor": cursor}.items():
        for item in value if isinstance(value, list | tuple | set | frozenset) else [value]:
            if item is not None:
                params.append((name, item.isoformat() if isinstance(item, datetime) else str(item)))
    return tuple(params)


def filter_body(filters: Mapping[str, Any]) -> dict[str, Any]:
    """A bulk action's ``filter`` object: ``GET /events``'s parameters by name, a list for several statuses,
    a ``datetime`` as RFC 3339; ``None`` left out."""
    body: dict[str, Any] = {}
    for name, value in filters.items():
        if isinstance(value, list | tuple | set | frozenset):
            body[name] = [str(item) for item in value]
        elif isinstance(value, datetime):
            body[name] = value.isoformat()
        elif value is not None:
            body[name] = str(value)
    return body


def bulk_flow(context: Context, action: str, dry_run: bool, filters: Mapping[str, Any]) -> Flow[BulkResult]:
    body = {"action": action, "filter": filter_body(filters), "dry_run": dry_run}
    return BulkResult.from_json((yield from call(context, Request("POST", "/events/bulk", body=dumps(body)))))


def page_flow(context: Context, filters: Mapping[str, Any], cursor: str | None, limit: int | None) -> Flow[EventPage]:
    request = Request("GET", "/events", params=page_params(filters, cursor, limit))
    return EventPage.from_json((yield from call(context, request)))


def attempts_flow(context: Context, event_id: str) -> Flow[list[Attempt]]:
    body = yield from call(context, Request("GET", event_path(event_id) + "/attempts"))
    return [Attempt.from_json(item) for item in body["items"]]


def replay_flow(context: Context, event_id: str) -> Flow[None]:
    yield from call(context, Request("POST", event_path(event_id) + "/replay"))
    return None


def wait_flow(context: Context, event_id: str, timeout: float) -> Flow[Event]:
    """Follow an event until it is ``processed`` or ``failed``, polling more slowly as it takes longer (from
    50 ms to 1 s between reads); ``WaitTimedOut`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    interval = 0.05
    while True:
        event = yield from get_flow(context, event_id)
        if event.final:
            return event
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"{event_id!r} is still {event.status} after {timeout:g}s", event)
        yield Pause(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(1.0, interval * 2)


def delete_flow(context: Context, event_id: str) -> Flow[None]:
    request = Request("DELETE", event_path(event_id))
    done = yield from exchange(request, context.policy, context.base_url, context.timeout)
    if done.answer.status != 204:
        read(done.answer, context.base_url, request)  # raises for anything but a 2xx JSON answer
    return None


def health_flow(context: Context) -> Flow[Health]:
    return Health.from_json((yield from call(context, Request("GET", "/health"))))


def ready_flow(context: Context) -> Flow[Readiness]:
    """``GET /ready``; a 503 with a readiness body is an answer ("not ready"), not an error to retry."""
    request = Request("GET", "/ready")
    policy = dataclasses.replace(context.policy, throttled=0)
    done = yield from exchange(request, policy, context.base_url, context.timeout)
    body = json_object(done.answer)
    if done.answer.status == 503 and body is not None and "ready" in body and done.answer.media_type.endswith("json"):
        return Readiness.from_json(body)
    return Readiness.from_json(read(done.answer, context.base_url, request))


def metrics_flow(context: Context) -> Flow[str]:
    request = Request("GET", "/metrics")
    done = yield from exchange(request, context.policy, context.base_url, context.timeout)
    if done.answer.status == 200 and done.answer.media_type == "text/plain":
        return done.answer.content.decode("utf-8", "replace")
    read(done.answer, context.base_url, request)  # raises: an eventctl problem, or a foreign answer
    raise foreign(done.answer, context.base_url, request)
