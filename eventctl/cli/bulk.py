"""The filter options (the same as ``GET /events``'s, SPEC §11) and the commands that act on what they select:
bulk replay, ``purge`` (bulk delete), and ``delete`` of one event.

A bulk action first asks the service how many events it would change (a dry run) and has the user confirm
that number, unless ``--yes``. The values go to the service as typed: it is the one judge of a filter, and
its 400 names the bad option.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from eventctl.cli import render
from eventctl.cli.common import (
    ApiKeyOption,
    JsonOption,
    TimeoutOption,
    UrlOption,
    answers,
    client,
    flag,
)
from eventctl.client.defaults import DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL

if TYPE_CHECKING:  # the client loads httpx, which --help does not need
    from eventctl.client import Client

_WHEN = "an RFC 3339 time with an offset (2026-12-01T09:30:00Z) or a duration before now (90s, 15m, 2h, 7d)"

StatusOption = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        "-s",
        help="Only events with this status (accepted, processing, retrying, processed, failed); repeat for several.",
        metavar="<str>",
        show_default=False,
    ),
]
SinceOption = Annotated[str | None, typer.Option("--since", help=f"Received at or after: {_WHEN}.", show_default=False)]
UntilOption = Annotated[str | None, typer.Option("--until", help=f"Received before: {_WHEN}.", show_default=False)]
ErrorOption = Annotated[
    str | None,
    typer.Option("--error", help="Only events whose last error holds this (case-insensitive).", show_default=False),
]
OrderingKeyOption = Annotated[
    str | None, typer.Option("--ordering-key", help="Only events with this ordering key.", show_default=False)
]
IdPrefixOption = Annotated[
    str | None, typer.Option("--id-prefix", help="Only events whose id starts with this.", show_default=False)
]
DryRunOption = Annotated[bool, flag("--dry-run", help="Only count what would change; change nothing.")]
YesOption = Annotated[bool, flag("--yes", "-y", help="Do not ask for confirmation.")]


def chosen_filters(
    status: list[str] | None,
    since: str | None,
    until: str | None,
    error: str | None,
    ordering_key: str | None,
    id_prefix: str | None,
) -> dict[str, Any]:
    """The filters given, by their ``GET /events`` names."""
    given = {
        "status": status or None,
        "since": since,
        "until": until,
        "error": error,
        "ordering_key": ordering_key,
        "id_prefix": id_prefix,
    }
    return {name: value for name, value in given.items() if value is not None}


def bulk_action(
    service: Client, action: str, filters: dict[str, Any], *, dry_run: bool, yes: bool, as_json: bool
) -> None:
    """Count, confirm (unless ``yes`` or ``dry_run``), act, and show the result. Declining exits 1."""
    counted = service.bulk(action, dry_run=True, **filters)
    if dry_run or counted.matched == 0:
        result = counted
    else:
        if not yes:
            what = "failed event" if action == "replay" else "processed or failed event"
            plural = "s" if counted.matched != 1 else ""
            question = f"{action.capitalize()} {counted.matched:,} {what}{plural}?"
            if not typer.confirm(question, err=True):
                render.err.print("nothing changed")
                raise typer.Exit(1)
        result = service.bulk(action, dry_run=False, **filters)
    if as_json:
        render.json_line(result.raw)
    else:
        render.bulk_result(result)


def purge(
    status: StatusOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    error: ErrorOption = None,
    ordering_key: OrderingKeyOption = None,
    id_prefix: IdPrefixOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Delete every processed or failed event the filters select (all of them, with no filter), with their
    attempts. Asks first, showing how many, unless --yes. Needs an admin key."""
    filters = chosen_filters(status, since, until, error, ordering_key, id_prefix)
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        bulk_action(service, "delete", filters, dry_run=dry_run, yes=yes, as_json=as_json)


def delete(
    event_id: Annotated[str, typer.Argument(help="The event to delete.")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: Annotated[
        bool, flag("--json", help='Print {"event_id", "deleted": true}; a problem document on error.')
    ] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Delete one event and its attempts (not while it is processing); its id can be sent again. Needs an
    admin key."""
    with client(url, api_key, timeout, as_json) as service, answers(as_json):
        service.delete(event_id)
    if as_json:
        render.json_line({"event_id": event_id, "deleted": True})
    else:
        render.deleted(event_id)
