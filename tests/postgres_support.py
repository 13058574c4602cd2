"""PostgreSQL for the tests: a fresh schema per test on the shared server, and a private server to stop.

``EVENTCTL_TEST_DATABASE_URL`` names the server (default ``postgresql://postgres@127.0.0.1:5432/test``).
Where none answers the PostgreSQL tests are skipped with the reason, except under CI (``CI=true``), where
they must run.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

PG_URL = os.environ.get("EVENTCTL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _require_postgres() -> None:
    try:
        asyncio.run(_execute(PG_URL, "SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"no PostgreSQL at EVENTCTL_TEST_DATABASE_URL={PG_URL} ({exc})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&search_path={schema}" if parts.query else f"search_path={schema}"
    return urlunsplit(parts._replace(query=query))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A ``DATABASE_URL`` whose tables go to a schema of this test's own, dropped afterwards."""
    _require_postgres()
    schema = f"eventctl_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(PG_URL, f"CREATE SCHEMA {schema}"))
    yield with_search_path(PG_URL, schema)
    asyncio.run(_execute(PG_URL, f"DROP SCHEMA {schema} CASCADE"))


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own, on its own port and data directory, that it may stop."""

    bin_dir: Path
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}"
        self._pg_ctl("-o", options, "-l", str(self.data_dir / "server.log"), "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _postgres_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _postgres_bin_dir()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        reason = "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL outage test")
        pytest.skip(reason)
    # Not under pytest's temporary directory: the postgres user must be able to reach it.
    data_dir = Path(tempfile.mkdtemp(prefix="eventctl-test-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", "postgres", "--no-sync"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True, timeout=120)
    server = PrivatePostgres(bin_dir, data_dir, _free_port())
    server.start()
    yield server
    subprocess.run(
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"]),
        capture_output=True,
        timeout=60,
    )
    shutil.rmtree(data_dir, ignore_errors=True)
