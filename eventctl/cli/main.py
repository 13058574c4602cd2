"""``eventctl``: the client commands, and ``serve``. Commands parse, call library code, render.

Exit codes, decided here and only here: 0 success; 1 the service said no; 2 usage error; 3 the service
could not be reached or timed out.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from eventctl import auth
from eventctl.cli import batch, render
from eventctl.cli.serve import serve
from eventctl.client import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_URL,
    EventctlClient,
    Reply,
    ServiceError,
    ServiceUnreachable,
    WaitTimedOut,
)

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

REPLAY_PAGE_SIZE = 500

app = typer.Typer(
    name="eventctl",
    help="Durable event ingestion: run the service (serve) or talk to one.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(
    "serve",
    help="Run the HTTP service and its background worker. Every option is also an environment variable.",
)(serve)

UrlOption = Annotated[str, typer.Option("--url", envvar="EVENTCTL_URL", help="The service's base URL.")]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="EVENTCTL_API_KEY", help="Sent as a Bearer token.", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the service's JSON as it came.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.001, help="Seconds to wait for an answer.")]


@contextmanager
def _answers(as_json: bool) -> Iterator[None]:
    """Turn the client's errors into one line on stderr (with --json: the service's body on stdout, as it
    came) and the right exit code."""
    try:
        yield
    except ServiceUnreachable as exc:
        render.error_line("ServiceUnreachable", str(exc))
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except ServiceError as exc:
        if as_json:
            render.raw(exc.reply)
        else:
            render.error_line("ServiceError", str(exc))
        raise typer.Exit(EXIT_REFUSED) from None
    except WaitTimedOut as exc:
        render.error_line("WaitTimedOut", str(exc))
        raise typer.Exit(EXIT_REFUSED) from None


def _run(call: Callable[[], Reply], as_json: bool, show: Callable[[Reply], None]) -> None:
    """Make one call and show its answer."""
    with _answers(as_json):
        reply = call()
    if as_json:
        render.raw(reply)
    else:
        show(reply)


def _usage_error(message: str) -> typer.Exit:
    render.error_line("UsageError", message)
    return typer.Exit(EXIT_USAGE)


def _read_payload(text: str) -> Any:
    """The payload from inline JSON, ``@file.json`` or ``-`` (standard input)."""
    if text == "-":
        source, content = "standard input", sys.stdin.read()
    elif text.startswith("@"):
        source = text[1:]
        try:
            content = Path(source).read_text()
        except OSError as exc:
            raise _usage_error(f"cannot read --payload file {source!r}: {exc.strerror}") from None
    else:
        source, content = "--payload", text
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise _usage_error(f"{source} is not valid JSON: {exc}") from None


@app.command()
def send(
    event_id: Annotated[
        str | None, typer.Argument(help="The event's id (its idempotency key).", show_default=False)
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", help="JSON inline, @file.json, or - for standard input.", show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Send every line of a JSON Lines file (one event body a line).", show_default=False
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow each event until it is processed or failed.")] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", min=0, help="Seconds --wait follows an event.")
    ] = 300,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Send one event, or a file of them. Exit 1 if any is refused (409, 400) or, with --wait, fails."""
    if (event_id is None) == (file is None):
        raise _usage_error("give either an EVENT_ID or --file")
    with EventctlClient(url, api_key=api_key, timeout=timeout) as client:
        if file is not None:
            if payload is not None:
                raise _usage_error("--payload goes with EVENT_ID, not with --file")
            _send_file(client, file, wait_timeout if wait else None, as_json)
            return
        assert event_id is not None
        value = None if payload is None else _read_payload(payload)
        if not wait:
            _run(
                lambda: client.send(event_id, value),
                as_json,
                lambda reply: render.accepted(reply.json(), reply.headers.get("location")),
            )
            return
        with _answers(as_json):
            client.send(event_id, value)
            final = client.wait_until_final(event_id, timeout=wait_timeout)
        if as_json:
            render.raw(final)
        else:
            render.event(final.json())
        if final.json()["status"] == "failed":
            raise typer.Exit(EXIT_REFUSED)


def _send_file(client: EventctlClient, path: Path, wait_timeout: float | None, as_json: bool) -> None:
    try:
        lines, malformed = batch.read_lines(path)
    except OSError as exc:
        raise _usage_error(f"cannot read --file {str(path)!r}: {exc.strerror}") from None
    results = list(malformed)
    for result in malformed:
        render.error_line("MalformedLine", f"line {result.line}: {result.detail}")
    with render.progress(as_json) as progress:
        task = progress.add_task("sending" if wait_timeout is None else "sending and waiting", total=len(lines))
        for result in batch.send_all(client, lines, wait_timeout=wait_timeout):
            results.append(result)
            progress.advance(task)
            if result.outcome in batch.PROBLEMS and not as_json:
                render.error_line(result.outcome.title().replace(" ", ""), f"line {result.line}: {result.detail}")
    results.sort(key=lambda result: result.line)
    if as_json:
        for result in results:
            render.json_line(result.as_json())
    else:
        render.counts(f"{path.name}: {len(results)} lines", batch.tally(results))
    outcomes = {result.outcome for result in results}
    if batch.Outcome.UNREACHABLE in outcomes:
        raise typer.Exit(EXIT_UNREACHABLE)
    if outcomes & batch.PROBLEMS:
        raise typer.Exit(EXIT_REFUSED)


@app.command()
def status(
    event_id: Annotated[str, typer.Argument(help="The event's id.")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Show one event: status, attempts, times, last error and payload."""
    with EventctlClient(url, api_key=api_key, timeout=timeout) as client:
        _run(lambda: client.status(event_id), as_json, lambda reply: render.event(reply.json()))


@app.command()
def events(
    status_filter: Annotated[
        str | None,
        typer.Option(
            "--status", "-s", help="Only events with this status (accepted, processing, retrying, processed, failed)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="How many, newest first.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a previous page.", show_default=False)
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """List events, newest first."""
    with EventctlClient(url, api_key=api_key, timeout=timeout) as client:
        _run(lambda: client.list_events(status_filter, limit, cursor), as_json, lambda r: render.event_list(r.json()))


@app.command()
def replay(
    event_id: Annotated[str | None, typer.Argument(help="The failed event to replay.", show_default=False)] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Replay every failed event.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Put a failed event (or, with --all-failed, every one) back to accepted, attempts reset."""
    if (event_id is None) == (not all_failed):
        raise _usage_error("give either an EVENT_ID or --all-failed")
    with EventctlClient(url, api_key=api_key, timeout=timeout) as client:
        if event_id is not None:
            _run(lambda: client.replay(event_id), as_json, lambda reply: render.accepted(reply.json(), None))
            return
        with _answers(as_json):
            replayed = _replay_all_failed(client)
        if as_json:
            render.json_line({"replayed": replayed})
        else:
            render.counts("replay --all-failed", {"replayed": replayed})


def _replay_all_failed(client: EventctlClient) -> int:
    """Walk the failed events page by page, replaying each; an event that failed again meanwhile is not
    revisited (pages go backwards from the newest)."""
    replayed, cursor = 0, None
    while True:
        page = client.list_events("failed", REPLAY_PAGE_SIZE, cursor).json()
        for item in page["items"]:
            try:
                client.replay(item["event_id"])
                replayed += 1
            except ServiceError as exc:
                if exc.reply.status_code != 409:  # 409: no longer failed (replayed by someone else)
                    raise
        cursor = page["next_cursor"]
        if cursor is None:
            return replayed


@app.command()
def health(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Is the service up? Shows its uptime."""
    with EventctlClient(url, api_key=api_key, timeout=timeout) as client:
        _run(client.health, as_json, lambda reply: render.health(reply.json()))


@app.command()
def ready(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Is the service ready for traffic? Exit 1 when it is not (starting, draining, store down)."""
    with EventctlClient(url, api_key=api_key, timeout=timeout) as client:
        _run(client.ready, as_json, lambda reply: render.readiness(reply.json()))


@app.command()
def top(
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between readings.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame (two readings apart) and exit.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """A live view: accept and process rates, queue depth by status, oldest waiting age, error rates."""
    from rich.live import Live

    from eventctl.cli import top as view

    with EventctlClient(url, api_key=api_key, timeout=timeout) as client, _answers(as_json):
        before = view.read(client)
        if once or as_json:
            time.sleep(interval)
            frame = view.frame(before, view.read(client))
            if as_json:
                render.json_line(frame)
            else:
                render.out.print(view.table(frame, url))
            return
        first = view.table(view.frame(before, before), url)
        # Ctrl+C is how a live view ends.
        with Live(first, console=render.out, auto_refresh=False) as live, contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(interval)
                after = view.read(client)
                live.update(view.table(view.frame(before, after), url), refresh=True)
                before = after


keys_app = typer.Typer(help="API keys for the service's API_KEYS setting.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def new_key(
    scopes: Annotated[
        str, typer.Option("--scopes", help="Scopes joined with +: events:write, events:read, admin.")
    ] = "events:write+events:read",
    as_json: JsonOption = False,
) -> None:
    """Make a strong random key and print its API_KEYS entry (key:scopes) for your secret store."""
    key = auth.new_key()
    entry = f"{key}:{scopes}"
    try:
        auth.parse_api_keys(entry)
    except ValueError as exc:
        raise _usage_error(f"--scopes: {exc}") from None
    if as_json:
        render.json_line({"key": key, "scopes": scopes.split("+"), "entry": entry})
    else:
        render.out.print(entry, markup=False)


def main() -> None:
    app()
