"""The console's session and cross-site protection, in process: the signed cookie, its lifetime and key,
the CSRF token, the same-origin check, scopes, and the failed-login limit."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from eventctl.auth import parse_api_keys
from eventctl.console.login_limit import MAX_FAILURES, WINDOW_SECONDS, FailedLogins
from eventctl.console.session import COOKIE, Sessions, csrf_matches, same_origin
from tests.inprocess import BASE_URL, RunningApp, running_app, settings_from_env

pytestmark = pytest.mark.anyio

READER = "reader-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdefgh"
API_KEYS = f"{READER}:events:read,{ADMIN}:admin"
SAME_ORIGIN = {"origin": BASE_URL, "sec-fetch-site": "same-origin"}


@pytest.fixture
async def app() -> AsyncIterator[RunningApp]:
    async with running_app(settings_from_env(API_KEYS=API_KEYS, ENV="prod")) as running:
        yield running


async def login(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/ui/login", data={"key": key, "next": "/ui/events"}, headers=SAME_ORIGIN)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_a_session_names_its_key_and_expires() -> None:
    keys = parse_api_keys(API_KEYS)
    sessions = Sessions(keys)
    viewer, cookie = sessions.issue(keys[1])
    assert READER not in cookie
    assert ADMIN not in cookie
    assert keys[1].digest.hex() not in cookie
    read = sessions.read(cookie)
    assert read is not None
    assert read.key == keys[1]
    assert read.csrf == viewer.csrf
    assert read.can_act
    assert sessions.read(cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")) is None  # forged
    assert Sessions(keys, lifetime=-1).read(cookie) is None  # expired
    assert Sessions(parse_api_keys(f"{READER}:events:read")).read(cookie) is None  # the key was removed


def test_the_csrf_token_and_the_origin_are_checked() -> None:
    viewer, _ = Sessions(parse_api_keys(API_KEYS)).issue(None)
    assert csrf_matches(viewer, viewer.csrf)
    assert not csrf_matches(viewer, None)
    assert not csrf_matches(viewer, viewer.csrf + "x")
    host = {"host": "eventctl.test"}
    assert same_origin({**host, "origin": "http://eventctl.test", "sec-fetch-site": "same-origin"}, "http")
    assert same_origin(host, "http")  # curl: judged by the token alone
    assert not same_origin({**host, "sec-fetch-site": "cross-site"}, "http")
    assert not same_origin({**host, "origin": "https://evil.example"}, "http")
    assert not same_origin({**host, "origin": "null"}, "http")


def test_failed_logins_are_limited_per_address() -> None:
    now = [0.0]
    limit = FailedLogins(clock=lambda: now[0])
    for _ in range(MAX_FAILURES):
        assert limit.retry_after("10.0.0.1") == 0
        limit.failed("10.0.0.1")
    assert limit.retry_after("10.0.0.1") > 0
    assert limit.retry_after("10.0.0.2") == 0
    now[0] += WINDOW_SECONDS + 1
    assert limit.retry_after("10.0.0.1") == 0


async def test_pages_ask_for_a_key_and_the_api_key_is_not_enough(app: RunningApp) -> None:
    response = await app.client.get("/ui/events?status=failed")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?next=")
    bearer = await app.client.get("/ui/events", headers={"authorization": f"Bearer {ADMIN}"})
    assert bearer.status_code == 303  # the console's pages go by the session cookie only


async def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(app: RunningApp) -> None:
    response = await login(app.client, ADMIN)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/events"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Max-Age=28800" in cookie
    assert ADMIN not in cookie
    page = await app.client.get("/ui/events")
    assert page.status_code == 200
    assert ADMIN not in page.text
    out = await app.client.post("/ui/logout", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN)
    assert out.status_code == 303
    assert (await app.client.get("/ui/events")).status_code == 303


async def test_a_wrong_key_is_refused_then_the_address_is_limited(app: RunningApp) -> None:
    for _ in range(MAX_FAILURES):
        refused = await login(app.client, "not-a-key-at-all-0123456789")
        assert refused.status_code == 401
        assert "not-a-key" not in refused.text
    limited = await login(app.client, ADMIN)  # even the right key waits now
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


async def test_a_read_key_sees_no_buttons_and_its_forced_action_is_refused(app: RunningApp) -> None:
    await login(app.client, READER)
    page = await app.client.get("/ui/dead-letters")
    assert page.status_code == 200
    assert "Replay" not in page.text
    assert "(read only)" in page.text
    forced = await app.client.post(
        "/ui/event/replay", data={"csrf": csrf_of(page.text), "id": "x"}, headers=SAME_ORIGIN
    )
    assert forced.status_code == 403
    assert "admin scope" in forced.text


async def test_an_action_without_the_token_or_from_another_site_is_refused(app: RunningApp) -> None:
    await login(app.client, ADMIN)
    page = await app.client.get("/ui/dead-letters")
    token = csrf_of(page.text)
    no_token = await app.client.post("/ui/event/replay", data={"id": "x"}, headers=SAME_ORIGIN)
    assert no_token.status_code == 403
    cross = await app.client.post(
        "/ui/event/replay", data={"csrf": token, "id": "x"}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert "Cross-site" in cross.text
    allowed = await app.client.post("/ui/event/replay", data={"csrf": token, "id": "x"}, headers=SAME_ORIGIN)
    assert allowed.status_code == 404  # through every check, to an event that does not exist


async def test_without_keys_the_console_is_open_and_still_checks_the_token() -> None:
    async with running_app() as running:
        page = await running.client.get("/ui/dead-letters")
        assert page.status_code == 200
        assert COOKIE in page.headers["set-cookie"]
        refused = await running.client.post("/ui/event/delete", data={"id": "x"}, headers=SAME_ORIGIN)
        assert refused.status_code == 403


async def test_a_cursor_past_any_position_is_ignored_not_an_error(app: RunningApp) -> None:
    await login(app.client, READER)
    page = await app.client.get("/ui/events?before=99999999999999999999999999")
    assert page.status_code == 200
