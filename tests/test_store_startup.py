"""What opening a store says when it cannot: the setting named, the reason in one line, and whether it is a
setting to fix (``ConfigError``) or a dependency to wait for (``StoreUnavailable``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from eventctl.errors import ConfigError, StoreUnavailable
from eventctl.store import open_store
from tests.postgres_support import PG_URL, _require_postgres

pytestmark = pytest.mark.anyio


@pytest.fixture
def postgres() -> None:
    """The test server at EVENTCTL_TEST_DATABASE_URL answers (or the test is skipped; under CI, failed)."""
    _require_postgres()


async def test_a_sqlite_file_is_owned_through_every_path_that_leads_to_it(tmp_path: Path) -> None:
    database = tmp_path / "events.db"
    owner = open_store(f"sqlite:///{database}")
    await owner.open()
    try:
        (tmp_path / "alias.db").symlink_to(database)
        os.link(database, tmp_path / "hard.db")
        for path in (database, tmp_path / "alias.db", tmp_path / "hard.db"):
            with pytest.raises(ConfigError, match=r"^invalid DATABASE_URL: .* is in use by another eventctl process"):
                await open_store(f"sqlite:///{path}").open()
    finally:
        await owner.close()
    assert files_in(tmp_path) == ["alias.db", "events.db", "hard.db"]  # no lock file beside the database


def files_in(directory: Path) -> list[str]:
    """The files of ``directory``, SQLite's own (``-wal``, ``-shm``) aside."""
    return sorted(path.name for path in directory.iterdir() if "-" not in path.name)


async def test_a_sqlite_file_is_free_again_once_its_store_is_closed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = open_store(url)
    await first.open()
    await first.close()
    second = open_store(url)
    await second.open()
    await second.close()


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/no/such/directory/events.db", "the directory '/no/such/directory' does not exist"),
     ("/root/../proc/events.db", "cannot open or create '/root/../proc/events.db' (")],
)  # fmt: skip
async def test_a_sqlite_path_that_cannot_hold_a_file_names_database_url(path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        await open_store(f"sqlite:///{path}").open()
    assert str(refused.value).startswith(f"invalid DATABASE_URL: {reason}")


async def test_an_unreachable_postgresql_is_unavailable_and_the_password_is_not_shown() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailable) as unreachable:
        await open_store(f"postgresql://eventctl:s3cret-pw@127.0.0.1:{port}/events").open()
    assert str(unreachable.value) == f"DATABASE_URL: cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused)"


async def test_an_unknown_postgresql_host_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match=r"cannot reach PostgreSQL at no-such-host\.invalid:5432 \(unknown host"):
        await open_store("postgresql://eventctl@no-such-host.invalid:5432/events").open()


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (("postgres@", "eventctl_no_such_role:s3cret-pw@"), 'refused it: role "eventctl_no_such_role" does not exist'),
        (("/test", "/eventctl_no_such_database"), 'refused it: database "eventctl_no_such_database" does not exist'),
        (("/test", "/test?eventctl_no_such_option=1"), "refused it: unrecognized configuration parameter"),
    ],
)
async def test_a_postgresql_that_refuses_the_url_is_a_config_error(
    postgres: None, change: tuple[str, str], refusal: str
) -> None:
    assert change[0] in PG_URL, f"the test expects {PG_URL} to hold {change[0]!r}"
    with pytest.raises(ConfigError) as refused:
        await open_store(PG_URL.replace(*change)).open()
    assert str(refused.value).startswith("invalid DATABASE_URL: PostgreSQL at ")
    assert refusal in str(refused.value)
    assert "s3cret-pw" not in str(refused.value)
