"""``eventctl send --file``: a JSON Lines file imported through ``AsyncClient.send_many``, batch after batch.

It exits 0 when every line is stored (now, or already with the same payload), 1 when a line is malformed,
invalid or a conflict (or, with ``--wait``, failed or still waiting), 3 when the service cannot be reached,
130 on Ctrl-C. Each non-blank line is one event body. A line that is not JSON is reported with its number and not sent;
every other line is sent, so that the service decides what is valid. An ``Import`` records every line's
outcome as it is known, so that however the import stops (done, unreachable, Ctrl-C) it can say how far it
got and which line to resume from.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import typer

from eventctl.cli import render
from eventctl.cli.common import EXIT_INTERRUPTED, EXIT_REFUSED, answers, error_name, exit_code, usage_error
from eventctl.client import AsyncClient, EventctlClientError, ItemResult, RetryPolicy, WaitTimedOut
from eventctl.client.jsontext import loads

FOLLOW_IN_FLIGHT = 16  # events --wait follows at once (each with at most one request in flight)


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    ALREADY_STORED = "already stored"  # a duplicate whose payload matches: stored before, as asked
    CONFLICT = "conflict"  # a duplicate whose payload differs: another event has this id
    INVALID = "invalid"  # the service refused the line (400, or larger than it accepts)
    MALFORMED = "malformed"  # not JSON: never sent
    PROCESSED = "processed"  # with --wait
    FAILED = "failed"  # with --wait
    STILL_WAITING = "still waiting"  # with --wait, past the deadline


PROBLEMS = frozenset({Outcome.CONFLICT, Outcome.INVALID, Outcome.MALFORMED, Outcome.FAILED, Outcome.STILL_WAITING})
STORED = frozenset({Outcome.ACCEPTED, Outcome.ALREADY_STORED})


@dataclass(frozen=True, slots=True)
class LineResult:
    line: int
    event_id: str | None
    outcome: Outcome
    detail: str = ""
    event: Mapping[str, Any] | None = None  # with --wait: the event as last seen

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "event_id": self.event_id,
            "outcome": str(self.outcome),
            "detail": self.detail,
            "event": self.event,
        }


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    body: Any  # the line's JSON value, sent as it is


def read_lines(path: Path, from_line: int = 1) -> tuple[list[Line], list[LineResult]]:
    """The sendable lines of ``path`` from line ``from_line`` on, and a result for each that is not JSON.
    Raises ``OSError`` when the file cannot be read."""
    sendable, malformed = [], []
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            text = raw.strip()
            if number < from_line or not text:
                continue
            try:
                body = loads(text)
            except (orjson.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                malformed.append(LineResult(number, None, Outcome.MALFORMED, f"not valid JSON: {exc}"))
                continue
            sendable.append(Line(number, body))
    return sendable, malformed


@dataclass
class Import:
    """How far an import of ``lines`` got. ``results`` holds every line's outcome as soon as it is known;
    ``resume_line`` is the first line not yet known to be stored (``None`` once every line is), so that
    sending the file again from there loses nothing, and repeats nothing harmful (already stored)."""

    lines: list[Line]
    results: list[LineResult] = field(default_factory=list)
    sent: int = 0
    _done: set[int] = field(default_factory=set, repr=False)  # positions in ``lines`` past ``_first_undone``
    _first_undone: int = 0

    def record(self, position: int, result: LineResult) -> None:
        """The outcome of ``lines[position]``."""
        self.results.append(result)
        self.sent += 1
        self._done.add(position)
        while self._first_undone in self._done:
            self._done.discard(self._first_undone)
            self._first_undone += 1

    @property
    def total(self) -> int:
        """The lines of the import: those to send and the malformed ones."""
        return len(self.lines) + sum(result.outcome is Outcome.MALFORMED for result in self.results)

    @property
    def resume_line(self) -> int | None:
        return self.lines[self._first_undone].number if self._first_undone < len(self.lines) else None

    def tally(self) -> dict[str, int]:
        """How many lines had each outcome, in the order of ``Outcome``; and how many were not sent."""
        counts = collections.Counter(result.outcome for result in self.results)
        shown = {str(outcome): counts[outcome] for outcome in Outcome if counts[outcome]}
        if len(self.lines) > self.sent:
            shown["not sent"] = len(self.lines) - self.sent
        return shown

    def summary(self) -> str:
        """One line: lines sent of all, and what became of them."""
        counts = collections.Counter(result.outcome for result in self.results)
        refused = counts[Outcome.CONFLICT] + counts[Outcome.INVALID]
        line = (
            f"{self.sent:,} of {len(self.lines):,} lines sent: {counts[Outcome.ACCEPTED]:,} accepted,"
            f" {counts[Outcome.ALREADY_STORED]:,} already stored, {refused:,} refused"
        )
        if self.resume_line is not None:
            line += f"; resume with --from-line {self.resume_line}"
        return line

    @property
    def problems(self) -> bool:
        return any(result.outcome in PROBLEMS for result in self.results)


async def send_lines(client: AsyncClient, state: Import, batch_size: int, report: Callable[[LineResult], None]) -> None:
    """Send every line of ``state``, ``batch_size`` at a time, recording each outcome as it is known and
    passing it to ``report``. Raises what the client raises when a batch cannot be sent."""
    for offset in range(0, len(state.lines), batch_size):
        chunk = state.lines[offset : offset + batch_size]

        def sent(item: ItemResult, offset: int = offset, chunk: list[Line] = chunk) -> None:
            result = _line_result(chunk[item.index], item)
            state.record(offset + item.index, result)
            report(result)

        await client.send_many([line.body for line in chunk], batch_size=len(chunk), on_result=sent)


def _line_result(line: Line, item: ItemResult) -> LineResult:
    if item.accepted:
        return LineResult(line.number, item.event_id, Outcome.ACCEPTED)
    if item.already_stored:
        return LineResult(line.number, item.event_id, Outcome.ALREADY_STORED, f"event_status={item.event_status}")
    if item.conflict:
        detail = f"another event has id {item.event_id!r} (event_status={item.event_status}, payload_matches=false)"
        return LineResult(line.number, item.event_id, Outcome.CONFLICT, detail)
    reasons = "; ".join(
        f"{error.get('pointer')}: {error.get('detail')}" if error.get("pointer") else str(error.get("detail"))
        for error in item.errors
    )
    return LineResult(line.number, item.event_id, Outcome.INVALID, reasons or f"refused with {item.status}")


async def follow(
    client: AsyncClient, stored: Iterable[LineResult], wait_timeout: float, report: Callable[[LineResult], None]
) -> list[LineResult]:
    """Follow every stored line's event until it is final, ``FOLLOW_IN_FLIGHT`` at a time; a result per line."""
    queue: collections.deque[LineResult] = collections.deque(stored)
    results: list[LineResult] = []

    async def follower() -> None:
        while queue:
            line = queue.popleft()
            assert line.event_id is not None
            try:
                event = await client.wait(line.event_id, timeout=wait_timeout)
            except WaitTimedOut as exc:
                result = LineResult(line.line, line.event_id, Outcome.STILL_WAITING, str(exc), exc.event.raw)
            else:
                outcome = Outcome.PROCESSED if event.status == "processed" else Outcome.FAILED
                result = LineResult(line.line, line.event_id, outcome, event.last_error or "", event.raw)
            results.append(result)
            report(result)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(FOLLOW_IN_FLIGHT):
                group.create_task(follower())
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return results


def send_file(
    path: Path,
    batch_size: int,
    from_line: int,
    wait_timeout: float | None,
    url: str,
    api_key: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """``eventctl send --file``: import ``path`` and show the outcome; exit as the module docstring says."""
    try:
        lines, malformed = read_lines(path, from_line)
    except OSError as exc:
        raise usage_error(f"cannot read --file {str(path)!r}: {exc.strerror}") from None
    with answers(as_json):  # a URL the client cannot use is a usage error, before anything is sent
        # An import waits as long as the service asks (429, 503 with Retry-After: a rate limit, a full backlog),
        # so that no line is refused for it; it stops at the first connection failure or timeout.
        retries = RetryPolicy(unreachable=0, throttled=None, max_delay=300)
        service = AsyncClient(url, api_key=api_key, timeout=timeout, retries=retries)
    state = Import(lines, results=list(malformed))
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
    service: AsyncClient, state: Import, batch_size: int, wait_timeout: float | None, as_json: bool
) -> None:
    async with service:
        with render.progress(as_json) as progress:
            sending = progress.add_task("sending", total=len(state.lines))

            def sent(result: LineResult) -> None:
                progress.advance(sending)
                _report_problem(result, as_json)

            await send_lines(service, state, batch_size, sent)
            if wait_timeout is None:
                return
            stored = [result for result in state.results if result.outcome in STORED and result.event_id]
            waiting = progress.add_task("waiting", total=len(stored))

            def final(result: LineResult) -> None:
                progress.advance(waiting)
                _report_problem(result, as_json)

            followed = {result.line: result for result in await follow(service, stored, wait_timeout, final)}
            state.results = [followed.get(result.line, result) for result in state.results]


def _report_problem(result: LineResult, as_json: bool) -> None:
    if result.outcome in PROBLEMS and not as_json:
        name = str(result.outcome).title().replace(" ", "")
        render.error_line(f"{name}Line" if result.outcome is Outcome.MALFORMED else name, _where(result))


def _where(result: LineResult) -> str:
    return f"line {result.line}: {result.detail}" if result.detail else f"line {result.line}"


def _show(state: Import, path: Path, as_json: bool) -> None:
    if as_json:
        for result in sorted(state.results, key=lambda result: result.line):
            render.json_line(result.as_json())
    else:
        render.counts(f"{path.name}: {state.total:,} lines", state.tally())
