"""``eventctl serve``: its options are generated from ``eventctl.settings.SETTINGS``, one per setting.

Options are read as text and parsed by ``Settings.load`` together with the environment, so that a bad
value, wherever it came from, is reported in one line that names its environment variable.
"""

from __future__ import annotations

import inspect
import os
from typing import Annotated, Any

import typer

from eventctl.errors import ConfigError
from eventctl.settings import SETTINGS

EXIT_BAD_SETTING = 2


def _serve(**options: str | None) -> None:
    from eventctl.cli.render import error_line  # the server stack is imported only when serving
    from eventctl.settings import Settings

    try:
        settings = Settings.load(os.environ, options)
    except ConfigError as exc:
        error_line("ConfigError", str(exc))
        raise typer.Exit(EXIT_BAD_SETTING) from None

    from eventctl.logs import configure_logging
    from eventctl.server import run

    configure_logging(settings)
    try:
        run(settings)
    except ConfigError as exc:  # e.g. an OTEL_* value that tracing cannot use
        error_line("ConfigError", str(exc))
        raise typer.Exit(EXIT_BAD_SETTING) from None


def _option(spec: Any) -> inspect.Parameter:
    help_text = f"{spec.help} \\[env: {spec.env}; default: {spec.default}]"  # \\[ is not rich markup
    annotation = Annotated[str | None, typer.Option(spec.option, help=help_text, show_default=False, metavar=spec.env)]
    return inspect.Parameter(spec.field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


_parameters = [_option(spec) for spec in SETTINGS]
_serve.__signature__ = inspect.Signature(_parameters)  # type: ignore[attr-defined]
_serve.__annotations__ = {p.name: p.annotation for p in _parameters}
serve = _serve
