"""eventctl: durable event ingestion over HTTP, with a worker and a CLI in one package.

``import eventctl`` loads nothing else: each name below is imported on first use (PEP 562), so a service
that only sends events (``from eventctl import Client``) loads the client alone, never the server.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would cost more than this package

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "Client": "eventctl.client",
    "AsyncClient": "eventctl.client",
    "RetryPolicy": "eventctl.client",
    "EventctlClientError": "eventctl.client",
    "ServiceError": "eventctl.client",
    "ServiceUnreachable": "eventctl.client",
    "Conflict": "eventctl.client",
    "Delivery": "eventctl.handlers",
    "PermanentError": "eventctl.errors",
}

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "Delivery",
    "EventctlClientError",
    "PermanentError",
    "RetryPolicy",
    "ServiceError",
    "ServiceUnreachable",
    "__version__",
]

if TYPE_CHECKING:
    from typing import Any

    from eventctl.client import (
        AsyncClient,
        Client,
        Conflict,
        EventctlClientError,
        RetryPolicy,
        ServiceError,
        ServiceUnreachable,
    )
    from eventctl.errors import PermanentError
    from eventctl.handlers import Delivery


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventctl' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next access is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
