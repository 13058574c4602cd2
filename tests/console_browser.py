"""Helpers for the console's browser tests and screenshots: Debian's chromium driven by playwright, and a
server with keys and events in every state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.conftest import ServerFactory, ServerProcess, SettingValue, wait_until

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by .ci/install-tools (playwright cannot download one offline)
READER = "console-reader-0123456789abcdef"
ADMIN = "console-admin-0123456789abcdefgh"
API_KEYS = f"{READER}:events:read,{ADMIN}:admin"


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def start_console_server(factory: ServerFactory, **settings: SettingValue) -> ServerProcess:
    """A server with keys, the scripted handler, one attempt per event (failures are final at once)."""
    defaults: dict[str, SettingValue] = {
        "API_KEYS": API_KEYS,
        "ENV": "prod",
        "HANDLER": "tests.scripted_handlers:scripted",
        "MAX_ATTEMPTS": 1,
    }
    return factory.start_with({**defaults, **settings})


def admin_client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)


def status_of(client: httpx.Client, event_id: str) -> str | None:
    response = client.get(f"/events/{event_id}")
    return str(response.json()["status"]) if response.status_code == 200 else None


def send(client: httpx.Client, event_id: str, payload: object, *, until: str | None = None) -> None:
    """Send an event and, with ``until``, wait for it to reach that status."""
    assert client.post("/events", json={"event_id": event_id, "payload": payload}).status_code == 202
    if until is not None:
        wait_until(lambda: status_of(client, event_id) == until, 30, f"{event_id} to be {until}")


def logged_in(browser: Browser, server: ServerProcess, key: str, *, javascript: bool = True) -> BrowserContext:
    """A fresh browser context (its own cookies) that has logged in to the console with ``key``."""
    context = browser.new_context(
        base_url=server.url, java_script_enabled=javascript, viewport={"width": 1280, "height": 800}
    )
    page = context.new_page()
    page.goto("/ui")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui")
    page.close()
    return context
