"""The Python client of eventctl's HTTP API (SPEC §14): ``Client`` blocks, ``AsyncClient`` is awaited.

    from eventctl import Client

    with Client("http://127.0.0.1:8080") as client:
        client.send("evt_1", {"order": 42})

Results are frozen dataclasses (``results``); errors share one base class, ``EventctlClientError``
(``errors``). Importing the client does not import the server; importing this package alone loads no submodule (each
name is loaded on first use, PEP 562), so the CLI shows its help without loading httpx.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # as in eventctl/__init__.py: typing is not imported at run time

_EXPORTS = {
    "DEFAULT_BATCH_SIZE": "eventctl.client.defaults",
    "DEFAULT_TIMEOUT_SECONDS": "eventctl.client.defaults",
    "DEFAULT_URL": "eventctl.client.defaults",
    "AsyncClient": "eventctl.client.aio",
    "Attempt": "eventctl.client.results",
    "BadRequest": "eventctl.client.errors",
    "BatchResult": "eventctl.client.results",
    "BulkResult": "eventctl.client.results",
    "Client": "eventctl.client.sync",
    "Conflict": "eventctl.client.errors",
    "Event": "eventctl.client.results",
    "EventPage": "eventctl.client.results",
    "EventctlClientError": "eventctl.client.errors",
    "Forbidden": "eventctl.client.errors",
    "Health": "eventctl.client.results",
    "InvalidServiceURL": "eventctl.client.errors",
    "ItemResult": "eventctl.client.results",
    "NotAnEventctlService": "eventctl.client.errors",
    "NotFound": "eventctl.client.errors",
    "PayloadTooLarge": "eventctl.client.errors",
    "RateLimited": "eventctl.client.errors",
    "Readiness": "eventctl.client.results",
    "RetryPolicy": "eventctl.client.retries",
    "SendResult": "eventctl.client.results",
    "ServiceError": "eventctl.client.errors",
    "ServiceUnreachable": "eventctl.client.errors",
    "Unauthorized": "eventctl.client.errors",
    "Unavailable": "eventctl.client.errors",
    "UnknownRoute": "eventctl.client.errors",
    "WaitTimedOut": "eventctl.client.errors",
}

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_URL",
    "AsyncClient",
    "Attempt",
    "BadRequest",
    "BatchResult",
    "BulkResult",
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

if TYPE_CHECKING:
    from typing import Any

    from eventctl.client.aio import (
        AsyncClient,
    )
    from eventctl.client.defaults import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_TIMEOUT_SECONDS,
        DEFAULT_URL,
    )
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
    from eventctl.client.results import (
        Attempt,
        BatchResult,
        BulkResult,
        Event,
        EventPage,
        Health,
        ItemResult,
        Readiness,
        SendResult,
    )
    from eventctl.client.retries import (
        RetryPolicy,
    )
    from eventctl.client.sync import (
        Client,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventctl.client' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
