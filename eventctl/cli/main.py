"""``eventctl``: the client commands, and ``serve``. Commands parse, call the client library, render.

Exit codes are decided in ``eventctl.cli.common``, in one place.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated

import typer

from eventctl import __version__, auth
from eventctl.cli import render
from eventctl.cli.bulk import (
    DryRunOption,
    ErrorOption,
    IdPrefixOption,
    OrderingKeyOption,
    SinceOption,
    StatusOption,
    UntilOption,
    YesOption,
    bulk_action,
    chosen_filters,
    delete,
    purge,
)
from eventctl.cli.common import (
    EXIT_REFUSED,
    ApiKeyOption,
    Command,
    Group,
    JsonOption,
    TimeoutOption,
    UrlOption,
    answers,
    client,
    flag,
    usage_error,
)
from eventctl.cli.send import send
from eventctl.cli.serve import serve
from eventctl.client.defaults import DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL
from eventctl.settings import Settings

app = typer.Typer(
    name="eventctl",
    help="Durable event ingestion: run the service (serve) or talk to one.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)
app.command(
    "serve",
    cls=Command,
    help="Run the HTTP service and its background worker. Every option is also an environment variable.",
)(serve)
app.command("send", cls=Command)(send)


def _show_version(value: bool) -> None:
    if value:
        render.out.print(f"eventctl {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, flag("--version", help="Print the version and exit.", callback=_show_version, is_eager=True)
    ] = False,
) -> None:
    """Durable event ingestion: run the service (serve) or talk to one."""


@app.command(cls=Command)
def status(
    event_id: Annotated[str, typer.Argument(help="The event's id.")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Show one event: status, attempts, times, last error and payload, then its attempt timeline."""
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        event = service.get(event_id)
        attempts = None if as_json else service.attempts(event_id)
    if as_json:
        render.json_line(event.raw)
    else:
        render.event(event)
        assert attempts is not None
        render.attempts(attempts)


@app.command(cls=Command)
def events(
    status_filter: StatusOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    error: ErrorOption = None,
    ordering_key: OrderingKeyOption = None,
    id_prefix: IdPrefixOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="How many, newest first.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a previous page.", show_default=False)
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """List the events the filters select, newest first, one page (--limit) at a time."""
    filters = chosen_filters(status_filter, since, until, error, ordering_key, id_prefix)
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        page = service.events_page(cursor=cursor, limit=limit, **filters)
    if as_json:
        render.json_line(page.raw)
    else:
        render.event_list(page)


@app.command(cls=Command)
def replay(
    event_id: Annotated[str | None, typer.Argument(help="The failed event to replay.", show_default=False)] = None,
    all_failed: Annotated[bool, flag("--all-failed", help="Replay every failed event, without asking.")] = False,
    status_filter: StatusOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    error: ErrorOption = None,
    ordering_key: OrderingKeyOption = None,
    id_prefix: IdPrefixOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: Annotated[
        bool,
        flag(
            "--json",
            help="One event: the service's answer. --all-failed: {\"replayed\": N}. Filters: the bulk action's"
            " answer. A problem document on error.",
        ),
    ] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Put failed events back to accepted, attempts reset: one (EVENT_ID), every one (--all-failed), or those
    the filters select (asks first, showing how many, unless --yes). Needs an admin key."""
    filters = chosen_filters(status_filter, since, until, error, ordering_key, id_prefix)
    if sum((event_id is not None, all_failed, bool(filters))) != 1:
        raise usage_error("give one of: an EVENT_ID, --all-failed, or filters (--status, --since, --error...)")
    if (dry_run or yes) and not filters:
        raise usage_error("--dry-run and --yes go with filters")
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        if filters:
            bulk_action(service, "replay", filters, dry_run=dry_run, yes=yes, as_json=as_json)
            return
        if event_id is not None:
            service.replay(event_id)
            replayed = None
        else:
            replayed = service.bulk("replay").changed
    if replayed is None:
        assert event_id is not None
        if as_json:
            render.json_line({"event_id": event_id, "status": "accepted"})
        else:
            render.replayed(event_id)
    elif as_json:
        render.json_line({"replayed": replayed})
    else:
        render.counts("replay --all-failed", {"replayed": replayed})


app.command("purge", cls=Command)(purge)
app.command("delete", cls=Command)(delete)


@app.command(cls=Command)
def health(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Is the service up? Shows its uptime."""
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        result = service.health()
    if as_json:
        render.json_line(result.raw)
    else:
        render.health(result)


@app.command(cls=Command)
def ready(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Is the service ready for traffic? Exit 1 when it is not (starting, draining, store down)."""
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        result = service.ready()
    if as_json:
        render.json_line(result.raw)
    else:
        render.readiness(result)
    if not result.ready:
        raise typer.Exit(1)


@app.command(cls=Command)
def top(
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between readings.")] = 1.0,
    once: Annotated[bool, flag("--once", help="Print one frame (two readings an interval apart) and exit.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: Annotated[
        bool,
        flag(
            "--json",
            help="Print each frame as one JSON line instead of the live table; without --once, a line every"
            " interval until Ctrl-C.",
        ),
    ] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """A live view: accept and process rates, queue depth by status, oldest waiting age, error rates.
    Ctrl-C ends it."""
    from rich.live import Live

    from eventctl.cli import top as view

    with client(url, api_key, timeout, as_json) as service, answers(as_json), contextlib.suppress(KeyboardInterrupt):
        before = view.read(service)
        if once:
            time.sleep(interval)
            frame = view.frame(before, view.read(service))
            if as_json:
                render.json_line(frame)
            else:
                render.out.print(view.table(frame, url))
            return
        if as_json:
            while True:
                time.sleep(interval)
                after = view.read(service)
                render.json_line(view.frame(before, after))
                before = after
        with Live(view.table(view.frame(before, before), url), console=render.out, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                after = view.read(service)
                live.update(view.table(view.frame(before, after), url), refresh=True)
                before = after


@app.command(cls=Command)
def backup(
    destination: Annotated[Path, typer.Argument(help="The file to write the copy to.", show_default=False)],
    database_url: Annotated[
        str, typer.Option("--database-url", envvar="DATABASE_URL", help="The SQLite store to copy (sqlite:///...).")
    ] = Settings().database_url,
    force: Annotated[bool, flag("--force", help="Replace DESTINATION if it exists.")] = False,
) -> None:
    """Copy a SQLite store consistently, even while eventctl serve runs on it (SQLite's online backup).
    For PostgreSQL, use pg_dump."""
    from eventctl.cli.backup import BackupError, BackupRefused, back_up, sqlite_path

    try:
        copied = back_up(sqlite_path(database_url), destination, overwrite=force)
    except BackupRefused as exc:
        raise usage_error(str(exc)) from None
    except BackupError as exc:
        render.error_line("BackupError", str(exc))
        raise typer.Exit(EXIT_REFUSED) from None
    render.out.print(
        f"backed up {copied.source.resolve()} to {copied.destination}"
        f" ({copied.events:,} events, {copied.size_bytes:,} bytes)",
        markup=False,
    )


keys_app = typer.Typer(help="API keys for the service's API_KEYS setting.", no_args_is_help=True, cls=Group)
app.add_typer(keys_app, name="keys")


@keys_app.command("new", cls=Command)
def new_key(
    scopes: Annotated[
        str, typer.Option("--scopes", help="Scopes joined with +: events:write, events:read, admin.")
    ] = "events:write+events:read",
    as_json: Annotated[
        bool, flag("--json", help='Print {"key", "scopes", "entry"} as one JSON object instead of the entry.')
    ] = False,
) -> None:
    """Make a strong random key and print its API_KEYS entry (key:scopes) for your secret store."""
    key = auth.new_key()
    entry = f"{key}:{scopes}"
    try:
        auth.parse_api_keys(entry)
    except ValueError as exc:
        raise usage_error(f"--scopes: {exc}") from None
    if as_json:
        render.json_line({"key": key, "scopes": scopes.split("+"), "entry": entry})
    else:
        render.out.print(entry, markup=False)


def main() -> None:
    app()
