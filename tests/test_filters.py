"""The event filters (SPEC §11): the one parser, then ``GET /events`` with every filter on each store, through
the real app in process. A bad value is a 400 naming the parameter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventctl.domain import EventFilter, Status
from eventctl.filters import FILTER_PARAMETERS, FilterError, parse_body, parse_query
from tests.inprocess import running_app, wait_for_status

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def problems_of(error: pytest.ExceptionInfo[FilterError]) -> dict[str, str]:
    return {problem.parameter: problem.detail for problem in error.value.problems}


def test_no_parameters_is_the_empty_filter() -> None:
    assert parse_query({}, NOW) == EventFilter()
    assert parse_body(None, NOW) == EventFilter()
    assert parse_body({}, NOW) == EventFilter()


def test_every_filter_parses_from_query_parameters() -> None:
    params = {
        "status": ["failed", "retrying"],
        "since": ["2h"],
        "until": ["2026-12-01T13:30:00+02:00"],
        "error": ["Timeout"],
        "ordering_key": ["order-7"],
        "id_prefix": ["evt_"],
        "limit": ["10"],  # not a filter: left to the caller
    }
    assert parse_query(params, NOW) == EventFilter(
        statuses=frozenset({Status.FAILED, Status.RETRYING}),
        received_since=NOW - timedelta(hours=2),
        received_until=datetime(2026, 12, 1, 11, 30, tzinfo=UTC),
        error="Timeout",
        ordering_key="order-7",
        id_prefix="evt_",
    )


@pytest.mark.parametrize(
    ("text", "before_now"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("7d", timedelta(days=7)), ("0", timedelta())],
)
def test_a_duration_means_that_long_before_now(text: str, before_now: timedelta) -> None:
    assert parse_query({"since": [text]}, NOW).received_since == NOW - before_now


def test_a_time_is_kept_in_utc() -> None:
    moment = parse_query({"since": ["2026-12-01T09:30:00Z"]}, NOW).received_since
    assert moment == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert moment is not None
    assert moment.utcoffset() == timedelta()


@pytest.mark.parametrize(
    ("parameter", "value", "words"),
    [
        ("status", "bogus", "'bogus' is not a status"),
        ("since", "2026-12-01T09:30:00", "with an offset"),  # no offset: which time zone?
        ("since", "yesterday", "duration"),
        ("since", "-1h", "duration"),
        ("until", "1y", "duration"),
        ("until", "99999999999999d", "duration"),  # beyond any date
        ("error", "a\x00b", "without control characters"),  # PostgreSQL cannot even compare a NUL
        ("ordering_key", "x" * 257, "1 to 256 characters"),
        ("id_prefix", "line\nbreak", "without control characters"),
    ],
)
def test_a_bad_value_names_its_parameter(parameter: str, value: str, words: str) -> None:
    with pytest.raises(FilterError) as error:
        parse_query({parameter: [value]}, NOW)
    problems = problems_of(error)
    assert list(problems) == [parameter]
    assert words in problems[parameter]


def test_every_bad_parameter_is_named_at_once() -> None:
    with pytest.raises(FilterError) as error:
        parse_query({"status": ["nope"], "since": ["soon"], "id_prefix": ["\x01"]}, NOW)
    assert set(problems_of(error)) == {"status", "since", "id_prefix"}
    assert error.value.errors("#/query/")[0]["pointer"] == "#/query/status"


def test_a_single_valued_filter_given_twice_is_refused() -> None:
    with pytest.raises(FilterError) as error:
        parse_query({"error": ["a", "b"]}, NOW)
    assert problems_of(error) == {"error": "give error at most once"}


def test_an_until_before_since_is_valid_and_empty_values_are_not_set() -> None:
    window = parse_query({"since": ["1h"], "until": ["2h"]}, NOW)
    assert window.received_since == NOW - timedelta(hours=1)
    assert window.received_until == NOW - timedelta(hours=2)
    assert parse_query({name: [""] for name in FILTER_PARAMETERS}, NOW) == EventFilter()
    assert parse_body({name: "" for name in FILTER_PARAMETERS}, NOW) == EventFilter()


def test_a_body_filter_takes_status_as_a_string_or_a_list() -> None:
    assert parse_body({"status": "failed"}, NOW).statuses == {Status.FAILED}
    assert parse_body({"status": ["failed", "processed"]}, NOW).statuses == {Status.FAILED, Status.PROCESSED}
    assert parse_body({"since": "1h", "error": "boom"}, NOW) == EventFilter(
        received_since=NOW - timedelta(hours=1), error="boom"
    )


@pytest.mark.parametrize(
    ("document", "parameter"),
    [
        ({"statuses": ["failed"]}, "statuses"),  # a typo must not widen a bulk delete to every event
        ({"status": []}, "status"),
        ({"status": [1]}, "status"),
        ({"status": {"failed": True}}, "status"),
        ({"since": 3600}, "since"),
        ({"error": None, "ordering_key": 7}, "ordering_key"),
        (["failed"], ""),
    ],
)
def test_a_bad_body_filter_names_its_key(document: Any, parameter: str) -> None:
    with pytest.raises(FilterError) as error:
        parse_body(document, NOW)
    assert list(problems_of(error)) == [parameter]


# The HTTP surface, on each store.


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'events.db'}" if request.param == "sqlite" else "memory://"


@pytest.fixture
async def seeded(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, datetime]]:
    """An app with: ``old_ok`` (processed, key ``k1``), then — after the returned moment — ``new_perm``
    (failed: permanent), ``new_retry`` (failed: attempts exhausted, key ``k1``), ``new_later`` (accepted,
    due in an hour, key ``k2``)."""
    async with running_app(
        database_url=database_url,
        handler="tests.scripted_handlers:scripted",
        max_attempts=2,
        retry_backoff_ms=0,
        retry_backoff_max_ms=0,
    ) as running:
        client = running.client
        await client.post("/events", json={"event_id": "old_ok", "ordering_key": "k1"})
        await wait_for_status(client, "old_ok", "processed")
        await asyncio.sleep(0.05)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await client.post("/events", json={"event_id": "new_perm", "payload": {"permanent": True}})
        await client.post("/events", json={"event_id": "new_retry", "ordering_key": "k1", "payload": {"fail_times": 9}})
        await client.post("/events", json={"event_id": "new_later", "ordering_key": "k2", "delay_ms": 3_600_000})
        await wait_for_status(client, "new_perm", "failed")
        await wait_for_status(client, "new_retry", "failed")
        yield client, middle


async def listed(client: httpx.AsyncClient, params: Any) -> list[str]:
    response = await client.get("/events", params=params)
    assert response.status_code == 200, response.text
    return sorted(event["event_id"] for event in response.json()["items"])


@pytest.mark.anyio
async def test_every_filter_selects_on_get_events(seeded: tuple[httpx.AsyncClient, datetime]) -> None:
    client, middle = seeded
    assert await listed(client, {}) == ["new_later", "new_perm", "new_retry", "old_ok"]
    assert await listed(client, {"status": "failed"}) == ["new_perm", "new_retry"]
    assert await listed(client, [("status", "failed"), ("status", "accepted")]) == [
        "new_later",
        "new_perm",
        "new_retry",
    ]
    assert await listed(client, {"since": middle.isoformat()}) == ["new_later", "new_perm", "new_retry"]
    assert await listed(client, {"until": middle.isoformat()}) == ["old_ok"]
    assert await listed(client, {"since": "1h", "status": "processed"}) == ["old_ok"]
    assert await listed(client, {"until": "1h"}) == []
    assert await listed(client, {"error": "SCRIPTED failure"}) == ["new_retry"]
    assert await listed(client, {"error": "can never"}) == ["new_perm"]
    assert await listed(client, {"ordering_key": "k1"}) == ["new_retry", "old_ok"]
    assert await listed(client, {"id_prefix": "new_"}) == ["new_later", "new_perm", "new_retry"]
    assert await listed(client, {"id_prefix": "new_", "ordering_key": "k1", "status": "failed"}) == ["new_retry"]
    # LIKE's wildcards are plain characters in a prefix or an error
    assert await listed(client, {"id_prefix": "new%"}) == []
    assert await listed(client, {"error": "_"}) == []


@pytest.mark.anyio
async def test_bad_filters_are_400_naming_each_parameter(seeded: tuple[httpx.AsyncClient, datetime]) -> None:
    client, _ = seeded
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("status", "failed"),
        ("status", "bogus"),
        ("since", "soon"),
        ("error", "a\x00b"),
        ("limit", "5"),
    ]
    response = await client.get("/events", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    pointers = [error["pointer"] for error in response.json()["errors"]]
    assert pointers == ["#/query/status", "#/query/since", "#/query/error"]
    twice = await client.get("/events", params=[("ordering_key", "a"), ("ordering_key", "b")])
    assert twice.status_code == 400
    assert twice.json()["errors"] == [{"detail": "give ordering_key at most once", "pointer": "#/query/ordering_key"}]


@pytest.mark.anyio
async def test_the_openapi_document_lists_every_filter() -> None:
    async with running_app() as running:
        spec = (await running.client.get("/openapi.json")).json()
    names = {parameter["name"] for parameter in spec["paths"]["/events"]["get"]["parameters"]}
    assert {"status", "since", "until", "error", "ordering_key", "id_prefix", "limit", "cursor"} <= names
