"""Idempotency is decided by the database: concurrent posts of one id never both get 202 (the real app in
process, on a SQLite file; several instances on PostgreSQL are in ``test_postgres_cluster.py``)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import orjson
import pytest

from tests.inprocess import running_app

pytestmark = pytest.mark.anyio


async def test_200_concurrent_posts_of_one_id_give_exactly_one_202(tmp_path: Path) -> None:
    async with running_app(database_url=f"sqlite:///{tmp_path / 'events.db'}") as running:
        client = running.client
        responses = await asyncio.gather(
            *(client.post("/events", json={"event_id": "evt_once", "payload": {"n": i}}) for i in range(200))
        )
        codes = collections.Counter(response.status_code for response in responses)
        assert codes == {202: 1, 409: 199}
        winner = next(r for r in responses if r.status_code == 202)
        stored = (await client.get("/events/evt_once")).json()
    assert orjson.loads(winner.request.content)["payload"] == stored["payload"]
