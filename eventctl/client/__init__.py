"""The Python client of eventctl's HTTP API (SPEC §14): ``Client`` blocks, ``AsyncClient`` is awaited.

    from eventctl import Client

    with Client("http://127.0.0.1:8080") as client:
        client.send("evt_1", {"order": 42})

Results are frozen dataclasses (``results``); errors share one base class, ``EventctlClientError``
(``errors``). Importing the client does not import the server.
"""

from eventctl.client.aio import AsyncClient
from eventctl.client.errors import (
    BadRequest,
    Conflict,
    EventctlClientError,
    Forbidden,
    InvalidServiceURL,
    NotAnEventctlService,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceError,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
    UnknownRoute,
    WaitTimedOut,
)
from eventctl.client.protocol import DEFAULT_BATCH_SIZE, DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL, RetryPolicy
from eventctl.client.results import Attempt, BatchResult, Event, EventPage, Health, ItemResult, Readiness, SendResult
from eventctl.client.sync import Client

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_URL",
    "AsyncClient",
    "Attempt",
    "BadRequest",
    "BatchResult",
    "Client",
    "Conflict",
    "Event",
    "EventPage",
    "EventctlClientError",
    "Forbidden",
    "Health",
    "InvalidServiceURL",
    "ItemResult",
    "NotAnEventctlService",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Readiness",
    "RetryPolicy",
    "SendResult",
    "ServiceError",
    "ServiceUnreachable",
    "Unauthorized",
    "Unavailable",
    "UnknownRoute",
    "WaitTimedOut",
]
