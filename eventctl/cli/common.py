"""What every client command shares: its options, its client, and how errors become one line and an exit code.

Exit codes, decided here and only here: 0 success; 1 the service said no (or what answered is not eventctl);
2 usage error; 3 the service could not be reached or timed out; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from eventctl.cli import render
from eventctl.client.errors import EventctlClientError, InvalidServiceURL, ServiceError, ServiceUnreachable

if TYPE_CHECKING:  # the client loads httpx, which --help does not need
    from eventctl.client import Client

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


UrlOption = Annotated[
    str, typer.Option("--url", envvar="EVENTCTL_URL", help="The service's base URL (http:// or https://).")
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="EVENTCTL_API_KEY", help="Sent as a Bearer token.", show_default=False)
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the service's JSON answer (a problem document on error), no table.", metavar=""),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.001, help="Seconds to wait for an answer.")]


def flag(*names: str, **options: Any) -> Any:
    """A boolean ``typer.Option`` shown without a type in ``--help``: it takes no value."""
    return typer.Option(*names, metavar="", **options)


class Command(TyperCommand):
    """A command whose ``--help`` shows no type beside itself (Typer shows ``<bool>``; it takes no value)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Group(TyperGroup):
    """The ``eventctl`` group, its ``--help`` shown as ``Command``'s is."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


def usage_error(message: str) -> typer.Exit:
    render.error_line("UsageError", message)
    return typer.Exit(EXIT_USAGE)


def exit_code(error: EventctlClientError) -> int:
    """The exit code of a command that stopped on ``error``."""
    if isinstance(error, InvalidServiceURL):
        return EXIT_USAGE
    if isinstance(error, ServiceUnreachable):
        return EXIT_UNREACHABLE
    return EXIT_REFUSED  # the service said no, what answered is not eventctl, or a wait ran out


def error_name(error: EventctlClientError) -> str:
    return "UsageError" if isinstance(error, InvalidServiceURL) else type(error).__name__


@contextmanager
def answers(as_json: bool) -> Iterator[None]:
    """Turn the client's errors into one line on stderr (with ``--json``, a service's problem goes to stdout
    as it came) and the right exit code."""
    try:
        yield
    except EventctlClientError as exc:
        if as_json and isinstance(exc, ServiceError) and exc.content:
            render.raw(exc.content)
        else:
            render.error_line(error_name(exc), f"--url: {exc}" if isinstance(exc, InvalidServiceURL) else str(exc))
        raise typer.Exit(exit_code(exc)) from None


def client(url: str, api_key: str | None, timeout: float, as_json: bool) -> Client:
    """The client of a command; a URL it cannot use is a usage error.

    It stops at the first connection failure or timeout (one line, exit 3) rather than retrying it: a person
    is watching. A 429 or 503 is the service asking to wait, which a command does, a few times.
    """
    from eventctl.client import Client, RetryPolicy

    with answers(as_json):
        return Client(url, api_key=api_key, timeout=timeout, retries=RetryPolicy(unreachable=0, throttled=3))
