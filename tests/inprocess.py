"""The in-process test layer: the real app and the real worker, without a process of their own.

Logic that needs no process (the HTTP contract, validation, the worker's rules) is tested here, which is much
faster than starting ``eventctl serve``: the app runs its lifespan (the service starts, with a real store and
worker) and requests travel through ``httpx.ASGITransport``. Signals, kills and durability stay with the real
processes of ``conftest.ServerFactory``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from eventctl.api import EventctlApp, create_app
from eventctl.settings import Settings

BASE_URL = "http://eventctl.test"
# What the subprocess servers of the tests run with, unless a test says otherwise: no simulated work.
TEST_DEFAULTS: dict[str, Any] = {"database_url": "memory://", "processing_delay_ms": 0}


def test_settings(**overrides: Any) -> Settings:
    """``Settings`` with the test defaults and ``overrides`` (by field name), checked as ``Settings.load``
    would check them."""
    settings = dataclasses.replace(Settings(), **{**TEST_DEFAULTS, **overrides})
    settings._check_consistency()
    return settings


@dataclasses.dataclass
class RunningApp:
    """An app whose service is started, and a client that calls it in process."""

    app: EventctlApp
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def running_app(settings: Settings | None = None, **overrides: Any) -> AsyncIterator[RunningApp]:
    """Start an app (lifespan and all) for ``settings``, or for ``test_settings(**overrides)``; stop it after."""
    app = create_app(settings if settings is not None else test_settings(**overrides))
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield RunningApp(app, client)
