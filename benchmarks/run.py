"""eventctl's benchmarks: one command, figures and ratios against baselines measured in the same run.

    .venv/bin/python benchmarks/run.py            # everything (about 8 minutes)
    .venv/bin/python benchmarks/run.py --quick    # smaller numbers, to see that it works
    .venv/bin/python benchmarks/run.py --only ingest,drain

Sections:
- ingest: POST /events with unique ids from wrk (64 connections), eventctl against minimal in-memory servers
  (the Go seed server, FastAPI apps), interleaved A B C A B C, median of the rounds; requests/s, p50, p99, ratio
  to the Go seed server (the baseline; built from benchmarks/seed_server with Debian's golang-go).
- drain: time to process N stored events with a no-op handler, SQLite and PostgreSQL.
- store: the cost per event of each write an event needs (add, claim, complete), through the store alone.
- latency: accept → processed at a light steady load, from the server's own timestamps.
- scale: ingest with 1,000,000 processed events already stored against an empty store, and the RSS.

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
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

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


def run_wrk(port: int, duration: int, connections: int = 64) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / "post.lua"),
               f"http://127.0.0.1:{port}/events"]  # fmt: skip
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


# -- drain ------------------------------------------------------------------------------------------------


async def fill(database_url: str, count: int) -> None:
    """Store ``count`` accepted events through eventctl's own store (so the schema is the real one)."""
    from eventctl.domain import NewEvent
    from eventctl.store import open_store

    store = open_store(database_url)
    await store.open()
    try:
        for start in range(0, count, 5000):
            batch = range(start, min(count, start + 5000))
            await asyncio.gather(*(store.add(NewEvent(f"stored-{i}", b'{"order":1}')) for i in batch))
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


def drain_seconds_sqlite(path: Path) -> tuple[int, float]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count, first, last = conn.execute(
            "SELECT count(*), min(processed_at), max(processed_at) FROM events WHERE status = 'processed'"
        ).fetchone()
    return count, (last - first) / 1_000_000


async def drain_seconds_postgres(url: str) -> tuple[int, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, EXTRACT(EPOCH FROM max(processed_at) - min(processed_at)) AS seconds"
            " FROM eventctl_events WHERE status = 'processed'"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), float(row["seconds"])


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


def bench_drain(sizes: Sizes, scratch: Path) -> None:
    count = sizes.drain_events
    print(f"\n## drain: {count:,} stored events, no-op handler (PROCESSING_DELAY_MS=0), default settings")
    print(f"{'store':30} {'seconds':>9} {'events/s':>10}")
    path = scratch / "drain.db"
    asyncio.run(fill(f"sqlite:///{path}", count))
    port = free_port()
    with serving(eventctl_command(), eventctl_env(port, f"sqlite:///{path}", LOG_LEVEL="warning"), port):
        wait_until_drained(port, count)
    processed, seconds = drain_seconds_sqlite(path)
    print(f"{'SQLite':30} {seconds:9.2f} {processed / seconds:10.0f}")
    with postgres_schema() as url:
        if url is None:
            print(f"{'PostgreSQL':30} skipped: no server at EVENTCTL_BENCH_DATABASE_URL={PG_URL}")
            return
        asyncio.run(fill(url, count))
        port = free_port()
        with serving(eventctl_command(), eventctl_env(port, url, LOG_LEVEL="warning"), port):
            wait_until_drained(port, count)
        processed, seconds = asyncio.run(drain_seconds_postgres(url))
        print(f"{'PostgreSQL':30} {seconds:9.2f} {processed / seconds:10.0f}")


# -- store ------------------------------------------------------------------------------------------------


async def store_costs(database_url: str, count: int) -> dict[str, float]:
    """Seconds per event of each write an event costs, through eventctl's own store with no HTTP in front:
    add (at accept), claim (before processing), complete (after). Many at once, as under load."""
    from eventctl.domain import NewEvent
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


def bench_store(sizes: Sizes, scratch: Path) -> None:
    count = sizes.drain_events // 2
    costs = asyncio.run(store_costs(f"sqlite:///{scratch / 'store-costs.db'}", count))
    print(f"\n## store: the writes one event costs, SQLite, {count:,} events, no HTTP (in this process, not pinned)")
    print(f"{'write':12} {'us/event':>9} {'events/s':>10}")
    for name, seconds in costs.items():
        print(f"{name:12} {seconds * 1e6:9.1f} {1 / seconds:10.0f}")
    total = sum(costs.values())
    print(f"{'all three':12} {total * 1e6:9.1f} {1 / total:10.0f}")


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
    from datetime import datetime

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


SECTIONS = {
    "ingest": bench_ingest,
    "drain": bench_drain,
    "store": bench_store,
    "latency": bench_latency,
    "scale": bench_scale,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, to check the benchmarks run")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    args = parser.parse_args()
    if shutil.which("wrk") is None and {"ingest", "scale"} & set(args.only.split(",")):
        sys.exit("wrk is needed for the ingest and scale sections (Debian package wrk)")
    sizes = QUICK if args.quick else FULL
    print(f"eventctl benchmarks on {os.cpu_count()} cores; servers pinned to core 0, wrk to core 1: {PINNED}")
    with tempfile.TemporaryDirectory(prefix="eventctl-bench-") as scratch:
        for name in args.only.split(","):
            SECTIONS[name](sizes, Path(scratch))


if __name__ == "__main__":
    main()
