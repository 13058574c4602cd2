"""Idempotency is decided by the database: concurrent posts of one id never both get 202."""

from __future__ import annotations

import asyncio
import collections

import httpx
import orjson
import pytest

from tests.conftest import ServerFactory

pytestmark = pytest.mark.anyio


async def test_200_concurrent_posts_of_one_id_give_exactly_one_202(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/events", json={"event_id": "evt_once", "payload": {"n": i}}) for i in range(200))
        )
    codes = collections.Counter(response.status_code for response in responses)
    assert codes == {202: 1, 409: 199}
    winner = next(r for r in responses if r.status_code == 202)
    stored = server.client.get("/events/evt_once").json()
    assert orjson.loads(winner.request.content)["payload"] == stored["payload"]
