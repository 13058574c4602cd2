"""How the CLI shows things: rich tables for people, JSON for ``--json``; errors one line on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from eventctl.client.jsontext import dumps
from eventctl.durations import format_go_duration

if TYPE_CHECKING:  # the client loads httpx, which --help does not need
    from eventctl.client import Attempt, BulkResult, Event, EventPage, Health, Readiness, SendResult

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLES = {
    "accepted": "cyan",
    "processing": "yellow",
    "retrying": "magenta",
    "processed": "green",
    "failed": "bold red",
    "ready": "green",
    "not ready": "bold red",
    "ok": "green",
    "already stored": "cyan",
    "conflict": "bold red",
    "invalid": "bold red",
    "malformed": "bold red",
    "still waiting": "yellow",
    "not sent": "yellow",
    "replayed": "cyan",
    "deleted": "cyan",
    "released": "yellow",
    "lost": "bold red",
}


def raw(content: bytes) -> None:
    """Print a body exactly as the service sent it, for scripts."""
    text = content.decode("utf-8", "replace")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def json_line(value: Any) -> None:
    """One JSON value on one line of stdout (integers of any size kept)."""
    sys.stdout.write(dumps(value).decode() + "\n")
    sys.stdout.flush()


class RateColumn(ProgressColumn):
    """How many items a second, over rich's recent samples."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


def progress(hidden: bool) -> Progress:
    """A progress bar on stderr (stdout stays clean for --json): done of total, rate, elapsed, ETA. Shown
    only on a terminal: a log file gets the summary, not frames of a bar."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=hidden or not err.is_terminal,
    )


def error_line(name: str, message: str) -> None:
    """One line on stderr, ``Name: message``, in red."""
    err.print(f"[bold red]{name}:[/] {escape(message)}", soft_wrap=True)


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'white')}]{escape(status)}[/]"


def accepted(result: SendResult) -> None:
    suffix = f"  ({escape(result.location)})" if result.location else ""
    if result.already_stored:
        out.print(f"{styled_status('already stored')} {escape(result.event_id)} ({escape(result.event_status)})")
    else:
        out.print(f"{styled_status(result.event_status)} {escape(result.event_id)}{suffix}")


def replayed(event_id: str) -> None:
    out.print(f"{styled_status('accepted')} {escape(event_id)} (replayed)")


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return escape(value)
    return escape(dumps(value).decode())


def event(shown: Event) -> None:
    """Every field the service gave, in its order; the payload pretty-printed."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in shown.raw.items():
        if key == "payload":
            text = escape(_pretty(value))
        elif key == "status":
            text = styled_status(value)
        else:
            text = _shown(value)
        table.add_row(key, text)
    out.print(table)


def _pretty(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return json.dumps(value, indent=2, ensure_ascii=False)


def short_time(moment: datetime | None) -> str:
    """A time in a table: UTC to the second (``--json`` has the exact value)."""
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def time_until(moment: datetime | None, now: datetime) -> str:
    """How long until ``moment``, as ``in 5m32s``, or ``due`` once it has passed."""
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    return f"in {format_go_duration(seconds)}" if seconds >= 1 else "due"


def event_list(page: EventPage) -> None:
    """The page as a table that fits 80 columns: the id and the last error give way, the times do not."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("event_id", min_width=14, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("tries", no_wrap=True, justify="right")
    table.add_column("received_at (UTC)", no_wrap=True)
    table.add_column("next", no_wrap=True)
    table.add_column("last_error", min_width=10, overflow="ellipsis", no_wrap=True)
    now = datetime.now(UTC)
    for item in page.items:
        table.add_row(
            escape(item.event_id),
            styled_status(item.status),
            str(item.attempts),
            short_time(item.received_at),
            time_until(item.next_attempt_at, now),
            escape(item.last_error or "-"),
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


def attempts(items: list[Attempt]) -> None:
    """The attempt timeline, oldest first: when each ran, for how long, how it ended and why."""
    if not items:
        out.print("no attempts yet")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="attempts", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("http", justify="right", no_wrap=True)
    table.add_column("error", min_width=10, overflow="fold")
    for item in items:
        took = "-" if item.duration_ms is None else f"{item.duration_ms:,.0f} ms"
        table.add_row(
            str(item.attempt),
            short_time(item.started_at),
            took,
            styled_status(item.outcome or "-"),
            "-" if item.response_status is None else str(item.response_status),
            escape(item.error or "-"),
        )
    out.print(table)


def bulk_result(result: BulkResult) -> None:
    done = "would change" if result.dry_run else "changed"
    changed = result.matched if result.dry_run else result.changed
    out.print(f"{escape(result.action)}: {result.matched:,} matched, {changed:,} {done}", markup=False)


def deleted(event_id: str) -> None:
    out.print(f"{styled_status('deleted')} {escape(event_id)}")


def counts(title: str, rows: Mapping[str, int]) -> None:
    table = Table("outcome", "events", title=title)
    for name, count in rows.items():
        table.add_row(styled_status(name), f"{count:,}")
    out.print(table)


def health(result: Health) -> None:
    out.print(f"{styled_status(result.status)}, up {escape(result.uptime)}")


def readiness(result: Readiness) -> None:
    (out if result.ready else err).print(styled_status(result.status))
