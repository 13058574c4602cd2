"""The client's errors: one base class, and a message that always carries the service's reasons.

``ServiceError`` and its subclasses mean the service answered no; ``ServiceUnreachable`` means no answer came;
``NotAnEventctlService`` means something answered that is not an eventctl service; ``InvalidServiceURL`` is
raised before any request, for a URL that cannot be used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventctl.errors import EventctlError


class EventctlClientError(EventctlError):
    """Base class of every error the client raises. ``status`` is the HTTP status when an answer came."""

    status: int | None = None


class InvalidServiceURL(EventctlClientError, ValueError):
    """The service URL cannot be used (no ``http://`` or ``https://``, no host, unbalanced brackets...)."""


class ServiceUnreachable(EventctlClientError):
    """No answer: the connection failed, or the service did not answer within the timeout (after retries)."""


class WaitTimedOut(EventctlClientError):
    """An event was not ``processed`` or ``failed`` within the time given to wait for it; ``event`` is how
    it was last seen."""

    def __init__(self, message: str, event: Any) -> None:
        super().__init__(message)
        self.event = event


class NotAnEventctlService(EventctlClientError):
    """Something answered, but not as an eventctl service would: an HTML page, a redirect, a 204, a 404 that
    is not a problem document. The URL probably points at another server or at a path below the service."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServiceError(EventctlClientError):
    """The service answered no. ``problem`` is its RFC 9457 problem document (empty if it sent none),
    ``content`` the body exactly as it came, ``headers`` the answer's headers.

    The message shows the title, the detail and every reason the problem gives (``errors`` with their
    pointers, ``event_status``, ``payload_matches``), on one line.
    """

    def __init__(
        self,
        status: int,
        problem: Mapping[str, Any],
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.problem: Mapping[str, Any] = problem
        self.content = content
        self.headers: Mapping[str, str] = headers or {}
        super().__init__(message or describe_problem(status, problem))

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The problem's ``errors`` list (what is wrong, with a JSON pointer each), or an empty list."""
        errors = self.problem.get("errors")
        return [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []


class BadRequest(ServiceError):
    """400: the request is not valid; ``errors`` says what is wrong."""


class Unauthorized(ServiceError):
    """401: no API key, or one the service does not know."""


class Forbidden(ServiceError):
    """403: the API key lacks the scope this call needs."""


class NotFound(ServiceError):
    """404: no event has this id."""


class UnknownRoute(NotFound):
    """404 from the service's router: it has no such route. The URL probably has a path below the service's
    base URL (``http://host:8080/api``), or the service is older than this client."""


class Conflict(ServiceError):
    """409: an event with this id exists (on send) or is not in a state that allows the call (on replay or
    delete). ``event_status`` is the stored event's status; ``payload_matches`` (on send) whether the stored
    payload equals the one sent."""

    @property
    def event_status(self) -> str | None:
        status = self.problem.get("event_status")
        return status if isinstance(status, str) else None

    @property
    def payload_matches(self) -> bool | None:
        matches = self.problem.get("payload_matches")
        return matches if isinstance(matches, bool) else None


class PayloadTooLarge(ServiceError):
    """413: the body is larger than the service's ``MAX_BODY_BYTES``."""


class RateLimited(ServiceError):
    """429: over the service's ``RATE_LIMIT``, still so after the client's retries."""


class Unavailable(ServiceError):
    """503: the service is draining, its store is unavailable, or its backlog is full, still so after the
    client's retries. Nothing was stored."""


ERRORS_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: Unavailable,
}


def service_error(status: int, problem: Mapping[str, Any], content: bytes, headers: Mapping[str, str]) -> ServiceError:
    """The error class for ``status`` (``ServiceError`` itself for statuses without one of their own)."""
    return ERRORS_BY_STATUS.get(status, ServiceError)(status, problem, content, headers)


def describe_problem(status: int, problem: Mapping[str, Any]) -> str:
    """One line: ``Title (status): detail; reasons``. Reasons are the ``errors`` (``pointer: detail``),
    ``event_status`` and ``payload_matches``, whichever the problem has."""
    title = problem.get("title") or f"HTTP {status}"
    line = f"{title} ({status})"
    detail = problem.get("detail")
    if detail and detail != title:
        line += f": {detail}"
    reasons = []
    errors = problem.get("errors")
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, Mapping):
            pointer, error_detail = error.get("pointer"), error.get("detail")
            reasons.append(f"{pointer}: {error_detail}" if pointer else str(error_detail))
    if "event_status" in problem:
        reasons.append(f"event_status={problem['event_status']}")
    if "payload_matches" in problem:
        reasons.append("payload_matches=" + ("true" if problem["payload_matches"] else "false"))
    if reasons:
        line += " [" + "; ".join(reasons) + "]"
    return " ".join(line.split())  # one line, whatever the service put in its texts
