"""``/docs`` works air-gapped: the page references no other host, and the server itself serves every asset
the page loads (Swagger UI from the swagger-ui-bundle package), with or without API keys."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from eventctl.auth import parse_api_keys
from tests.inprocess import RunningApp, running_app

pytestmark = pytest.mark.anyio


class References(HTMLParser):
    """Every URL an HTML page makes the browser load: ``src`` and ``href`` attributes, and the URLs its
    scripts name."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls.extend(value for name, value in attrs if name in ("src", "href") and value)

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls.extend(re.findall(r"""url:\s*['"]([^'"]+)['"]""", data))
            self.urls.extend(re.findall(r"""['"]((?:[a-z][a-z0-9+.-]*:)?//[^'"]+)['"]""", data))


async def page_references(app: RunningApp) -> list[str]:
    page = await app.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    parser = References()
    parser.feed(page.text)
    return parser.urls


async def test_the_docs_page_references_no_other_host() -> None:
    async with running_app() as app:
        urls = await page_references(app)
        page = (await app.client.get("/docs")).text
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/openapi.json"} <= set(urls)
    assert [url for url in urls if not url.startswith("/") or url.startswith("//")] == []
    assert "://" not in page.replace("window.location.origin", "")
    assert '"validatorUrl": null' in page  # Swagger UI's online validator would call another host


async def test_the_server_serves_every_asset_the_docs_page_loads() -> None:
    async with running_app() as app:
        for url in await page_references(app):
            asset = await app.client.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
        redirect = await app.client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200


async def test_the_docs_and_their_assets_need_no_api_key() -> None:
    async with running_app(api_keys=parse_api_keys("k" * 20 + ":admin")) as app:
        for url in await page_references(app):
            assert (await app.client.get(url)).status_code == 200, url
        assert (await app.client.get("/events/x")).status_code == 401
