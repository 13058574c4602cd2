"""``eventctl send``: one event (``EVENT_ID``), or every line of a JSON Lines file (``--file``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from eventctl.cli import batch, render
from eventctl.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    ApiKeyOption,
    TimeoutOption,
    UrlOption,
    answers,
    client,
    error_name,
    exit_code,
    flag,
    usage_error,
)
from eventctl.client import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_URL,
    AsyncClient,
    EventctlClientError,
    RetryPolicy,
)
from eventctl.client.protocol import loads

# An import waits as long as the service asks it to (429, 503 with Retry-After: rate limit, backlog), so
# that no line is refused for it; it stops at the first connection failure or timeout.
IMPORT_RETRIES = RetryPolicy(unreachable=0, throttled=None, max_delay=300)


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
        _send_file(file, batch_size, from_line, wait_timeout if wait else None, url, api_key, timeout, as_json)
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


def _send_file(
    path: Path,
    batch_size: int,
    from_line: int,
    wait_timeout: float | None,
    url: str,
    api_key: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    try:
        lines, malformed = batch.read_lines(path, from_line)
    except OSError as exc:
        raise usage_error(f"cannot read --file {str(path)!r}: {exc.strerror}") from None
    with answers(as_json):  # a URL the client cannot use is a usage error, before anything is sent
        service = AsyncClient(url, api_key=api_key, timeout=timeout, retries=IMPORT_RETRIES)
    state = batch.Import(lines, results=list(malformed))
    for result in malformed:
        _report_problem(result, as_json)
    try:
        asyncio.run(_import(service, state, batch_size, wait_timeout, as_json))
    except KeyboardInterrupt:
        _show(state, path, as_json)
        render.error_line("Interrupted", state.summary())
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except EventctlClientError as exc:
        _show(state, path, as_json)
        render.error_line(error_name(exc), f"{exc}; stopped: {state.summary()}")
        raise typer.Exit(exit_code(exc)) from None
    _show(state, path, as_json)
    if state.problems:
        raise typer.Exit(EXIT_REFUSED)


async def _import(
    service: AsyncClient, state: batch.Import, batch_size: int, wait_timeout: float | None, as_json: bool
) -> None:
    async with service:
        with render.progress(as_json) as progress:
            sending = progress.add_task("sending", total=len(state.lines))

            def sent(result: batch.LineResult) -> None:
                progress.advance(sending)
                _report_problem(result, as_json)

            await batch.send_lines(service, state, batch_size, sent)
            if wait_timeout is None:
                return
            stored = [result for result in state.results if result.outcome in batch.STORED and result.event_id]
            waiting = progress.add_task("waiting", total=len(stored))

            def final(result: batch.LineResult) -> None:
                progress.advance(waiting)
                _report_problem(result, as_json)

            followed = {result.line: result for result in await batch.follow(service, stored, wait_timeout, final)}
            state.results = [followed.get(result.line, result) for result in state.results]


def _report_problem(result: batch.LineResult, as_json: bool) -> None:
    if result.outcome in batch.PROBLEMS and not as_json:
        name = str(result.outcome).title().replace(" ", "")
        render.error_line(f"{name}Line" if result.outcome is batch.Outcome.MALFORMED else name, _where(result))


def _where(result: batch.LineResult) -> str:
    return f"line {result.line}: {result.detail}" if result.detail else f"line {result.line}"


def _show(state: batch.Import, path: Path, as_json: bool) -> None:
    if as_json:
        for result in sorted(state.results, key=lambda result: result.line):
            render.json_line(result.as_json())
    else:
        render.counts(f"{path.name}: {len(state.results):,} lines", state.tally())
