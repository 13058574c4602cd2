"""``eventctl send --file``: many events from a JSON Lines file, sent concurrently, with a progress bar.

Each non-blank line is one request body, sent as it is, so the service decides what is valid. A line that is
not JSON is reported with its number and not sent; every other line is still sent.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from eventctl.client import EventctlClient, ServiceError, ServiceUnreachable, WaitTimedOut

SEND_CONCURRENCY = 16


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"  # any other answer of 400 or more
    MALFORMED = "malformed"  # not JSON: never sent
    UNREACHABLE = "unreachable"
    PROCESSED = "processed"  # with --wait
    FAILED = "failed"  # with --wait
    STILL_WAITING = "still waiting"  # with --wait, past the deadline


PROBLEMS = frozenset(
    {Outcome.DUPLICATE, Outcome.REFUSED, Outcome.MALFORMED, Outcome.UNREACHABLE, Outcome.FAILED, Outcome.STILL_WAITING}
)


@dataclass(frozen=True, slots=True)
class LineResult:
    line: int
    event_id: str | None
    outcome: Outcome
    status_code: int | None = None
    body: Any = None  # the service's answer, as JSON
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "event_id": self.event_id,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "body": self.body,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: bytes
    event_id: str | None


def read_lines(path: Path) -> tuple[list[_Line], list[LineResult]]:
    """The sendable lines of ``path`` and a result for each line that is not JSON."""
    sendable, malformed = [], []
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                document = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                malformed.append(LineResult(number, None, Outcome.MALFORMED, detail=f"not valid JSON: {exc}"))
                continue
            event_id = document.get("event_id") if isinstance(document, dict) else None
            sendable.append(_Line(number, text, event_id if isinstance(event_id, str) else None))
    return sendable, malformed


def send_all(client: EventctlClient, lines: Iterable[_Line], *, wait_timeout: float | None) -> Iterator[LineResult]:
    """Send every line (and, with ``wait_timeout``, follow each accepted one to its final status);
    yield results in the order of the file."""
    with ThreadPoolExecutor(SEND_CONCURRENCY) as pool:
        yield from pool.map(lambda line: _send_one(client, line, wait_timeout), lines)


def _send_one(client: EventctlClient, line: _Line, wait_timeout: float | None) -> LineResult:
    try:
        reply = client.send_body(line.text)
    except ServiceUnreachable as exc:
        return LineResult(line.number, line.event_id, Outcome.UNREACHABLE, detail=str(exc))
    except ServiceError as exc:
        outcome = Outcome.DUPLICATE if exc.reply.status_code == 409 else Outcome.REFUSED
        return LineResult(line.number, line.event_id, outcome, exc.reply.status_code, exc.reply.json(), str(exc))
    accepted = LineResult(line.number, line.event_id, Outcome.ACCEPTED, reply.status_code, reply.json())
    if wait_timeout is None or line.event_id is None:
        return accepted
    try:
        final = client.wait_until_final(line.event_id, timeout=wait_timeout)
    except WaitTimedOut as exc:
        return LineResult(line.number, line.event_id, Outcome.STILL_WAITING, detail=str(exc))
    except (ServiceUnreachable, ServiceError) as exc:
        return LineResult(line.number, line.event_id, Outcome.UNREACHABLE, detail=str(exc))
    body = final.json()
    outcome = Outcome.PROCESSED if body["status"] == "processed" else Outcome.FAILED
    return LineResult(line.number, line.event_id, outcome, final.status_code, body, body.get("last_error") or "")


def tally(results: Iterable[LineResult]) -> dict[str, int]:
    """How many lines had each outcome, in the order of ``Outcome``."""
    counts = collections.Counter(result.outcome for result in results)
    return {str(outcome): counts[outcome] for outcome in Outcome if counts[outcome]}
