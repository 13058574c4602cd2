"""An id that no event can have (a control character, NUL, a line separator, too long) is a 404 on every
store, answered without asking the store: PostgreSQL cannot even compare a NUL, and answered 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inprocess import running_app

pytestmark = pytest.mark.anyio

IMPOSSIBLE_PATHS = ["%00", "a%00b", "%0A", "x%0D%0Aforged", "%7F", "%C2%85", "%E2%80%A8", "a" * 257]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'events.db'}" if request.param == "sqlite" else "memory://"


async def test_get_and_replay_of_an_id_no_event_can_have_are_404_problems(database_url: str) -> None:
    async with running_app(database_url=database_url) as running:
        for path in IMPOSSIBLE_PATHS:
            for response in (
                await running.client.get(f"/events/{path}"),
                await running.client.post(f"/events/{path}/replay"),
            ):
                assert response.status_code == 404, (path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                # Paths with a line break match no route at all: the router's own 404, a problem as well.
                assert response.json()["type"] in (
                    "urn:eventctl:problem:event-not-found",
                    "urn:eventctl:problem:not-found",
                )


async def test_the_longest_possible_id_is_still_looked_up(database_url: str) -> None:
    longest = "a" * 256
    async with running_app(database_url=database_url) as running:
        assert (await running.client.post("/events", json={"event_id": longest})).status_code == 202
        assert (await running.client.get(f"/events/{longest}")).json()["event_id"] == longest
