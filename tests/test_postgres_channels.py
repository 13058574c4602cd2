"""Wake-ups across instances stay within one deployment: eventctl instances whose tables are in different
schemas of one PostgreSQL database do not wake each other."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from eventctl.domain import NewEvent
from eventctl.store import open_store
from eventctl.store.postgres import CHANNEL, wake_up_channel
from tests.postgres_support import PG_URL, with_search_path

pytestmark = pytest.mark.anyio


def test_the_default_schema_keeps_the_documented_channel_and_others_get_their_own() -> None:
    assert wake_up_channel("public") == CHANNEL
    assert wake_up_channel("tenant_a") != wake_up_channel("tenant_b")
    assert len(wake_up_channel("x" * 63)) < 64  # PostgreSQL's limit for a channel name


async def test_an_event_in_one_schema_wakes_its_own_instances_and_not_another_schemas(pg_url: str) -> None:
    other_schema = f"eventctl_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f"CREATE SCHEMA {other_schema}")
    try:
        sender, same, other = open_store(pg_url), open_store(pg_url), open_store(with_search_path(PG_URL, other_schema))
        for store in (sender, same, other):
            await store.open()
        try:
            await asyncio.sleep(0.5)  # the listeners are connected and have announced themselves
            for store in (same, other):
                await store.wait_for_work(0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            same_woken = asyncio.create_task(same.wait_for_work(10))
            other_woken = asyncio.create_task(other.wait_for_work(1.0))
            await sender.add(NewEvent("e1", b"{}"))
            await asyncio.wait_for(same_woken, 5)
            await other_woken
            assert loop.time() - started >= 0.9  # the other schema's store waited out its time: nobody woke it
        finally:
            for store in (sender, same, other):
                await store.close()
    finally:
        await conn.execute(f"DROP SCHEMA {other_schema} CASCADE")
        await conn.close()
