"""What every console page shares (the service, the templates, the sessions) and the checks before a page
or an action runs: a page needs a session that may read; an action also needs the ``admin`` scope, a
same-origin request and the session's CSRF token, whatever the page showed."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from eventctl.console.forms import FormTooLarge, first, query_string, read_form
from eventctl.console.login_limit import FailedLogins
from eventctl.console.session import COOKIE, Sessions, Viewer, cookie_header, csrf_matches, same_origin
from eventctl.domain import EventFilter, Status
from eventctl.service import Service

# Counting processed events reads the whole history (the queue statistics read indexes of the queues only),
# so however many pages poll the overview, it is counted at most this often.
PROCESSED_COUNT_SECONDS = 30.0

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Console:
    """What the pages share: the service, the templates, the sessions and the login limiter."""

    def __init__(self, service: Service, templates: Path) -> None:
        self.service = service
        self.sessions = Sessions(service.settings.keys)
        self.failed_logins = FailedLogins()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates), autoescape=True, undefined=jinja2.StrictUndefined
        )
        self.templates.filters["urlquote"] = lambda text: quote(str(text), safe="")
        self._processed: tuple[float, int] | None = None  # (monotonic time counted, count)

    async def processed_count(self) -> int:
        """How many events are processed, counted at most every ``PROCESSED_COUNT_SECONDS``."""
        now = time.monotonic()
        if self._processed is None or now - self._processed[0] >= PROCESSED_COUNT_SECONDS:
            processed = EventFilter(statuses=frozenset({Status.PROCESSED}))
            self._processed = (now, await self.service.store.count_matching(processed))
        return self._processed[1]

    def viewer(self, request: Request) -> tuple[Viewer | None, str | None]:
        """The session's viewer and, for a new open-console session, the ``Set-Cookie`` to send."""
        viewer = self.sessions.read(request.cookies.get(COOKIE))
        if viewer is None and self.sessions.open:
            viewer, value = self.sessions.issue(None)
            return viewer, cookie_header(value, secure=is_secure(request), lifetime=self.sessions.lifetime)
        return viewer, None

    def render(self, name: str, viewer: Viewer | None, status: int = 200, **context: Any) -> HTMLResponse:
        template = self.templates.get_template(name)
        html = template.render(viewer=viewer, open_console=self.sessions.open, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def is_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


Page = Callable[[Request, Console, Viewer], Awaitable[Response]]


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page for viewers who may read; anyone else is sent to the login form."""

    async def endpoint(request: Request) -> Response:
        console = console_of(request)
        viewer, set_cookie = console.viewer(request)
        if viewer is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?{query_string({}, next=target)}", status_code=303)
        if not viewer.can_read:
            return console.render("message.html", viewer, 403, title="Forbidden",
                                  message="This key lacks the events:read scope.")  # fmt: skip
        response = await handler(request, console, viewer)
        if set_cookie is not None:
            response.headers.append("set-cookie", set_cookie)
        return response

    return endpoint


Action = Callable[[Request, Console, Viewer, dict[str, list[str]]], Awaitable[Response]]


def action(handler: Action) -> Callable[[Request], Awaitable[Response]]:
    """A POST that changes events: same origin, a valid session with the admin scope, the CSRF token."""

    async def endpoint(request: Request) -> Response:
        console = console_of(request)
        viewer = console.sessions.read(request.cookies.get(COOKIE))
        if not same_origin(request.headers, request.url.scheme):
            return console.render("message.html", viewer, 403, title="Refused",
                                  message="Cross-site requests are refused.")  # fmt: skip
        if viewer is None:
            return console.render("message.html", None, 401, title="Not logged in",
                                  message="Your session has ended; log in again.")  # fmt: skip
        if not viewer.can_act:
            return console.render("message.html", viewer, 403, title="Forbidden",
                                  message="This key lacks the admin scope: it cannot replay or delete.")  # fmt: skip
        try:
            form = await read_form(request)
        except FormTooLarge as exc:
            return console.render("message.html", viewer, 413, title="Too large", message=str(exc))
        if not csrf_matches(viewer, first(form, "csrf")):
            return console.render("message.html", viewer, 403, title="Refused",
                                  message="The form's token is missing or stale; reload the page.")  # fmt: skip
        return await handler(request, console, viewer, form)

    return endpoint
