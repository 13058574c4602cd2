"""The store's one rule for errors (``store/base.py``): an outage is ``StoreUnavailable``, a bug is itself.

Each mapping is checked on the real error, caused for real: a SQLite file locked by another connection, a
database opened read-only, a disk made full by a page limit; PostgreSQL deadlocks, read-only transactions,
timeouts, a terminated connection, a closed pool, a role over its connection limit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from eventctl.domain import Claim, NewEvent
from eventctl.errors import StoreUnavailable
from eventctl.store import Store, open_store
from eventctl.store.postgres import is_unavailable
from eventctl.store.sqlite_writer import store_error
from tests.inprocess import running_app
from tests.postgres_support import PrivatePostgres

pytestmark = pytest.mark.anyio


def sqlite_error(run: Callable[[], object]) -> sqlite3.Error:
    with pytest.raises(sqlite3.Error) as caught:
        run()
    return caught.value


def test_sqlite_errors_of_the_database_or_the_disk_are_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    setup.execute("BEGIN IMMEDIATE")  # holds the write lock
    impatient = sqlite3.connect(path, timeout=0, isolation_level=None)
    locked = sqlite_error(lambda: impatient.execute("INSERT INTO t (v) VALUES (1)"))
    setup.execute("ROLLBACK")

    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    readonly = sqlite_error(lambda: read_only.execute("INSERT INTO t (v) VALUES (1)"))

    setup.execute("PRAGMA max_page_count = 3")  # a disk this small is full at once
    full = sqlite_error(lambda: setup.execute("INSERT INTO t (v) VALUES (?)", (b"x" * 100_000,)))

    for error, message in ((locked, "database is locked"), (readonly, "readonly"), (full, "full")):
        mapped = store_error(error)
        assert isinstance(mapped, StoreUnavailable), error
        assert message in str(mapped)


def test_sqlite_errors_of_our_own_sql_are_bugs_and_stay_themselves(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t (id) VALUES (1)")
    bugs = [
        sqlite_error(lambda: conn.execute("SELEC 1")),  # an OperationalError, as "database is locked" is
        sqlite_error(lambda: conn.execute("SELECT * FROM no_such_table")),
        sqlite_error(lambda: conn.execute("INSERT INTO t (id) VALUES (1)")),
        sqlite_error(lambda: conn.execute("SELECT ?", ({"not": "bindable"},))),
    ]
    for bug in bugs:
        assert store_error(bug) is bug


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    await store.open()
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'events.db'}" if request.param == "sqlite" else "memory://"


async def test_a_closed_store_is_unavailable_not_broken(store_url: str) -> None:
    """After close (the pool or the reader threads gone), every call is an outage the API answers with 503."""
    store = open_store(store_url)
    await store.open()
    await store.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get("e1"),
        lambda: store.add(NewEvent("e1", b"{}")),
        store.ping,
        lambda: store.claim(1, 30),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable):
            await call()


async def test_a_bug_in_a_batched_sqlite_completion_reaches_its_caller_as_the_bug(sqlite_store: Store) -> None:
    await sqlite_store.add(NewEvent("e1", b"{}"))
    [claim] = await sqlite_store.claim(1, 30)
    unbindable = Claim(event_id=claim.event_id, payload=b"{}", attempt=1, token={"a": 1})  # type: ignore[arg-type]
    with pytest.raises(sqlite3.ProgrammingError):
        await sqlite_store.complete(unbindable)
    assert await sqlite_store.complete(claim)  # the store goes on: a bug fails only its own call


async def test_a_sqlite_file_locked_past_the_busy_timeout_is_a_503_and_the_service_recovers(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with running_app(database_url=f"sqlite:///{path}") as running:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock longer than the busy timeout
        try:
            refused = await running.client.post("/events", json={"event_id": "e1"}, timeout=60)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        accepted = await running.client.post("/events", json={"event_id": "e1"})
        assert accepted.status_code == 202


async def pg_error(url: str, statements: Callable[[asyncpg.Connection], Awaitable[object]]) -> BaseException:
    conn = await asyncpg.connect(url)
    try:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - each caller checks what it got
            await statements(conn)
        return caught.value
    finally:
        await conn.close()


async def test_postgres_outages_are_unavailable(pg_url: str) -> None:
    setup = await asyncpg.connect(pg_url)
    await setup.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
    await setup.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
    found: dict[str, BaseException] = {}

    async def read_only(conn: asyncpg.Connection) -> None:
        async with conn.transaction(readonly=True):
            await conn.execute("UPDATE t SET v = 1")

    found["read-only transaction"] = await pg_error(pg_url, read_only)

    async def statement_timeout(conn: asyncpg.Connection) -> None:
        await conn.execute("SET statement_timeout = '10ms'")
        await conn.execute("SELECT pg_sleep(5)")

    found["statement timeout"] = await pg_error(pg_url, statement_timeout)

    async with setup.transaction():
        await setup.execute("SELECT * FROM t WHERE id = 1 FOR UPDATE")
        found["lock not available"] = await pg_error(
            pg_url, lambda conn: conn.execute("SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT")
        )

    first, second = await asyncpg.connect(pg_url), await asyncpg.connect(pg_url)
    try:
        await first.execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        await second.execute("BEGIN; UPDATE t SET v = 1 WHERE id = 2")
        outcomes = await asyncio.gather(
            first.execute("UPDATE t SET v = 2 WHERE id = 2"),
            second.execute("UPDATE t SET v = 2 WHERE id = 1"),
            return_exceptions=True,
        )
    finally:
        await first.close()
        await second.close()
    found["deadlock"] = next(o for o in outcomes if isinstance(o, asyncpg.exceptions.DeadlockDetectedError))

    async def serialization_failure(conn: asyncpg.Connection) -> None:
        async with conn.transaction(isolation="repeatable_read"):
            await conn.fetch("SELECT * FROM t")
            await setup.execute("UPDATE t SET v = 3 WHERE id = 1")
            await conn.execute("UPDATE t SET v = 4 WHERE id = 1")

    found["serialization failure"] = await pg_error(pg_url, serialization_failure)

    async def terminated(conn: asyncpg.Connection) -> None:
        await setup.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await conn.fetchval("SELECT 1")

    found["terminated by the administrator"] = await pg_error(pg_url, terminated)

    closed_port = await asyncio.get_running_loop().run_in_executor(None, _closed_port)
    found["connection refused"] = await _connect_error(f"postgresql://postgres@127.0.0.1:{closed_port}/test")
    await setup.close()

    assert {name: is_unavailable(error) for name, error in found.items()} == dict.fromkeys(found, True), found


async def test_postgres_errors_of_our_own_sql_and_arguments_are_bugs(pg_url: str) -> None:
    setup = await asyncpg.connect(pg_url)
    await setup.execute("CREATE TABLE t (id text PRIMARY KEY)")
    await setup.execute("INSERT INTO t VALUES ('a')")
    await setup.close()
    bugs = [
        await pg_error(pg_url, lambda conn: conn.execute("SELEC 1")),
        await pg_error(pg_url, lambda conn: conn.execute("INSERT INTO t VALUES ('a')")),
        await pg_error(pg_url, lambda conn: conn.fetchval("SELECT * FROM t WHERE id = $1", "\x00")),
        await pg_error(pg_url, lambda conn: conn.fetchval("SELECT $1::int", "not a number")),
    ]
    assert [is_unavailable(bug) for bug in bugs] == [False] * len(bugs), bugs


async def test_a_bug_in_a_batched_postgres_completion_reaches_its_caller_as_the_bug(pg_url: str) -> None:
    store = open_store(pg_url)
    await store.open()
    try:
        await store.add(NewEvent("e1", b"{}"))
        [claim] = await store.claim(1, 30)
        wrong = Claim(event_id=claim.event_id, payload=b"{}", attempt=1, token={"not": "a number"})  # type: ignore[arg-type]
        with pytest.raises(asyncpg.exceptions.DataError):
            await store.complete(wrong)
        assert await store.complete(claim)
    finally:
        await store.close()


async def test_a_role_over_its_connection_limit_is_unavailable(private_postgres: PrivatePostgres) -> None:
    admin = await asyncpg.connect(private_postgres.url)
    await admin.execute("CREATE ROLE app LOGIN")
    await admin.execute("GRANT CREATE ON SCHEMA public TO app")
    store = open_store(private_postgres.url.replace("postgres@", "app@"))
    await store.open()
    try:
        await admin.execute("ALTER ROLE app CONNECTION LIMIT 0")  # the connections it has stay; no new one
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'")
        causes: list[object] = []
        for _ in range(5):  # the first call may still meet the terminated connection
            with pytest.raises(StoreUnavailable) as caught:
                await store.get("e1")
            causes.append(type(caught.value.__cause__))
        assert asyncpg.exceptions.TooManyConnectionsError in causes, causes
        await admin.execute("ALTER ROLE app CONNECTION LIMIT -1")
        assert await store.get("e1") is None  # back without a restart
    finally:
        await store.close()
        await admin.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _connect_error(url: str) -> BaseException:
    with pytest.raises(ConnectionRefusedError) as caught:
        await asyncpg.connect(url, timeout=5)
    return caught.value
