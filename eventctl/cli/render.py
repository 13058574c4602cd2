"""How the CLI shows things: rich tables for people, the service's bytes as they came for ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eventctl.client import Reply

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
    "duplicate": "yellow",
    "refused": "bold red",
    "malformed": "bold red",
    "unreachable": "bold red",
    "still waiting": "yellow",
    "replayed": "cyan",
}


def raw(reply: Reply) -> None:
    """Print the body exactly as the service sent it, for scripts."""
    sys.stdout.write(reply.text)
    if not reply.text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def json_line(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


def progress(hidden: bool) -> Progress:
    """A progress bar on stderr, so that stdout stays clean for --json."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=hidden,
    )


def error_line(name: str, message: str) -> None:
    """One line on stderr, ``Name: message``, in red."""
    err.print(f"[bold red]{name}:[/] {escape(message)}")


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]"


def accepted(body: dict[str, Any], location: str | None) -> None:
    suffix = f"  ({escape(location)})" if location else ""
    out.print(f"{styled_status(body['status'])} {escape(body['event_id'])}{suffix}")


def event(body: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in body.items():
        if key == "payload":
            shown = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        elif key == "status":
            shown = styled_status(value)
        else:
            shown = "-" if value is None else escape(str(value))
        table.add_row(key, shown)
    out.print(table)


def event_list(body: dict[str, Any]) -> None:
    table = Table("event_id", "status", "attempts", "received_at", "next_attempt_at", "last_error")
    for item in body["items"]:
        table.add_row(
            escape(item["event_id"]),
            styled_status(item["status"]),
            str(item["attempts"]),
            item["received_at"],
            item["next_attempt_at"] or "-",
            escape(item["last_error"] or "-"),
        )
    out.print(table)
    if body["next_cursor"]:
        out.print(f"more: --cursor {body['next_cursor']}")


def counts(title: str, rows: Mapping[str, int]) -> None:
    table = Table("outcome", "events", title=title)
    for name, count in rows.items():
        table.add_row(styled_status(name), str(count))
    out.print(table)


def health(body: dict[str, Any]) -> None:
    out.print(f"{styled_status(body.get('status', '?'))}, up {body.get('uptime', '?')}")


def readiness(body: Any) -> None:
    status = body.get("status", "?") if isinstance(body, dict) else "?"
    out.print(styled_status(status))
