"""Screenshots of every console page for the README, taken with the browser the tests use:
``python -m tests.console_screenshots docs/console`` starts a server with events in every state, logs in
with the admin key, and saves one PNG per page (1280 by 800, light; the dead letters also dark at phone width)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import ServerFactory, wait_until
from tests.console_browser import ADMIN, admin_client, chromium, logged_in, send, start_console_server, status_of


def main(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        factory = ServerFactory(Path(scratch))
        try:
            server = start_console_server(factory)
            with admin_client(server) as api:
                for number in range(40):
                    payload: dict[str, object] = {"order": number, "customer": f"c-{number % 7}", "sleep_s": 0.02}
                    if number % 9 == 4:
                        payload = {"order": number, "fail_unless_exists": f"/nonexistent/timeout-{number}"}
                    send(api, f"order-{number:04d}", payload)
                    time.sleep(0.15)  # a few seconds of traffic for the chart
                wait_until(lambda: status_of(api, "order-0039") in ("processed", "failed"), 30, "the last event")
                time.sleep(2)  # one more sample of the rates
            with chromium() as browser:
                context = logged_in(browser, server, ADMIN)
                page = context.new_page()
                shots = {
                    "overview": "/ui",
                    "events": "/ui/events",
                    "event": "/ui/event?id=order-0004",
                    "dead-letters": "/ui/dead-letters?error=timeout",
                }
                for name, path in shots.items():
                    page.goto(path)
                    page.screenshot(path=str(target / f"{name}.png"))
                page.emulate_media(color_scheme="dark")
                page.set_viewport_size({"width": 390, "height": 844})
                page.goto("/ui/dead-letters")
                page.screenshot(path=str(target / "dead-letters-phone-dark.png"))
                context.close()
        finally:
            factory.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
