"""The console's pages and actions (see ``context`` for the checks each of them passes first)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from eventctl.api.schemas import CURSOR_PATTERN
from eventctl.auth import identify
from eventctl.bulk import run_bulk
from eventctl.console.chart import chart
from eventctl.console.context import Console, action, client_address, console_of, is_secure, page
from eventctl.console.forms import FormTooLarge, first, given_filters, query_lists, query_string, read_form
from eventctl.console.session import COOKIE, Viewer, clearing_cookie_header, cookie_header, csrf_matches, same_origin
from eventctl.domain import BulkAction, Status, is_possible_event_id
from eventctl.filters import FilterError, parse_query
from eventctl.rates import quantile

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50

# -- login ------------------------------------------------------------------------------------------------


def _next_page(value: str | None) -> str:
    """Where to go after logging in: a console page, never another site."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui"


@router.get("/ui/login")
async def login_form(request: Request) -> Response:
    console = console_of(request)
    if console.sessions.open:
        return RedirectResponse("/ui", status_code=303)
    return console.render("login.html", None, next=_next_page(request.query_params.get("next")), error=None)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    console = console_of(request)
    if console.sessions.open:
        return RedirectResponse("/ui", status_code=303)
    if not same_origin(request.headers, request.url.scheme):
        return console.render("message.html", None, 403, title="Refused", message="Cross-site requests are refused.")
    try:
        form = await read_form(request)
    except FormTooLarge as exc:
        return console.render("message.html", None, 413, title="Too large", message=str(exc))
    target = _next_page(first(form, "next"))
    client = client_address(request)
    wait = console.failed_logins.retry_after(client)
    if wait:
        response = console.render("login.html", None, 429, next=target,
                                  error=f"Too many failed logins; try again in {wait} s.")  # fmt: skip
        response.headers["retry-after"] = str(wait)
        return response
    key = identify(console.sessions.keys, (first(form, "key") or "").strip())
    if key is None:
        console.failed_logins.failed(client)
        log.warning("console login refused for %s: unknown key", client)
        return console.render("login.html", None, 401, next=target, error="That key is not valid.")
    _, value = console.sessions.issue(key)
    log.info("console login with key %s from %s", key.fingerprint, client)
    redirect = RedirectResponse(target, status_code=303)
    redirect.headers.append("set-cookie", cookie_header(value, secure=is_secure(request),
                                                        lifetime=console.sessions.lifetime))  # fmt: skip
    return redirect


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    console = console_of(request)
    viewer = console.sessions.read(request.cookies.get(COOKIE))
    if not same_origin(request.headers, request.url.scheme):
        return console.render("message.html", viewer, 403, title="Refused", message="Cross-site requests are refused.")
    form = await read_form(request)
    if viewer is not None and not csrf_matches(viewer, first(form, "csrf")):
        return console.render("message.html", viewer, 403, title="Refused", message="The form's token is stale.")
    response = RedirectResponse("/ui/login" if not console.sessions.open else "/ui", status_code=303)
    response.headers.append("set-cookie", clearing_cookie_header(secure=is_secure(request)))
    return response


# -- overview ---------------------------------------------------------------------------------------------


async def _overview(console: Console) -> dict[str, Any]:
    service = console.service
    stats = await service.store.queue_stats()
    by_status = {status.value: count for status, count in stats.depths.items()}
    by_status["processed"] = await console.processed_count()
    histogram = service.metrics.processing_duration
    counts = histogram.combined()
    p50, p95 = (quantile(histogram.bounds, counts, q) for q in (0.5, 0.95))
    return {
        "chart": chart(list(service.rates.samples)),
        "by_status": [(status.value, by_status.get(status.value, 0)) for status in Status],
        "oldest_waiting": stats.oldest_waiting_age,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p95_ms": None if p95 is None else p95 * 1000,
        "attempts_measured": sum(counts),
    }


@router.get("/ui")
@page
async def overview(request: Request, console: Console, viewer: Viewer) -> Response:
    return console.render("overview.html", viewer, nav="overview", **await _overview(console))


@router.get("/ui/overview/live")
@page
async def overview_live(request: Request, console: Console, viewer: Viewer) -> Response:
    """The overview's live part alone, which the page's script swaps in every few seconds."""
    return console.render("overview_live.html", viewer, **await _overview(console))


# -- events -----------------------------------------------------------------------------------------------


async def _listing(request: Request, console: Console, forced: frozenset[Status] | None) -> dict[str, Any]:
    """A page of events for the query's filters (``forced`` statuses replace the query's)."""
    query = query_lists(request)
    filters = given_filters(query)
    if forced is not None:
        filters["status"] = sorted(status.value for status in forced)
    errors: list[str] = []
    items: list[Any] = []
    next_before = None
    matching: int | None = None
    before_text = first(query, "before")
    before = int(before_text) if before_text and re.fullmatch(CURSOR_PATTERN, before_text) else None
    try:
        filter = parse_query(filters)
    except FilterError as exc:
        errors = [f"{problem.parameter}: {problem.detail}" for problem in exc.problems]
    else:
        store = console.service.store
        result = await store.list_events(filter, PAGE_SIZE, before)
        items, next_before = result.items, result.next_before
        if forced is not None:
            matching = await store.count_matching(filter)
    return {
        "filters": filters,
        "errors": errors,
        "events": items,
        "older": None if next_before is None else query_string(filters, before=next_before),
        "first_page": None if before is None else query_string(filters),
        "statuses": [status.value for status in Status],
        "matching": matching,
        "done": first(query, "done"),
        "changed": first(query, "n"),
    }


@router.get("/ui/events")
@page
async def events(request: Request, console: Console, viewer: Viewer) -> Response:
    listing = await _listing(request, console, None)
    status = 400 if listing["errors"] else 200
    return console.render("events.html", viewer, status, nav="events", **listing)


@router.get("/ui/event")
@page
async def event(request: Request, console: Console, viewer: Viewer) -> Response:
    event_id = request.query_params.get("id", "")
    store = console.service.store
    found = await store.get(event_id) if is_possible_event_id(event_id) else None
    if found is None:
        return console.render("message.html", viewer, 404, title="No such event",
                              message=f"No event has id {event_id!r}.")  # fmt: skip
    attempts = await store.attempts(event_id) or []
    try:
        payload = json.dumps(json.loads(found.payload), indent=2, ensure_ascii=False)
    except ValueError:
        payload = found.payload.decode("utf-8", errors="replace")
    return console.render("event.html", viewer, nav="events", event=found, payload=payload, attempts=attempts,
                          done=request.query_params.get("done"))  # fmt: skip


@router.post("/ui/event/replay")
@action
async def replay_one(request: Request, console: Console, viewer: Viewer, form: dict[str, list[str]]) -> Response:
    event_id = first(form, "id") or ""
    before = await console.service.store.replay(event_id) if is_possible_event_id(event_id) else None
    if before is None:
        return console.render("message.html", viewer, 404, title="No such event", message="No event has that id.")
    log.info("console replay of %r: %s key=%s", event_id, before, viewer.fingerprint or "none")
    done = "replayed" if before is Status.FAILED else f"not-failed-{before.value}"
    return RedirectResponse(f"/ui/event?{query_string({}, id=event_id, done=done)}", status_code=303)


@router.post("/ui/event/delete")
@action
async def delete_one(request: Request, console: Console, viewer: Viewer, form: dict[str, list[str]]) -> Response:
    event_id = first(form, "id") or ""
    before = await console.service.store.delete(event_id) if is_possible_event_id(event_id) else None
    if before is None:
        return console.render("message.html", viewer, 404, title="No such event", message="No event has that id.")
    if before is Status.PROCESSING:
        return RedirectResponse(f"/ui/event?{query_string({}, id=event_id, done='processing')}", status_code=303)
    log.info("console delete of %r (was %s) key=%s", event_id, before, viewer.fingerprint or "none")
    return RedirectResponse("/ui/events?done=deleted&n=1", status_code=303)


# -- dead letters -----------------------------------------------------------------------------------------

_FAILED = frozenset({Status.FAILED})


@router.get("/ui/dead-letters")
@page
async def dead_letters(request: Request, console: Console, viewer: Viewer) -> Response:
    listing = await _listing(request, console, _FAILED)
    status = 400 if listing["errors"] else 200
    return console.render("dead_letters.html", viewer, status, nav="dead", **listing)


@router.post("/ui/dead-letters")
@action
async def dead_letters_action(
    request: Request, console: Console, viewer: Viewer, form: dict[str, list[str]]
) -> Response:
    """Replay or delete the selected failed events, or all that match; the first POST asks to confirm with
    the count, the second (``confirm=yes``) acts."""
    try:
        bulk = BulkAction(first(form, "action") or "")
    except ValueError:
        return console.render("message.html", viewer, 400, title="Bad request", message="Choose replay or delete.")
    filters = given_filters(form)
    filters["status"] = [Status.FAILED.value]
    try:
        filter = parse_query(filters)
    except FilterError as exc:
        return console.render("message.html", viewer, 400, title="Bad filter", message=str(exc))
    everything = first(form, "scope") == "matching"
    ids = [] if everything else [i for i in dict.fromkeys(form.get("id", [])) if is_possible_event_id(i)]
    store = console.service.store
    if first(form, "confirm") != "yes":
        if everything:
            count = (await run_bulk(store, bulk, filter, dry_run=True, key_fingerprint=viewer.fingerprint)).matched
        else:
            count = len(ids)
        return console.render("confirm.html", viewer, nav="dead", action=bulk.value, count=count, ids=ids,
                              everything=everything, filters=filters)  # fmt: skip
    if everything:
        changed = (await run_bulk(store, bulk, filter, dry_run=False, key_fingerprint=viewer.fingerprint)).changed
    else:
        changed = 0
        for event_id in ids:
            found = await store.get(event_id)
            if found is None or found.status is not Status.FAILED:
                continue  # what the confirmation counted may have moved on meanwhile
            step = store.replay if bulk is BulkAction.REPLAY else store.delete
            changed += (await step(event_id)) is Status.FAILED
        log.info("console %s of %d selected failed events: changed=%d key=%s", bulk.value, len(ids), changed,
                 viewer.fingerprint or "none")  # fmt: skip
    back = {name: values for name, values in filters.items() if name != "status"}
    return RedirectResponse(f"/ui/dead-letters?{query_string(back, done=bulk.value, n=changed)}", status_code=303)
