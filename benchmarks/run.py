"""eventctl's benchmarks: one command, figures and ratios against baselines measured in the same run.

    .venv/bin/python benchmarks/run.py            # everything (about 8 minutes)
    .venv/bin/python benchmarks/run.py --quick    # smaller numbers, to see that it works
    .venv/bin/python benchmarks/run.py --only ingest,drain

Sections:
- ingest: POST /events with unique ids from wrk (64 connections), eventctl against minimal in-memory servers
  (the Go seed server, FastAPI apps), interleaved A B C A B C, median of the rounds; requests/s, p50, p99, ratio
  to the Go seed server (the baseline; built from benchmarks/seed_server with Debian's golang-go).
- slowdisk: durable ingest with 2 ms added to every fsync (strace fault injection) against the fast disk.
- batch: POST /events/batch, 100 events a request, in events/s, against the Go seed server's per-request rate.
- drain: time to process N stored events with a no-op handler, SQLite and PostgreSQL, with the attempt
  history on (as shipped) and off, interleaved.
- store: the cost per event of each write an event needs (add, claim, complete), through the store alone.
- claims: claim latency through the store, beside an ordering key with 10,000 waiting events and beside none.
- latency: accept → processed at a light steady load, from the server's own timestamps.
- scale: ingest with 1,000,000 processed events already stored against an empty store, and the RSS; then
  the list filters over 1,000,000 stored events, on each store.
- bulk: ingest p99 alone, then while a bulk replay of 100,000 failed events runs on the same server (the
  replayed events processed meanwhile), SQLite and PostgreSQL.
- cli: start-up of ``eventctl --help`` and of ``import eventctl``, beside ``python -c pass``.

With two or more cores, servers are pinned to core 0 and the load generator to core 1 (taskset). Benchmarks
make no assertions: they print what they measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from eventctl.domain import NewEvent

HERE = Path(__file__).parent
PG_URL = os.environ.get("EVENTCTL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
PINNED = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


@dataclass(frozen=True)
class Sizes:
    duration: int
    rounds: int
    drain_events: int
    latency_events: int
    history_events: int


FULL = Sizes(duration=10, rounds=3, drain_events=100_000, latency_events=1_000, history_events=1_000_000)
QUICK = Sizes(duration=3, rounds=1, drain_events=10_000, latency_events=200, history_events=50_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(command: list[str], core: int) -> list[str]:
    return ["taskset", "-c", str(core), *command] if PINNED else command


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server, wait for it to answer, stop it (SIGTERM, then SIGKILL) afterwards."""
    process = subprocess.Popen(pin(command, 0), env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=HERE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)  # any answer means it listens
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def eventctl_command() -> list[str]:
    return [sys.executable, "-m", "eventctl", "serve"]


def eventctl_env(port: int, database_url: str, **extra: str) -> dict[str, str]:
    return {"PORT": str(port), "DATABASE_URL": database_url, "PROCESSING_DELAY_MS": "0", **extra}


def reference_command(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", f"reference_app:{app}", "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning"]  # fmt: skip


# -- ingest -----------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    port: int, duration: int, connections: int = 64, script: str = "post.lua", path: str = "/events"
) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / script),
               f"http://127.0.0.1:{port}{path}"]  # fmt: skip
    output = subprocess.run(pin(command, 1), capture_output=True, text=True, check=True).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return WrkResult(
        float(rate.group(1)) if rate else 0.0, latency("50"), latency("99"), int(non_2xx.group(1)) if non_2xx else 0
    )


Starter = Callable[[int, Path], contextlib.AbstractContextManager[subprocess.Popen[bytes]]]


@dataclass(frozen=True)
class Target:
    name: str
    start: Starter  # (port, database file) -> a running server; reference servers ignore the file
    stores_events: bool = True


def build_seed_server(scratch: Path) -> Path:
    """The Go seed server (``benchmarks/seed_server``), built for this run: standard library only, offline."""
    if shutil.which("go") is None:
        sys.exit("go is needed to build the Go seed server, the ingest baseline (Debian package golang-go)")
    binary = scratch / "seed_server"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "seed_server", check=True)
    return binary


def ingest_targets(seed_server: Path) -> list[Target]:
    def eventctl(**extra: str) -> Starter:
        return lambda port, database: serving(
            eventctl_command(), eventctl_env(port, f"sqlite:///{database}", **extra), port
        )

    def reference(app: str) -> Starter:
        return lambda port, database: serving(reference_command(app, port), {}, port)

    def go_seed(port: int, database: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        return serving([str(seed_server)], {"PORT": str(port), "PROCESSING_DELAY_MS": "0"}, port)

    return [
        Target("Go seed server, net/http, in memory (baseline)", go_seed, stores_events=False),
        Target("FastAPI + pydantic, in memory", reference("pydantic_app"), stores_events=False),
        Target("FastAPI request.json(), in memory", reference("json_app"), stores_events=False),
        Target("raw ASGI, in memory (uvicorn's ceiling)", reference("raw_app"), stores_events=False),
        Target("eventctl, SQLite durable, as shipped", eventctl()),
        Target("eventctl, SQLite durable, LOG_LEVEL=warning", eventctl(LOG_LEVEL="warning")),
    ]


def processed_share(database: Path) -> float:
    """Of the events a run stored, the share the worker had processed by the time the server stopped."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        stored, processed = conn.execute("SELECT count(*), count(processed_at) FROM events").fetchone()
    return processed / stored if stored else float("nan")


def bench_ingest(sizes: Sizes, scratch: Path) -> None:
    targets = ingest_targets(build_seed_server(scratch))
    results: dict[str, list[WrkResult]] = {target.name: [] for target in targets}
    processed: dict[str, list[float]] = {target.name: [] for target in targets}
    for _ in range(sizes.rounds):
        for target in targets:  # interleaved: A B C D A B C D ...
            port = free_port()
            database = scratch / f"ingest-{uuid.uuid4().hex}.db"
            with target.start(port, database):
                results[target.name].append(run_wrk(port, sizes.duration))
            if target.stores_events:
                processed[target.name].append(processed_share(database))
    baseline = statistics.median(r.requests_per_second for r in results[targets[0].name])
    print(f"\n## ingest: POST /events, unique ids, 64 connections, median of {sizes.rounds} x {sizes.duration}s")
    print("(processed: the share of the run's events the worker, running meanwhile, had processed at its end)")
    header = f"{'server':48} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs baseline':>12} {'non-2xx':>8}"
    print(f"{header} {'processed':>10}")
    for name, runs in results.items():
        rate = statistics.median(r.requests_per_second for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        non_2xx = sum(r.non_2xx for r in runs)
        share = f"{statistics.median(processed[name]):9.0%}" if processed[name] else f"{'-':>9}"
        print(f"{name:48} {rate:9.0f} {p50:8.2f} {p99:8.2f} {rate / baseline:11.2f}x {non_2xx:8d} {share:>10}")


# -- slow disk ---------------------------------------------------------------------------------------------

SLOW_FSYNC_US = 2000
_STRACE = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=fsync,fdatasync",
           "-e", f"inject=fsync,fdatasync:delay_exit={SLOW_FSYNC_US}"]  # fmt: skip


@contextlib.contextmanager
def serving_group(command: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``serving`` for a server started under a tracer: in its own process group, stopped as a group (SIGTERM
    to all of it, then SIGKILL), so that neither the tracer nor the traced server outlives the run."""
    process = subprocess.Popen(pin(command, 0), env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=HERE, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start")
            time.sleep(0.1)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def bench_slowdisk(sizes: Sizes, scratch: Path) -> None:
    """Durable ingest with 2 ms added to every fsync and fdatasync (strace fault injection) against the same
    server on the disk as it is, interleaved, median of the rounds."""
    if shutil.which("strace") is None:
        print("\n## slowdisk: skipped, strace is needed (Debian package strace)")
        return
    results: dict[str, list[WrkResult]] = {
        "fast disk (as it is)": [],
        f"slow disk (+{SLOW_FSYNC_US // 1000} ms/fsync)": [],
    }
    for _ in range(sizes.rounds):
        for name, prefix in zip(results, ([], _STRACE), strict=True):
            port = free_port()
            env = eventctl_env(port, f"sqlite:///{scratch / f'slow-{uuid.uuid4().hex}.db'}", LOG_LEVEL="warning")
            with serving_group([*prefix, *eventctl_command()], env, port):
                results[name].append(run_wrk(port, sizes.duration))
    fast = statistics.median(r.requests_per_second for r in results["fast disk (as it is)"])
    print(f"\n## slowdisk: durable POST /events, 64 connections, median of {sizes.rounds} x {sizes.duration}s")
    print(f"{'disk':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs fast':>8} {'non-2xx':>8}")
    for name, runs in results.items():
        rate = statistics.median(r.requests_per_second for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        non_2xx = sum(r.non_2xx for r in runs)
        print(f"{name:34} {rate:9.0f} {p50:8.2f} {p99:8.2f} {rate / fast:7.2f}x {non_2xx:8d}")


# -- batch ------------------------------------------------------------------------------------------------

BATCH_EVENTS = 100  # as benchmarks/batch.lua sends them, about 110 bytes each


def bench_batch(sizes: Sizes, scratch: Path) -> None:
    """POST /events/batch (100 events a request, durable, the worker processing meanwhile) in events/s,
    against the Go seed server's per-request rate in the same run, interleaved, median of the rounds."""
    seed_server = build_seed_server(scratch)
    go: list[WrkResult] = []
    batch: list[WrkResult] = []
    processed: list[float] = []
    for _ in range(sizes.rounds):
        port = free_port()
        with serving([str(seed_server)], {"PORT": str(port), "PROCESSING_DELAY_MS": "0"}, port):
            go.append(run_wrk(port, sizes.duration))
        port = free_port()
        database = scratch / f"batch-{uuid.uuid4().hex}.db"
        with serving(eventctl_command(), eventctl_env(port, f"sqlite:///{database}", LOG_LEVEL="warning"), port):
            batch.append(run_wrk(port, sizes.duration, connections=16, script="batch.lua", path="/events/batch"))
        processed.append(processed_share(database))
    baseline = statistics.median(r.requests_per_second for r in go)
    print(f"\n## batch: POST /events/batch, {BATCH_EVENTS} events a request, durable, processing meanwhile,")
    print(f"median of {sizes.rounds} x {sizes.duration}s; against the Go seed server's POST /events (64 connections)")
    header = f"{'server':48} {'req/s':>9} {'events/s':>10} {'p99 ms':>8} {'vs baseline':>12} {'non-2xx':>8}"
    print(f"{header} {'processed':>10}")
    go_p99 = statistics.median(r.p99_ms for r in go)
    print(f"{'Go seed server, POST /events (baseline)':48} {baseline:9.0f} {baseline:10.0f} {go_p99:8.2f} {1:11.2f}x"
          f" {sum(r.non_2xx for r in go):8d} {'-':>10}")  # fmt: skip
    rate = statistics.median(r.requests_per_second for r in batch)
    events = rate * BATCH_EVENTS
    p99 = statistics.median(r.p99_ms for r in batch)
    share = statistics.median(processed)
    print(f"{'eventctl, SQLite durable, POST /events/batch':48} {rate:9.0f} {events:10.0f} {p99:8.2f}"
          f" {events / baseline:11.2f}x {sum(r.non_2xx for r in batch):8d} {share:9.0%}")  # fmt: skip


# -- drain ------------------------------------------------------------------------------------------------


async def fill(database_url: str, count: int, make: Callable[[int], NewEvent] | None = None) -> None:
    """Store ``count`` accepted events through eventctl's own store (so the schema is the real one), in
    batches; ``make(i)`` makes event ``i`` (default: a plain event ``stored-i``)."""
    from eventctl.store import open_store

    store = open_store(database_url)
    await store.open()
    try:
        for start in range(0, count, 1000):
            batch = range(start, min(count, start + 1000))
            await store.add_many([make(i) if make else NewEvent(f"stored-{i}", b'{"order":1}') for i in batch])
    finally:
        await store.close()


def wait_until_drained(port: int, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while time.monotonic() < deadline:
            waiting = [
                client.get("/events", params={"status": status, "limit": 1}).json()["items"]
                for status in ("accepted", "processing", "retrying")
            ]
            if not any(waiting):
                return
            time.sleep(0.2)
    raise RuntimeError("the drain did not finish")


def drained_sqlite(path: Path) -> tuple[int, float, float]:
    """(processed events, the first and the last processed_at as Unix seconds)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count, first, last = conn.execute(
            "SELECT count(*), min(processed_at), max(processed_at) FROM events WHERE status = 'processed'"
        ).fetchone()
    return count, first / 1_000_000, last / 1_000_000


async def drained_postgres(url: str) -> tuple[int, float, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, EXTRACT(EPOCH FROM min(processed_at)) AS first,"
            " EXTRACT(EPOCH FROM max(processed_at)) AS last FROM eventctl_events WHERE status = 'processed'"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), float(row["first"]), float(row["last"])


@contextlib.contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A fresh schema on the benchmark PostgreSQL, or None when there is none."""
    import asyncpg

    schema = f"eventctl_bench_{uuid.uuid4().hex[:10]}"

    async def execute(statement: str) -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.run(execute(f"CREATE SCHEMA {schema}"))
    except (OSError, asyncpg.PostgresError):
        yield None
        return
    try:
        separator = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{separator}search_path={schema}"
    finally:
        asyncio.run(execute(f"DROP SCHEMA {schema} CASCADE"))


@dataclass(frozen=True)
class Drain:
    processed: int
    from_start: float  # seconds from the start of the process to the last event processed: start-up counts
    steady: float  # seconds from the first event processed to the last

    @property
    def rate(self) -> float:
        return self.processed / self.from_start


def drain_once(database_url: str, count: int, **extra: str) -> Drain:
    """Fill a store with ``count`` events, then start a server on it and serve until nothing waits. The clock
    starts just before the process is started and stops at the last processed_at the store recorded."""
    asyncio.run(fill(database_url, count))
    port = free_port()
    started = time.time()
    with serving(eventctl_command(), eventctl_env(port, database_url, LOG_LEVEL="warning", **extra), port):
        wait_until_drained(port, count)
    if database_url.startswith("sqlite:///"):
        processed, first, last = drained_sqlite(Path(database_url.removeprefix("sqlite:///")))
    else:
        processed, first, last = asyncio.run(drained_postgres(database_url))
    return Drain(processed, last - started, last - first)


def bench_drain(sizes: Sizes, scratch: Path) -> None:
    """Each store drains with the attempt history on (as shipped) and off, interleaved, median of the rounds:
    the history's cost is their ratio. The rate counts from the start of the process (start-up included);
    the steady rate from the first event processed."""
    count = sizes.drain_events
    print(f"\n## drain: {count:,} stored events, no-op handler (PROCESSING_DELAY_MS=0), median of {sizes.rounds}")
    print("(events/s from the start of the process until nothing waits; steady: from the first event processed)")
    print(f"{'store':34} {'seconds':>9} {'events/s':>10} {'steady/s':>10} {'vs history off':>15}")
    stores: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str | None]]]] = [
        ("SQLite", lambda: sqlite_file(scratch)),
        ("PostgreSQL", postgres_schema),
    ]
    for name, database in stores:
        drains: dict[str, list[Drain]] = {"on": [], "off": []}
        for _ in range(sizes.rounds):
            for history in ("on", "off"):
                with database() as url:
                    if url is None:
                        print(f"{name:34} skipped: no server at EVENTCTL_BENCH_DATABASE_URL={PG_URL}")
                        break
                    drains[history].append(drain_once(url, count, ATTEMPT_HISTORY=history))
        if not drains["off"]:
            continue
        off = statistics.median(d.rate for d in drains["off"])
        for history in ("on", "off"):
            runs = drains[history]
            rate = statistics.median(d.rate for d in runs)
            steady = statistics.median(d.processed / d.steady for d in runs)
            seconds = statistics.median(d.from_start for d in runs)
            label = f"{name}, history {history}" + (" (as shipped)" if history == "on" else "")
            print(f"{label:34} {seconds:9.2f} {rate:10.0f} {steady:10.0f} {rate / off:14.2f}x")


@contextlib.contextmanager
def sqlite_file(scratch: Path) -> Iterator[str]:
    yield f"sqlite:///{scratch / f'drain-{uuid.uuid4().hex}.db'}"


# -- store ------------------------------------------------------------------------------------------------


async def store_costs(database_url: str, count: int) -> dict[str, float]:
    """Seconds per event of each write an event costs, through eventctl's own store with no HTTP in front:
    add (at accept), claim (before processing), complete (after). Many at once, as under load."""
    from eventctl.store import open_store

    store = open_store(database_url)
    await store.open()
    try:
        started = time.perf_counter()
        for start in range(0, count, 1000):
            await asyncio.gather(
                *(store.add(NewEvent(f"cost-{i}", b'{"order":1}')) for i in range(start, min(count, start + 1000)))
            )
        added = time.perf_counter()
        claims = []
        while batch := await store.claim(256, 300):
            claims.extend(batch)
        claimed = time.perf_counter()
        for start in range(0, len(claims), 1000):
            await asyncio.gather(*(store.complete(claim) for claim in claims[start : start + 1000]))
        completed = time.perf_counter()
    finally:
        await store.close()
    return {
        "add": (added - started) / count,
        "claim": (claimed - added) / count,
        "complete": (completed - claimed) / count,
    }


def bare_sqlite_costs(path: Path, count: int, *, durable: bool, batch: int = 100) -> dict[str, float]:
    """The floor for ``store_costs``: a bare sqlite3 loop doing the same three writes with the same SQL, on
    the same schema, ``batch`` events per transaction, and none of the store's machinery (no writer thread,
    no futures, no event loop), in WAL mode. ``durable``: as durable as the store, the inserts' commits
    fsync'd (synchronous=FULL), the claims' and completions' not (NORMAL); else no commit is fsync'd."""
    from eventctl.store import sqlite_statements as sql
    from eventctl.store.sqlite_schema import migrate

    complete_sql = sql.outcome_statements(True)[0]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        migrate(conn)
        conn.execute(sql.NO_HISTORY_TRIGGER)
        conn.execute(sql.HISTORY_TRIGGER)
        payload = b'{"order":1}'
        started = time.perf_counter()
        for start in range(0, count, batch):
            now = time.time_ns() // 1000
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                sql.INSERT_PLAIN, [(f"floor-{i}", payload, now, now, now, None) for i in range(start, start + batch)]
            )
            conn.execute("COMMIT")
        added = time.perf_counter()
        conn.execute("PRAGMA synchronous=NORMAL")
        claims: list[tuple[str, int]] = []
        while True:
            now = time.time_ns() // 1000
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(sql.CLAIM, (1, now + 300_000_000, now, now, batch)).fetchall()
            conn.execute("COMMIT")
            if not rows:
                break
            claims.extend((row[0], 1) for row in rows)
        claimed = time.perf_counter()
        for start in range(0, len(claims), batch):
            now = time.time_ns() // 1000
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                complete_sql,
                [(None, None, now, now, event_id, token) for event_id, token in claims[start : start + batch]],
            )
            conn.execute("COMMIT")
        completed = time.perf_counter()
    finally:
        conn.close()
    return {
        "add": (added - started) / count,
        "claim": (claimed - added) / count,
        "complete": (completed - claimed) / count,
    }


def bench_store(sizes: Sizes, scratch: Path) -> None:
    """The store's cost per event beside the bare-SQLite floor, interleaved, median of the rounds."""
    count = sizes.drain_events // 2
    store_runs: list[dict[str, float]] = []
    floor_runs: list[dict[str, float]] = []
    bare_runs: list[dict[str, float]] = []
    for _ in range(sizes.rounds):
        store_runs.append(asyncio.run(store_costs(f"sqlite:///{scratch / f'store-{uuid.uuid4().hex}.db'}", count)))
        floor_runs.append(bare_sqlite_costs(scratch / f"floor-{uuid.uuid4().hex}.db", count, durable=True))
        bare_runs.append(bare_sqlite_costs(scratch / f"bare-{uuid.uuid4().hex}.db", count, durable=False))
    print(f"\n## store: the writes one event costs, SQLite, {count:,} events, no HTTP (in this process, not pinned)")
    print(f"(median of {sizes.rounds}; floor: a bare sqlite3 loop, same SQL and schema, batches of 100, same run,")
    print(" its inserts fsync'd as the store's are; no-fsync floor: the same loop with no commit fsync'd)")
    header = f"{'write':12} {'us/event':>9} {'events/s':>10} {'floor us':>9} {'vs floor':>9}"
    print(f"{header} {'no-fsync us':>12} {'vs it':>7}")
    for name in ("add", "claim", "complete", "all three"):
        seconds = statistics.median(_cost(run, name) for run in store_runs)
        floor = statistics.median(_cost(run, name) for run in floor_runs)
        bare = statistics.median(_cost(run, name) for run in bare_runs)
        print(f"{name:12} {seconds * 1e6:9.1f} {1 / seconds:10.0f} {floor * 1e6:9.1f} {seconds / floor:8.2f}x"
              f" {bare * 1e6:12.1f} {seconds / bare:6.2f}x")  # fmt: skip


def _cost(run: dict[str, float], name: str) -> float:
    return sum(run.values()) if name == "all three" else run[name]


async def claim_latencies(database_url: str, plain: int, parked: int) -> list[float]:
    """Seconds per claim of up to 64 events, claiming and completing ``plain`` events, with ``parked`` events
    of one ordering key waiting behind its head the whole time."""
    from eventctl.store import open_store

    def keyed(i: int) -> NewEvent:
        return NewEvent(f"long-key-{i}", b'{"order":1}', ordering_key="the-long-key")

    await fill(database_url, parked + 1, keyed)
    await fill(database_url, plain)
    store = open_store(database_url)
    await store.open()
    latencies = []
    try:
        while True:
            started = time.perf_counter()
            claims = await store.claim(64, 300)
            latencies.append(time.perf_counter() - started)
            if len(claims) <= 1:  # only the long key's head is left
                break
            await asyncio.gather(*(store.complete(claim) for claim in claims if claim.ordering_key is None))
    finally:
        await store.close()
    return latencies


def bench_claims(sizes: Sizes, scratch: Path) -> None:
    """Claims beside a key with 10,000 waiting events against claims beside none, on each store."""
    plain = sizes.drain_events // 5
    print(f"\n## claims: {plain:,} plain events claimed 64 at a time and completed, beside a key with waiting events")
    print(f"{'store':12} {'waiting in the key':>19} {'p50 ms':>8} {'p99 ms':>8} {'vs none waiting':>16}")
    stores: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str | None]]]] = [
        ("SQLite", lambda: sqlite_file(scratch)),
        ("PostgreSQL", postgres_schema),
    ]
    for name, database in stores:
        results = {}
        for parked in (0, 10_000):
            with database() as url:
                if url is None:
                    break
                latencies = sorted(asyncio.run(claim_latencies(url, plain, parked)))
            results[parked] = (statistics.median(latencies), latencies[int(len(latencies) * 0.99)])
        if len(results) < 2:
            print(f"{name:12} skipped: no server at EVENTCTL_BENCH_DATABASE_URL={PG_URL}")
            continue
        for parked, (p50, p99) in results.items():
            print(f"{name:12} {parked:19,} {p50 * 1000:8.3f} {p99 * 1000:8.3f} {p50 / results[0][0]:15.2f}x")


# -- latency ----------------------------------------------------------------------------------------------


def bench_latency(sizes: Sizes, scratch: Path) -> None:
    count, rate = sizes.latency_events, 100
    port = free_port()
    url = f"sqlite:///{scratch / 'latency.db'}"
    with serving(eventctl_command(), eventctl_env(port, url, LOG_LEVEL="warning"), port), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:  # fmt: skip
        started = time.monotonic()
        for i in range(count):
            client.post("/events", json={"event_id": f"latency-{i}", "payload": {"i": i}})
            time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        wait_until_drained(port, count)
        delays = []
        cursor = None
        while True:
            page = client.get("/events", params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
            for item in page["items"]:
                accepted = _parse_time(item["received_at"])
                processed = _parse_time(item["processed_at"])
                delays.append((processed - accepted) * 1000)
            cursor = page["next_cursor"]
            if cursor is None:
                break
    delays.sort()
    p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(f"\n## latency: accept -> processed, {count:,} events at {rate}/s, no-op handler (server timestamps)")
    print(f"p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {delays[-1]:.2f} ms")


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- scale ------------------------------------------------------------------------------------------------


def rss_megabytes(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def bench_scale(sizes: Sizes, scratch: Path) -> None:
    history = scratch / "history.db"
    asyncio.run(fill(f"sqlite:///{history}", sizes.history_events))
    with contextlib.closing(sqlite3.connect(history)) as conn:  # as retention keeps them: processed
        now = time.time_ns() // 1000
        conn.execute("UPDATE events SET status = 'processed', processed_at = ?, due_at = NULL, attempts = 1", (now,))
        conn.commit()
    results: dict[str, list[tuple[float, float]]] = {"empty store": [], f"{sizes.history_events:,} stored": []}
    for _ in range(sizes.rounds):
        for name, path in (("empty store", None), (f"{sizes.history_events:,} stored", history)):
            database = path or scratch / f"empty-{uuid.uuid4().hex}.db"
            port = free_port()
            env = eventctl_env(port, f"sqlite:///{database}", LOG_LEVEL="warning")
            with serving(eventctl_command(), env, port) as process:
                result = run_wrk(port, sizes.duration)
                results[name].append((result.requests_per_second, rss_megabytes(process.pid)))
    empty = statistics.median(rate for rate, _ in results["empty store"])
    print(f"\n## scale: ingest with history stored vs an empty store, median of {sizes.rounds} x {sizes.duration}s")
    print(f"{'store':24} {'req/s':>9} {'vs empty':>9} {'RSS MB':>8}")
    for name, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        rss = max(m for _, m in runs)
        print(f"{name:24} {rate:9.0f} {rate / empty:8.2f}x {rss:8.1f}")
    bench_filters(sizes, scratch)


# A million stored events as an incident leaves them: 99% processed, 1% failed (a third of those timed out),
# ids in two namespaces, every 50th event keyed by one of 5,000 customers.
_TIMEOUT = "WebhookError: no answer from https://hooks.example/in within 10s (WEBHOOK_TIMEOUT_S)"
_HTTP_503 = "WebhookError: HTTP 503 from https://hooks.example/in"


def _filter_event(i: int) -> NewEvent:
    key = f"cust-{i // 50 % 5000}" if i % 50 == 0 else None
    return NewEvent(f"{'ord' if i % 2 else 'pay'}-{i:07d}", b'{"order":1}', ordering_key=key)


def _settle_sqlite(path: Path) -> tuple[datetime, datetime, datetime]:
    """Settle the filled events as the incident did; the received times at 1%, 50% and 99% of them."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        now = time.time_ns() // 1000
        conn.execute(
            "UPDATE events SET status = CASE WHEN seq % 100 = 0 THEN 'failed' ELSE 'processed' END, due_at = NULL,"
            " processed_at = CASE WHEN seq % 100 = 0 THEN NULL ELSE ? END, attempts = 1,"
            " last_error = CASE WHEN seq % 300 = 0 THEN ? WHEN seq % 100 = 0 THEN ? END",
            (now, _TIMEOUT, _HTTP_503),
        )
        conn.commit()
        count = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        marks = [
            datetime.fromtimestamp(
                conn.execute(
                    "SELECT received_at FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", (count * share // 100,)
                ).fetchone()[0]
                / 1e6,
                UTC,
            )
            for share in (1, 50, 99)
        ]
    return marks[0], marks[1], marks[2]


async def _settle_postgres(url: str) -> tuple[datetime, datetime, datetime]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE eventctl_events SET status = CASE WHEN seq % 100 = 0 THEN 'failed' ELSE 'processed' END,"
            " due_at = NULL, processed_at = CASE WHEN seq % 100 = 0 THEN NULL ELSE now() END, attempts = 1,"
            " last_error = CASE WHEN seq % 300 = 0 THEN $1 WHEN seq % 100 = 0 THEN $2 END",
            _TIMEOUT,
            _HTTP_503,
        )
        await conn.execute("VACUUM ANALYZE eventctl_events")
        count = await conn.fetchval("SELECT max(seq) FROM eventctl_events")
        marks = [
            await conn.fetchval(
                "SELECT received_at FROM eventctl_events WHERE seq >= $1 ORDER BY seq LIMIT 1", count * share // 100
            )
            for share in (1, 50, 99)
        ]
    finally:
        await conn.close()
    return marks[0], marks[1], marks[2]


async def filter_timings(url: str, marks: tuple[datetime, datetime, datetime]) -> dict[str, tuple[float, int]]:
    """Per filter: the median time of a first page of 50 (and of a second page where there is one), and how
    many events the filter selects."""
    from eventctl.domain import EventFilter, Status
    from eventctl.store import open_store

    early, middle, late = marks
    failed = frozenset({Status.FAILED})
    filters = {
        "none": EventFilter(),
        "status=failed": EventFilter(statuses=failed),
        "status=failed&status=retrying": EventFilter(statuses=frozenset({Status.FAILED, Status.RETRYING})),
        "status=processed": EventFilter(statuses=frozenset({Status.PROCESSED})),
        "since=<the last 1%>": EventFilter(received_since=late),
        "since=<the last 50%>": EventFilter(received_since=middle),
        "until=<the first 50%>": EventFilter(received_until=middle),
        "until=<the first 1%>": EventFilter(received_until=early),
        "error=timed out (case aside)": EventFilter(error="NO ANSWER"),
        "status=failed&since=...&error=timeout": EventFilter(statuses=failed, received_since=middle, error="10s"),
        "ordering_key=cust-7": EventFilter(ordering_key="cust-7"),
        "id_prefix=pay- (50%)": EventFilter(id_prefix="pay-"),
        "id_prefix=pay-00012 (10 events)": EventFilter(id_prefix="pay-00012"),
    }
    store = open_store(url)
    await store.open()
    timings = {}
    try:
        for name, event_filter in filters.items():
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                page = await store.list_events(event_filter, 50, None)
                if page.next_before is not None:
                    await store.list_events(event_filter, 50, page.next_before)
                runs.append(time.perf_counter() - started)
            timings[name] = (statistics.median(runs), await store.count_matching(event_filter))
    finally:
        await store.close()
    return timings


def bench_filters(sizes: Sizes, scratch: Path) -> None:
    count = sizes.history_events
    print(f"\n## filters: two pages of 50 newest first, over {count:,} stored events, median of 5 (in process)")
    results: dict[str, dict[str, tuple[float, int]]] = {}
    path = scratch / "filters.db"
    asyncio.run(fill(f"sqlite:///{path}", count, _filter_event))
    results["SQLite"] = asyncio.run(filter_timings(f"sqlite:///{path}", _settle_sqlite(path)))
    with postgres_schema() as url:
        if url is not None:
            asyncio.run(fill(url, count, _filter_event))
            results["PostgreSQL"] = asyncio.run(filter_timings(url, asyncio.run(_settle_postgres(url))))
    names = list(results)
    print(f"{'filter':40} {'matching':>9}" + "".join(f" {name + ' ms':>15}" for name in names))
    for filter_name, (_, matching) in results["SQLite"].items():
        print(f"{filter_name:40} {matching:9,}" + "".join(f" {results[n][filter_name][0] * 1000:15.2f}" for n in names))


# -- bulk -------------------------------------------------------------------------------------------------


def _fail_all_sqlite(path: Path) -> None:
    """Every stored event failed, as a dead-letter queue after an incident."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "UPDATE events SET status = 'failed', due_at = NULL, processed_at = NULL, attempts = 5, last_error = ?",
            (_TIMEOUT,),
        )
        conn.commit()


async def _fail_all_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE eventctl_events SET status = 'failed', due_at = NULL, processed_at = NULL, attempts = 5,"
            " last_error = $1",
            _TIMEOUT,
        )
        await conn.execute("VACUUM ANALYZE eventctl_events")
    finally:
        await conn.close()


@dataclass
class BulkRound:
    alone: WrkResult
    beside: WrkResult
    bulk_seconds: float
    changed: int
    drain: WrkResult | None = None  # beside the worker processing as many accepted events, with no bulk action


def bulk_round(url: str, count: int, duration: int) -> BulkRound:
    """One server on a store of ``count`` failed events: ingest alone for ``duration`` s, then ingest again
    while ``POST /events/bulk`` replays every failed event (the worker processing them as they come back)."""
    asyncio.run(fill(url, count))
    if url.startswith("sqlite:///"):
        _fail_all_sqlite(Path(url.removeprefix("sqlite:///")))
    else:
        asyncio.run(_fail_all_postgres(url))
    port = free_port()
    with serving(eventctl_command(), eventctl_env(port, url, LOG_LEVEL="warning"), port):
        alone = run_wrk(port, duration)
        answer: dict[str, float] = {}

        def replay_all() -> None:
            started = time.perf_counter()
            body = {"action": "replay", "filter": {"status": "failed"}}
            response = httpx.post(f"http://127.0.0.1:{port}/events/bulk", json=body, timeout=600)
            answer["seconds"] = time.perf_counter() - started
            answer["changed"] = response.json()["changed"]

        with ThreadPoolExecutor(1) as pool:
            replaying = pool.submit(replay_all)
            time.sleep(0.05)  # the bulk action under way before the load starts
            beside = run_wrk(port, duration)
            replaying.result()
    return BulkRound(alone, beside, answer["seconds"], int(answer["changed"]))


def drain_beside(url: str, count: int, duration: int) -> WrkResult:
    """Ingest while the worker processes ``count`` accepted events: the work a replay hands the worker,
    without the bulk action itself."""
    asyncio.run(fill(url, count))
    port = free_port()
    with serving(eventctl_command(), eventctl_env(port, url, LOG_LEVEL="warning"), port):
        return run_wrk(port, duration)


def bench_bulk(sizes: Sizes, scratch: Path) -> None:
    """Ingest p99 with and without a bulk replay of every failed event running at the same time, on one
    server per round (the same run), median of the rounds."""
    count, duration = sizes.drain_events, sizes.duration
    print(f"\n## bulk: POST /events (wrk, 64 connections, {duration}s) alone, then while a bulk replay of"
          f" {count:,} failed events runs, median of {sizes.rounds}")  # fmt: skip
    print("(then, for comparison: ingest while the worker processes as many accepted events, with no bulk action)")
    header = f"{'store':12} {'ingest':23} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99 vs alone':>13}"
    print(f"{header} {'non-2xx':>8} {'bulk s':>8} {'replayed':>9}")
    stores: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str | None]]]] = [
        ("SQLite", lambda: sqlite_file(scratch)),
        ("PostgreSQL", postgres_schema),
    ]
    for name, database in stores:
        rounds: list[BulkRound] = []
        for _ in range(sizes.rounds):
            with database() as url:
                if url is None:
                    print(f"{name:12} skipped: no server at EVENTCTL_BENCH_DATABASE_URL={PG_URL}")
                    break
                measured = bulk_round(url, count, duration)
            with database() as url:
                assert url is not None
                measured.drain = drain_beside(url, count, duration)
            rounds.append(measured)
        if not rounds:
            continue
        alone_p99 = statistics.median(r.alone.p99_ms for r in rounds)
        bulk_seconds = statistics.median(r.bulk_seconds for r in rounds)
        changed = min(r.changed for r in rounds)
        phases = (
            ("alone", [r.alone for r in rounds]),
            ("beside the bulk replay", [r.beside for r in rounds]),
            ("beside a drain, no bulk", [r.drain for r in rounds if r.drain is not None]),
        )
        for label, runs in phases:
            rate = statistics.median(r.requests_per_second for r in runs)
            p50 = statistics.median(r.p50_ms for r in runs)
            p99 = statistics.median(r.p99_ms for r in runs)
            non_2xx = sum(r.non_2xx for r in runs)
            tail = f" {bulk_seconds:8.2f} {changed:9,}" if runs[0] is rounds[0].beside else ""
            print(f"{name:12} {label:23} {rate:9.0f} {p50:8.2f} {p99:8.2f} {p99 / alone_p99:12.2f}x {non_2xx:8d}{tail}")


# -- cli --------------------------------------------------------------------------------------------------


def bench_cli(sizes: Sizes, scratch: Path) -> None:
    """Start-up of the command and of the package, each a median of fresh processes, beside a Python that
    does nothing (the floor every command pays)."""
    runs = 5 if sizes is QUICK else 21
    script = Path(sys.executable).parent / "eventctl"
    commands = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        'python -c "import eventctl"': [sys.executable, "-c", "import eventctl"],
        'python -c "from eventctl import Client"': [sys.executable, "-c", "from eventctl import Client"],
        "eventctl --help": [str(script), "--help"] if script.exists() else [sys.executable, "-m", "eventctl", "--help"],
    }
    timings: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):  # interleaved, so that a busy moment weighs on every command alike
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=scratch)
            timings[name].append(time.perf_counter() - started)
    baseline = statistics.median(timings["python -c pass (baseline)"])
    print(f"\n## cli: start-up, median of {runs} fresh processes each (not pinned)")
    print(f"{'command':42} {'ms':>7} {'over baseline':>14}")
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        print(f"{name:42} {median * 1000:7.1f} {(median - baseline) * 1000:+13.1f}ms")


SECTIONS = {
    "ingest": bench_ingest,
    "slowdisk": bench_slowdisk,
    "batch": bench_batch,
    "drain": bench_drain,
    "store": bench_store,
    "claims": bench_claims,
    "latency": bench_latency,
    "scale": bench_scale,
    "bulk": bench_bulk,
    "cli": bench_cli,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, to check the benchmarks run")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    args = parser.parse_args()
    if shutil.which("wrk") is None and {"ingest", "slowdisk", "batch", "scale", "bulk"} & set(args.only.split(",")):
        sys.exit("wrk is needed for the ingest, slowdisk, batch, scale and bulk sections (Debian package wrk)")
    sizes = QUICK if args.quick else FULL
    print(f"eventctl benchmarks on {os.cpu_count()} cores; servers pinned to core 0, wrk to core 1: {PINNED}")
    with tempfile.TemporaryDirectory(prefix="eventctl-bench-") as scratch:
        for name in args.only.split(","):
            SECTIONS[name](sizes, Path(scratch))


if __name__ == "__main__":
    main()
