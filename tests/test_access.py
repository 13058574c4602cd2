"""Only the right callers, at a rate the service can hold (SPEC §6): keys and scopes, rate limits, load
shedding, and keys that never leak. The rules are checked on the real app in process; what needs a process
(a refused start, the CLI sending its key) on real ones."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from eventctl.logs import ConsoleFormatter, JsonFormatter
from tests.conftest import ServerFactory
from tests.inprocess import RunningApp, running_app, settings_from_env, wait_until

pytestmark = pytest.mark.anyio

WRITER = "writer-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef0"
UNKNOWN = "unknown-key-0123456789abcdef"
API_KEYS = f"{WRITER}:events:write,{READER}:events:read,{ADMIN}:admin"


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@pytest.fixture
async def secured() -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_from_env(API_KEYS=API_KEYS, ENV="prod", LOG_LEVEL="debug")) as running:
        await running.client.post("/events", json={"event_id": "existing"}, headers=bearer(WRITER))
        yield running.client


# (method, path, the key that has the scope, a key that lacks it, the answer to the right key)
ROUTES = [
    ("POST", "/events", WRITER, READER, 202),
    ("GET", "/events", READER, WRITER, 200),
    ("GET", "/events/existing", READER, WRITER, 200),
    ("POST", "/events/existing/replay", ADMIN, WRITER, 409),  # the scope lets it through; it is not failed
]


@pytest.mark.parametrize(("method", "path", "right", "wrong", "answer"), ROUTES)
async def test_auth_matrix(
    secured: httpx.AsyncClient, method: str, path: str, right: str, wrong: str, answer: int
) -> None:
    async def call(key: str | None) -> httpx.Response:
        body = {"event_id": f"m-{time.monotonic_ns()}"} if path == "/events" and method == "POST" else None
        return await secured.request(method, path, json=body, headers=bearer(key))

    for key, expected in ((None, 401), (UNKNOWN, 401), (wrong, 403), (right, answer)):
        response = await call(key)
        assert response.status_code == expected, (method, path, key, response.text)
        if expected in (401, 403):
            assert response.headers["content-type"] == "application/problem+json"
        if expected == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")


async def test_admin_may_do_everything(secured: httpx.AsyncClient) -> None:
    assert (await secured.post("/events", json={"event_id": "by-admin"}, headers=bearer(ADMIN))).status_code == 202
    assert (await secured.get("/events/by-admin", headers=bearer(ADMIN))).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready", "/openapi.json", "/docs"])
async def test_health_readiness_and_docs_need_no_key(secured: httpx.AsyncClient, path: str) -> None:
    assert (await secured.get(path)).status_code == 200


async def test_a_malformed_authorization_header_is_401(secured: httpx.AsyncClient) -> None:
    for value in ("Basic abc", "Bearer", f"Token {WRITER}", WRITER):
        assert (await secured.get("/events", headers={"Authorization": value})).status_code == 401


async def test_the_openapi_document_declares_bearer_auth_and_its_answers(secured: httpx.AsyncClient) -> None:
    document = (await secured.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    post_events = document["paths"]["/events"]["post"]
    assert post_events["security"] == [{"bearer": []}]
    assert {"401", "403", "429"} <= set(post_events["responses"])
    assert "security" not in document["paths"]["/health"]["get"]


def serve(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventctl", "serve", "--port", "0", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
        env={**{k: v for k, v in os.environ.items() if k not in ("API_KEYS", "ENV")}, **env},
    )  # fmt: skip


@pytest.mark.parametrize("env", ["prod", "staging"])
def test_staging_and_prod_refuse_to_start_without_keys(env: str, tmp_path: Path) -> None:
    result = serve([], {"ENV": env}, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "API_KEYS" in line]
    assert "staging and prod need API_KEYS" in line


async def test_dev_without_keys_is_open_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    async with running_app(settings_from_env(ENV="dev")) as running:
        assert (await running.client.post("/events", json={"event_id": "open"})).status_code == 202
    assert caplog.text.count("API_KEYS is not set") == 1


async def test_keys_can_come_from_a_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# mounted from a secret\n{WRITER}:events:write\n{READER}:events:read\n")
    async with running_app(settings_from_env(API_KEYS_FILE=str(keys_file), ENV="prod")) as running:
        client = running.client
        assert (await client.post("/events", json={"event_id": "f"}, headers=bearer(WRITER))).status_code == 202
        assert (await client.get("/events/f", headers=bearer(READER))).status_code == 200
        assert (await client.get("/events/f")).status_code == 401


def test_a_bad_api_keys_value_is_reported_without_the_key(tmp_path: Path) -> None:
    secret = "s3cret-s3cret-s3cret-value"  # noqa: S105 - a made-up key, to look for in the output
    result = serve([], {"API_KEYS": f"{secret}:events:everything"}, tmp_path)
    assert result.returncode != 0
    assert "API_KEYS" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_the_cli_sends_its_api_key(servers: ServerFactory) -> None:
    secured = servers.start(DATABASE_URL="memory://", API_KEYS=API_KEYS, ENV="prod")

    def eventctl(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventctl", *args, "--url", secured.url],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        )  # fmt: skip

    assert eventctl("send", "cli-keyed", "--api-key", WRITER).returncode == 0
    assert eventctl("status", "cli-keyed", EVENTCTL_API_KEY=READER).returncode == 0
    refused = eventctl("status", "cli-keyed")
    assert refused.returncode == 1
    assert "Unauthorized" in refused.stderr


async def test_no_key_ever_appears_in_the_logs(secured: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    """Keys are used right and wrong, at debug level; no log line, in either format, holds any of them."""
    caplog.set_level(logging.DEBUG)
    for key in (WRITER, READER, ADMIN, UNKNOWN):
        await secured.post("/events", json={"event_id": f"scan-{key[:6]}"}, headers=bearer(key))
        await secured.get("/events", headers=bearer(key))
        await secured.post("/events/existing/replay", headers=bearer(key))
    lines = [
        formatter.format(record) for record in caplog.records for formatter in (JsonFormatter(), ConsoleFormatter())
    ]
    assert any("/events/existing/replay" in line for line in lines)  # the requests were logged
    for key in (WRITER, READER, ADMIN, UNKNOWN):
        assert not [line for line in lines if key in line]
        assert not [record for record in caplog.records if key in repr(record.__dict__)]


async def test_over_the_rate_limit_is_429_with_retry_after_and_honouring_it_succeeds() -> None:
    async with running_app(settings_from_env(RATE_LIMIT="2/s,burst=5")) as running:
        client = running.client
        codes = []
        for i in range(12):
            response = await client.post("/events", json={"event_id": f"burst{i}"})
            codes.append(response.status_code)
            assert response.headers["ratelimit-policy"] == '"default";q=5;w=3'
            assert response.headers["ratelimit"].startswith('"default";r=')
        assert codes.count(202) <= 5 + 2  # the burst, plus what refilled while the loop ran (well under a second)
        refused = await client.post("/events", json={"event_id": "refused"})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        retry_after = int(refused.headers["retry-after"])
        assert retry_after >= 1
        await asyncio.sleep(retry_after)
        assert (await client.post("/events", json={"event_id": "after-waiting"})).status_code == 202


async def test_accepted_events_in_a_timed_window_stay_within_rate_times_time_plus_burst() -> None:
    """Through the app, on the real clock (the bucket's arithmetic to the token is in test_ratelimit.py)."""
    async with running_app(settings_from_env(RATE_LIMIT="20/s,burst=10")) as running:
        started = time.monotonic()
        accepted = 0
        i = 0
        while time.monotonic() - started < 1.0:
            accepted += (await running.client.post("/events", json={"event_id": f"w{i}"})).status_code == 202
            i += 1
        elapsed = time.monotonic() - started
    assert accepted <= 10 + 20 * elapsed + 1
    assert i > accepted, "the window never went over the limit"


async def test_each_key_has_its_own_bucket() -> None:
    async with running_app(settings_from_env(API_KEYS=API_KEYS, RATE_LIMIT="1/m,burst=2")) as running:
        client = running.client
        for _ in range(3):
            await client.get("/events", headers=bearer(READER))
        assert (await client.get("/events", headers=bearer(READER))).status_code == 429
        assert (await client.get("/events", headers=bearer(ADMIN))).status_code == 200
        assert (await client.get("/health")).status_code == 200  # never limited


async def test_past_max_backlog_new_events_are_shed_with_503() -> None:
    settings = settings_from_env(MAX_BACKLOG=5, PROCESSING_DELAY_MS=600_000, WORKER_CONCURRENCY=1, SHUTDOWN_TIMEOUT_S=0)
    async with running_app(settings) as running:
        client = running.client
        for i in range(5):
            assert (await client.post("/events", json={"event_id": f"b{i}"})).status_code == 202

        async def shedding(running: RunningApp = running) -> bool:
            probe = await running.client.post("/events", json={"event_id": f"probe{time.monotonic_ns()}"})
            return probe.status_code == 503

        await wait_until(shedding, message="the backlog to be shed")
        shed = await client.post("/events", json={"event_id": "shed"})
        assert shed.status_code == 503
        assert int(shed.headers["retry-after"]) >= 1
        assert (await client.get("/events/shed")).status_code == 404


async def test_a_secured_app_and_an_open_one_in_one_process_each_document_their_own_access() -> None:
    """Apps are isolated: documenting a secured app's 401 and 403 must not leak into another app's document."""
    async with running_app(settings_from_env(API_KEYS=API_KEYS, ENV="prod")) as secured_app:
        secured_document = (await secured_app.client.get("/openapi.json")).json()
    async with running_app() as open_app:
        open_document = (await open_app.client.get("/openapi.json")).json()
    assert {"401", "403"} <= set(secured_document["paths"]["/events"]["post"]["responses"])
    assert not {"401", "403"} & set(open_document["paths"]["/events"]["post"]["responses"])
    assert "security" not in open_document["paths"]["/events"]["post"]
