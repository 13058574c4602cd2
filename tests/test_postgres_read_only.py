"""A managed PostgreSQL failing over to read-only, on a private server (SPEC §4: no restart needed): while
writes cannot succeed, new events get 503 with Retry-After and ``/ready`` is 503; when writes come back, the
same process takes and processes events again."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.conftest import SCRIPTED, ServerFactory, event_status, wait_for_status, wait_until
from tests.postgres_support import PrivatePostgres


def set_read_only(server: PrivatePostgres, read_only: bool) -> None:
    async def alter() -> None:
        conn = await asyncpg.connect(server.url, timeout=10)
        try:
            await conn.execute("SET default_transaction_read_only = off")  # this session may always write
            await conn.execute(f"ALTER SYSTEM SET default_transaction_read_only = {'on' if read_only else 'off'}")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    asyncio.run(alter())


def test_a_failover_to_read_only_is_503_with_retry_after_then_processing_resumes_without_a_restart(
    servers: ServerFactory, private_postgres: PrivatePostgres
) -> None:
    server = servers.start(DATABASE_URL=private_postgres.url, HANDLER=SCRIPTED, LEASE_SECONDS=2)
    client = server.client
    assert client.post("/events", json={"event_id": "before"}).status_code == 202
    wait_for_status(client, "before", "processed")
    # Claimed before the failover, finishing during it: its outcome cannot be written, its lease runs out.
    client.post("/events", json={"event_id": "in-flight", "payload": {"sleep_s": 2, "sleep_attempts": 1}})
    wait_for_status(client, "in-flight", "processing")

    set_read_only(private_postgres, True)
    wait_until(lambda: client.get("/ready").status_code == 503, timeout=15, message="/ready to turn 503")
    refused = client.post("/events", json={"event_id": "during"})
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert client.get("/events/before").status_code == 200  # reads still work on a read-only database
    wait_until(
        lambda: "in-flight" in server.log and "could not record the outcome" in server.log,
        timeout=15,
        message="the in-flight event's outcome to fail to be recorded",
    )

    set_read_only(private_postgres, False)
    wait_until(lambda: client.get("/ready").status_code == 200, timeout=15, message="/ready to turn 200 again")
    assert client.post("/events", json={"event_id": "during"}).status_code == 202  # the client's retry
    assert client.post("/events", json={"event_id": "after"}).status_code == 202
    for event_id in ("in-flight", "during", "after"):
        wait_for_status(client, event_id, "processed")
    assert event_status(client, "in-flight") == "processed"
    assert server.process.poll() is None  # the same process all along
    assert "Traceback" not in server.log
