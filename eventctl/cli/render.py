"""How the CLI shows things: rich tables for people, the service's bytes as they came for ``--json``."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
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
}


def raw(reply: Reply) -> None:
    """Print the body exactly as the service sent it, for scripts."""
    sys.stdout.write(reply.text)
    if not reply.text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def error_line(name: str, message: str) -> None:
    """One line on stderr, ``Name: message``, in red."""
    err.print(f"[bold red]{name}:[/] {message}", markup=True)


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]"


def accepted(body: dict[str, Any], location: str | None) -> None:
    out.print(f"{styled_status(body['status'])} {body['event_id']}" + (f"  ({location})" if location else ""))


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
            shown = "-" if value is None else str(value)
        table.add_row(key, shown)
    out.print(table)


def health(body: dict[str, Any]) -> None:
    out.print(f"{styled_status(body.get('status', '?'))}, up {body.get('uptime', '?')}")


def readiness(body: Any) -> None:
    status = body.get("status", "?") if isinstance(body, dict) else "?"
    out.print(styled_status(status))
