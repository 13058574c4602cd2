"""The console in a real browser (Debian's chromium, driven by playwright) against a real server: every
page with data, replay one and in bulk from the dead letters, the filters, the read key's view, a cross-site
POST, JavaScript off, and no request leaving 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.conftest import ServerFactory, ServerProcess, wait_until
from tests.console_browser import (
    ADMIN,
    CHROMIUM,
    READER,
    admin_client,
    chromium,
    logged_in,
    send,
    start_console_server,
    status_of,
)
from tests.tools import unavailable


@pytest.fixture(scope="module")
def server(shared_servers: ServerFactory) -> ServerProcess:
    return start_console_server(shared_servers)


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with admin_client(server) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        unavailable("Debian's chromium is not installed (.ci/install-tools: apt-get install chromium)")
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def admin(browser: Browser, server: ServerProcess) -> Iterator[BrowserContext]:
    context = logged_in(browser, server, ADMIN)
    yield context
    context.close()


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gates")


def test_every_page_renders_with_data_and_no_request_leaves_127_0_0_1(
    admin: BrowserContext, api: httpx.Client, server: ServerProcess, gates: Path
) -> None:
    send(api, "page-ok", {"order": 1, "items": ["a", "b"]}, until="processed")
    send(api, "page-failed", {"fail_unless_exists": str(gates / "never")}, until="failed")
    requests: list[str] = []
    admin.on("request", lambda request: requests.append(request.url))
    page = admin.new_page()
    page.goto("/ui")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("svg polyline.accepted")).to_have_count(1)
    expect(page.locator("dd.status-failed")).not_to_have_text("0")
    with page.expect_request(re.compile(r"/ui/overview/live$")):  # the live part refreshes itself
        pass
    page.get_by_role("link", name="Events", exact=True).click()
    expect(page.get_by_role("link", name="page-ok")).to_be_visible()
    page.get_by_role("link", name="page-ok").click()
    expect(page.locator("pre.payload")).to_contain_text('"items": [')
    expect(page.locator("ol.timeline li")).to_have_count(1)
    expect(page.locator("ol.timeline")).to_contain_text("#1 processed")
    page.get_by_role("link", name="Dead letters").click()
    expect(page.get_by_role("link", name="page-failed")).to_be_visible()
    page.goto("/ui/event?id=page-failed")
    expect(page.get_by_role("button", name="Replay")).to_be_visible()
    expect(page.get_by_role("button", name="Delete")).to_be_visible()
    page.close()
    assert requests
    assert all(url.startswith(server.url + "/") for url in requests), [u for u in requests if server.url not in u]
    assert server.url.startswith("http://127.0.0.1:")
    assert not any(ADMIN in url for url in requests)


def test_a_failed_event_replayed_from_the_dead_letters_reaches_processed(
    admin: BrowserContext, api: httpx.Client, gates: Path
) -> None:
    send(api, "replay-me", {"fail_unless_exists": str(gates / "replay-me")}, until="failed")
    (gates / "replay-me").touch()
    page = admin.new_page()
    page.goto("/ui/dead-letters")
    page.get_by_label("Select replay-me").check()
    page.get_by_role("button", name="Replay…").click()
    expect(page.get_by_role("heading")).to_have_text("Replay 1 failed event?")
    page.get_by_role("button", name="Yes, replay 1").click()
    expect(page.get_by_role("status")).to_have_text("Replayed 1 event.")
    wait_until(lambda: status_of(api, "replay-me") == "processed", 30, "replay-me to be processed")
    page.close()


def test_a_bulk_replay_of_the_matching_events(admin: BrowserContext, api: httpx.Client, gates: Path) -> None:
    for number in range(3):
        send(api, f"bulk-{number}", {"fail_unless_exists": str(gates / "timeout-gate")}, until="failed")
    send(api, "bulk-other", {"fail_unless_exists": str(gates / "other-gate")}, until="failed")
    (gates / "timeout-gate").touch()
    page = admin.new_page()
    page.goto("/ui/dead-letters")
    page.get_by_label("Error contains").fill("timeout-gate")
    page.get_by_label("Since").fill("1h")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("3 failed events match.")).to_be_visible()
    page.get_by_label("Select every event on this page").check()
    expect(page.locator("tbody input[name=id]:checked")).to_have_count(3)
    page.get_by_label("all 3 matching").check()
    page.get_by_role("button", name="Replay…").click()
    expect(page.get_by_role("heading")).to_have_text("Replay 3 failed events?")
    page.get_by_role("button", name="Yes, replay 3").click()
    expect(page.get_by_role("status")).to_have_text("Replayed 3 events.")
    wait_until(lambda: all(status_of(api, f"bulk-{n}") == "processed" for n in range(3)), 30, "bulk-* processed")
    assert status_of(api, "bulk-other") == "failed"
    page.close()


def test_the_filters_select_events_and_a_bad_one_is_named(admin: BrowserContext, api: httpx.Client) -> None:
    send(api, "filter-a-1", {}, until="processed")
    send(api, "filter-a-2", {"permanent": True}, until="failed")
    send(api, "filter-b-1", {}, until="processed")
    page = admin.new_page()
    page.goto("/ui/events")
    page.get_by_label("Id prefix").fill("filter-a")
    page.get_by_label("processed", exact=True).check()
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("filter-a-1")
    assert "id_prefix=filter-a" in page.url
    page.get_by_label("Since").fill("yesterday")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("since must be")
    page.close()


def test_a_read_key_sees_no_buttons_and_a_forced_action_is_refused(
    browser: Browser, server: ServerProcess, api: httpx.Client, gates: Path
) -> None:
    send(api, "read-only", {"fail_unless_exists": str(gates / "read-only")}, until="failed")
    (gates / "read-only").touch()
    context = logged_in(browser, server, READER)
    page = context.new_page()
    page.goto("/ui/event?id=read-only")
    expect(page.locator("pre.payload")).to_be_visible()
    expect(page.get_by_role("button", name="Replay")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    page.goto("/ui/dead-letters")
    expect(page.get_by_role("link", name="read-only")).to_be_visible()
    expect(page.locator("input[name=id]")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    forced = context.request.post(
        "/ui/event/replay", form={"csrf": csrf, "id": "read-only"}, headers={"origin": server.url}
    )
    assert forced.status == 403
    assert status_of(api, "read-only") == "failed"
    context.close()


def test_a_cross_site_post_is_refused(admin: BrowserContext, api: httpx.Client, gates: Path) -> None:
    send(api, "cross-site", {"fail_unless_exists": str(gates / "cross-site")}, until="failed")
    (gates / "cross-site").touch()
    page = admin.new_page()
    target = api.base_url.join("/ui/event/replay")
    evil = (
        f'<form method="post" action="{target}"><input name="id" value="cross-site">'
        '<input name="csrf" value="guess"><button>Win a prize</button></form>'
    )
    page.route("http://attacker.test/", lambda route: route.fulfill(body=evil, content_type="text/html"))
    page.goto("http://attacker.test/")
    with page.expect_response(str(target)) as answer:
        page.get_by_role("button", name="Win a prize").click()
    assert answer.value.status in (401, 403)
    assert status_of(api, "cross-site") == "failed"
    page.close()


def test_with_javascript_off_the_events_are_still_listed(
    browser: Browser, server: ServerProcess, api: httpx.Client
) -> None:
    send(api, "no-script", {}, until="processed")
    context = logged_in(browser, server, ADMIN, javascript=False)
    page = context.new_page()
    page.goto("/ui/events?id_prefix=no-script")
    expect(page.get_by_role("link", name="no-script")).to_be_visible()
    page.get_by_role("link", name="no-script").click()
    expect(page.locator("ol.timeline")).to_contain_text("processed")
    context.close()


def test_no_key_appears_in_the_server_log(server: ServerProcess) -> None:
    """Run last in the module: every login and action above has been logged by now."""
    assert "console login with key" in server.log
    assert ADMIN not in server.log
    assert READER not in server.log
