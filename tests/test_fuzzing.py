"""No input makes the service fail: schemathesis against the live OpenAPI document of real servers, and
property tests on the real app in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventctl.domain import event_path
from tests.conftest import ServerFactory, ServerProcess
from tests.inprocess import running_app

pytestmark = pytest.mark.anyio

ADMIN = "fuzzing-admin-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent


def run_schemathesis(server: ServerProcess, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Every check schemathesis has, a bounded number of cases, a fixed seed (so a failure reproduces)."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
        "--checks", "all", "--max-examples", "25", "--seed", "1", "--workers", "1", *extra,
    ]  # fmt: skip
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=environment)


def test_schemathesis_finds_nothing_against_the_open_api(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(DATABASE_URL="memory://", PROCESSING_DELAY_MS=0)
    result = run_schemathesis(server, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "passed" in result.stdout


def test_schemathesis_finds_nothing_against_the_secured_api(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(DATABASE_URL="memory://", API_KEYS=f"{ADMIN}:admin", ENV="prod", RATE_LIMIT="10000/s")
    result = run_schemathesis(server, tmp_path, "--header", f"Authorization: Bearer {ADMIN}")
    assert result.returncode == 0, result.stdout[-6000:]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
event_ids = st.one_of(st.text(max_size=300), st.integers(), st.none(), st.lists(st.text(), max_size=2))
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"event_id": event_ids}, optional={"payload": json_values, "extra": json_values}),
)


@pytest.fixture
async def fuzzed() -> AsyncIterator[httpx.AsyncClient]:
    """One app for all the examples of a test (hypothesis runs them within the one test call)."""
    async with running_app(max_body_bytes=2048) as running:
        yield running.client


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
async def test_any_json_body_gets_202_400_409_or_413(fuzzed: httpx.AsyncClient, body: Any) -> None:
    response = await fuzzed.post("/events", content=json.dumps(body))
    assert response.status_code in {202, 400, 409, 413}, response.text
    if response.status_code != 202:
        assert response.headers["content-type"] == "application/problem+json"


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=3000))
async def test_any_bytes_at_all_get_a_4xx_or_202_never_a_5xx(fuzzed: httpx.AsyncClient, body: bytes) -> None:
    response = await fuzzed.post("/events", content=body)
    assert response.status_code in {202, 400, 409, 413}


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_id=st.text(min_size=1, max_size=40))
async def test_any_event_id_in_a_url_is_a_200_or_404(fuzzed: httpx.AsyncClient, event_id: str) -> None:
    assert (await fuzzed.get(event_path(event_id))).status_code in {200, 404}
