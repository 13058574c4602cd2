"""``eventctl send``: one event (``EVENT_ID``), or every line of a JSON Lines file (``--file``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from eventctl.cli import render
from eventctl.cli.common import (
    EXIT_REFUSED,
    ApiKeyOption,
    TimeoutOption,
    UrlOption,
    answers,
    client,
    flag,
    usage_error,
)
from eventctl.client.defaults import DEFAULT_BATCH_SIZE, DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL
from eventctl.client.jsontext import loads


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
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="With --file: events per request (POST /events/batch).")
    ] = DEFAULT_BATCH_SIZE,
    from_line: Annotated[
        int, typer.Option("--from-line", min=1, help="With --file: start at this line (to resume an import).")
    ] = 1,
    wait: Annotated[
        bool, flag("--wait", help="Then follow each event until it is processed or failed (all sent first).")
    ] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", min=0, help="Seconds --wait follows an event.")
    ] = 300,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: Annotated[
        bool,
        flag(
            "--json",
            help="One event: the service's answer. --file: one JSON object per line of the file"
            " (line, event_id, outcome, detail, event).",
        ),
    ] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Send one event, or a file of them. Exit 1 if any is refused (a different event has its id, or it is
    invalid) or, with --wait, fails; a line stored before with the same payload is "already stored", not a
    failure, so an import can be run again."""
    if (event_id is None) == (file is None):
        raise usage_error("give either an EVENT_ID or --file")
    if file is not None:
        if payload is not None:
            raise usage_error("--payload goes with EVENT_ID, not with --file")
        from eventctl.cli.batch import send_file  # with its client: only an import loads them

        send_file(file, batch_size, from_line, wait_timeout if wait else None, url, api_key, timeout, as_json)
        return
    assert event_id is not None
    value = None if payload is None else _read_payload(payload)
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        result = service.send(event_id, value)
        if not wait:
            if as_json:
                shown: dict[str, Any] = {"event_id": result.event_id, "status": result.event_status}
                render.json_line(shown | ({"already_stored": True} if result.already_stored else {}))
            else:
                render.accepted(result)
            return
        final = service.wait(event_id, timeout=wait_timeout)
    if as_json:
        render.json_line(final.raw)
    else:
        render.event(final)
    if final.status == "failed":
        raise typer.Exit(EXIT_REFUSED)


def _read_payload(text: str) -> Any:
    """The payload from inline JSON, ``@file.json`` or ``-`` (standard input); anything unusable is a usage
    error."""
    if text == "-":
        source, content = "standard input", sys.stdin.buffer.read()
    elif text.startswith("@"):
        source = text[1:]
        try:
            content = Path(source).read_bytes()
        except OSError as exc:
            raise usage_error(f"cannot read --payload file {source!r}: {exc.strerror}") from None
    else:
        source, content = "--payload", text.encode("utf-8", "surrogateescape")
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise usage_error(f"{source} is not UTF-8 text (byte {exc.start}); JSON must be UTF-8") from None
    try:
        return loads(content)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise usage_error(f"{source} is not valid JSON: {exc}") from None
