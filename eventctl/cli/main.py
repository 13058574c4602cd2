"""``eventctl``: the client commands, and ``serve``. Commands parse, call library code, render.

Exit codes, decided here and only here: 0 success; 1 the service said no; 2 usage error; 3 the service
could not be reached or timed out.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from eventctl.cli import render
from eventctl.cli.serve import serve
from eventctl.client import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_URL,
    EventctlClient,
    Reply,
    ServiceError,
    ServiceUnreachable,
)

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

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


def _run(call: Callable[[], Reply], as_json: bool, show: Callable[[Reply], None]) -> None:
    """Make the call and render it; turn the client's errors into one line and the right exit code."""
    try:
        reply = call()
    except ServiceUnreachable as exc:
        render.error_line("ServiceUnreachable", str(exc))
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except ServiceError as exc:
        if as_json:
            render.raw(exc.reply)
        else:
            render.error_line("ServiceError", str(exc))
        raise typer.Exit(EXIT_REFUSED) from None
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
    event_id: Annotated[str, typer.Argument(help="The event's id (its idempotency key).")],
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", help="JSON inline, @file.json, or - for standard input.", show_default=False),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Send one event. Exit 1 if the service refuses it (409 duplicate, 400 invalid)."""
    value = None if payload is None else _read_payload(payload)
    with EventctlClient(url, api_key=api_key, timeout=timeout) as client:
        _run(
            lambda: client.send(event_id, value),
            as_json,
            lambda reply: render.accepted(reply.json(), reply.headers.get("location")),
        )


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


def main() -> None:
    app()
