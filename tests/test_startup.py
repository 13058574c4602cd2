"""A start that cannot succeed stops with one line naming the setting and the exit code that says why (SPEC §5):
2 for a setting that cannot work, 3 for a dependency that cannot be reached. Nothing is created before the
port is bound, a SQLite file has one owner whatever path leads to it, and a stop signal that arrives before
the server is up means "do not start" (exit 0)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from eventctl.errors import ConfigError
from eventctl.settings import Settings
from tests.conftest import ROOT, ServerFactory, wait_until
from tests.postgres_support import PG_URL, _require_postgres

TIMESTAMP = re.compile(r"\d\d:\d\d:\d\d")


def serve(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``eventctl serve`` run to its end, as a user starts it, with ``env`` as its settings."""
    environment = {
        **{key: value for key, value in os.environ.items() if key not in ("API_KEYS", "ENV", "HANDLER")},
        "PORT": "0",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "eventctl", "serve"], capture_output=True, text=True, timeout=60, cwd=cwd,
        env=environment,
    )  # fmt: skip


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, prefix: str) -> str:
    """The start failed with ``code`` and said why in exactly one line, starting with ``prefix``."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith(prefix), line
    assert not TIMESTAMP.search(line), line  # a message, not a log line
    assert result.returncode == code, result.stderr
    return line


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pg_url_with(**changes: str) -> str:
    parts = urlsplit(PG_URL)
    user = changes.get("user", parts.username or "postgres")
    password = changes.get("password", parts.password or "")
    host = changes.get("host", f"{parts.hostname}:{parts.port or 5432}")
    database = changes.get("database", parts.path.lstrip("/"))
    credentials = f"{user}:{password}" if password else user
    return urlunsplit((parts.scheme, f"{credentials}@{host}", f"/{database}", "", ""))


@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        ({"DATABASE_URL": "mysql://x"}, "ConfigError: invalid DATABASE_URL='mysql://x': expected sqlite:///"),
        ({"HANDLER": "tests.no_such_module:handle"}, "ConfigError: invalid HANDLER='tests.no_such_module:handle'"),
        ({"HOST": "999.1.1.1"}, "ConfigError: invalid HOST='999.1.1.1': not an address of this machine ("),
        ({"HOST": "192.0.2.1"}, "ConfigError: invalid HOST='192.0.2.1': not an address of this machine ("),
        ({"DATABASE_URL": "sqlite:////root/../proc/x.db"}, "ConfigError: invalid DATABASE_URL: cannot open or create"),
        ({"DATABASE_URL": "sqlite:////no/such/directory/x.db"}, "ConfigError: invalid DATABASE_URL: the directory"),
    ],
)
def test_a_setting_that_cannot_work_stops_the_start_with_one_line_and_exit_2(
    env: dict[str, str], prefix: str, tmp_path: Path
) -> None:
    assert_one_line(serve(tmp_path, **env), 2, prefix)


def test_a_busy_port_stops_the_start_before_anything_is_created(busy_port: int, tmp_path: Path) -> None:
    result = serve(tmp_path, PORT=str(busy_port), DATABASE_URL="sqlite:///other.db")
    line = assert_one_line(result, 2, f"ConfigError: invalid PORT={busy_port}: the address 127.0.0.1:{busy_port}")
    assert line.endswith("is in use by another process")
    assert list(tmp_path.iterdir()) == []  # no database file, no lock file


def test_an_unreachable_postgresql_is_unavailable_exit_3_and_never_shows_the_password(tmp_path: Path) -> None:
    port = closed_port()
    result = serve(tmp_path, DATABASE_URL=f"postgresql://eventctl:s3cret-pw@127.0.0.1:{port}/events")
    line = assert_one_line(result, 3, "Unavailable: DATABASE_URL: cannot reach PostgreSQL at")
    assert line == f"Unavailable: DATABASE_URL: cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused)"
    assert "s3cret-pw" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"user": "eventctl_no_such_role", "password": "s3cret-pw"}, 'role "eventctl_no_such_role" does not exist'),
        ({"database": "eventctl_no_such_database"}, 'database "eventctl_no_such_database" does not exist'),
    ],
)
def test_a_postgresql_that_refuses_the_role_or_database_is_a_bad_setting_exit_2(
    changes: dict[str, str], refusal: str, tmp_path: Path
) -> None:
    _require_postgres()
    result = serve(tmp_path, DATABASE_URL=pg_url_with(**changes))
    line = assert_one_line(result, 2, "ConfigError: invalid DATABASE_URL: PostgreSQL at")
    assert line.endswith(refusal)
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_a_sqlite_file_in_use_is_refused_through_a_symlink_and_a_hard_link(
    servers: ServerFactory, tmp_path: Path
) -> None:
    database = tmp_path / "events.db"
    first = servers.start(DATABASE_URL=f"sqlite:///{database}")
    assert first.client.post("/events", json={"event_id": "owned"}).status_code == 202
    (tmp_path / "alias.db").symlink_to(database)
    os.link(database, tmp_path / "hard.db")
    for path in (database, tmp_path / "alias.db", tmp_path / "hard.db"):
        result = serve(tmp_path, DATABASE_URL=f"sqlite:///{path}")
        line = assert_one_line(result, 2, f"ConfigError: invalid DATABASE_URL: '{path}'")
        assert "is in use by another eventctl process" in line
    assert first.client.get("/ready").status_code == 200  # the owner was not disturbed
    assert not list(tmp_path.glob("*.lock"))


def test_the_start_logs_the_absolute_path_of_the_sqlite_database(servers: ServerFactory) -> None:
    server = servers.start(DATABASE_URL="sqlite:///events.db")  # relative to the working directory
    assert f"SQLite database {os.path.realpath(servers.directory / 'events.db')}" in server.log


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler of its own for ``sig`` (its SigCgt mask, on Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return bool(caught & (1 << (sig - 1)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_before_the_server_is_up_exits_0_without_starting(sig: signal.Signals, tmp_path: Path) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to see when the handlers are installed")
    env = {**os.environ, "PORT": "0", "DATABASE_URL": "sqlite:///events.db", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "eventctl", "serve"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # As early as can be: the moment eventctl owns the signals, long before the server stack is imported.
    # (SIGTERM tells: Python itself catches SIGINT from its own start.)
    wait_until(
        lambda: _catches(process.pid, signal.SIGTERM) or process.poll() is not None, timeout=30, message="handlers"
    )
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stderr.splitlines() == [f"received {sig.name} before the server started: not starting"]
    assert not (tmp_path / "events.db").exists()


def test_a_stop_signal_during_the_start_exits_0(tmp_path: Path) -> None:
    """However a signal falls into the start (before the port is bound, while the store opens, as uvicorn
    starts), the process exits 0 and never dies by the signal."""
    env = {**os.environ, "PORT": "0", "DATABASE_URL": "sqlite:///events.db", "PYTHONPATH": str(ROOT)}
    for delay in (0.3, 0.6, 1.0):
        process = subprocess.Popen(
            [sys.executable, "-m", "eventctl", "serve"], cwd=tmp_path, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, f"after {delay}s: {stderr}"
        assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("raw", "proxies"),
    [("10.0.0.5", ("10.0.0.5",)), ("10.0.0.5, 10.1.0.0/16,::1", ("10.0.0.5", "10.1.0.0/16", "::1")), ("*", ("*",))],
)
def test_forwarded_allow_ips_takes_addresses_networks_or_a_star(raw: str, proxies: tuple[str, ...]) -> None:
    assert Settings.load({"FORWARDED_ALLOW_IPS": raw}).forwarded_allow_ips == proxies
    assert Settings.load({}).forwarded_allow_ips is None  # no proxy is trusted by default


@pytest.mark.parametrize("raw", ["proxy.internal", "10.0.0.1/8", "10.0.0.5,*", "10.0.0.5,"])
def test_forwarded_allow_ips_refuses_what_uvicorn_would_silently_never_match(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid FORWARDED_ALLOW_IPS="):
        Settings.load({"FORWARDED_ALLOW_IPS": raw})


def test_a_bad_database_url_is_refused_with_the_settings_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.load({"DATABASE_URL": "postgresql://eventctl:s3cret pw@db/events"})
    assert (
        str(refused.value)
        == "invalid DATABASE_URL='postgresql://eventctl:***@db/events': expected a value without spaces"
    )
    with pytest.raises(ConfigError, match=r"^invalid DATABASE_URL='mysql://x': expected sqlite:///"):
        Settings.load({"DATABASE_URL": "mysql://x"})
