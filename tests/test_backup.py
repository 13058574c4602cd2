"""``eventctl backup`` copies a live server's SQLite store under load: the copy is consistent, holds every
event acknowledged before the backup began, and a server starts on it."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import httpx

from tests.conftest import ServerFactory
from tests.test_cli import eventctl


def test_a_backup_of_a_live_store_under_load_holds_every_acknowledged_event(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start(PROCESSING_DELAY_MS=0)
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for i in range(1_000_000):
                if stop.is_set():
                    return
                if client.post("/events", json={"event_id": f"live_{i}", "payload": {"i": i}}).status_code == 202:
                    acknowledged.append(f"live_{i}")

    writer = threading.Thread(target=load)
    writer.start()
    try:
        copies = []
        for round_ in range(3):
            while len(acknowledged) < 200 * (round_ + 1):
                stop.wait(0.05)
            before = list(acknowledged)
            copy = tmp_path / f"copy-{round_}.db"
            result = eventctl("backup", str(copy), "--database-url", server.env["DATABASE_URL"])
            assert result.returncode == 0, result.stderr
            assert "backed up" in result.stdout
            copies.append((copy, before))
    finally:
        stop.set()
        writer.join(timeout=30)
    for copy, before in copies:
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {row[0] for row in conn.execute("SELECT event_id FROM events")}
        assert set(before) <= stored
    last_copy, last_before = copies[-1]
    restored = servers.start(DATABASE_URL=f"sqlite:///{last_copy}")
    assert restored.client.get(f"/events/{last_before[-1]}").json()["payload"] == {"i": len(last_before) - 1}


def test_backup_refuses_to_overwrite_and_to_copy_what_it_cannot(tmp_path: Path) -> None:
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"")
    database = tmp_path / "events.db"
    sqlite3.connect(database).close()
    refused = eventctl("backup", str(existing), "--database-url", f"sqlite:///{database}")
    assert refused.returncode == 2
    assert "exists" in refused.stderr
    assert eventctl("backup", str(existing), "--force", "--database-url", f"sqlite:///{database}").returncode == 0
    postgres = eventctl("backup", str(tmp_path / "x.db"), "--database-url", "postgresql://db/events")
    assert postgres.returncode == 2
    assert "pg_dump" in postgres.stderr
