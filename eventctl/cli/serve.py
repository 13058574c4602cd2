"""``eventctl serve``: its options are generated from ``eventctl.settings.SETTINGS``, one per setting.

Options are read as text and parsed by ``Settings.load`` together with the environment, so that a bad
value, wherever it came from, is reported in one line that names its environment variable.

Exit codes, decided here and only here: 0 after a drain (and after a stop before the start finished, which
the console script in ``eventctl.cli`` reports: nothing was started); 1 the service gave up on its own; 2 a
setting that cannot work (``ConfigError``); 3 a dependency that cannot be reached (``Unavailable``). A failed
start is one line on stderr, never a traceback.
"""

from __future__ import annotations

import inspect
import os
from typing import Annotated, Any

import typer

from eventctl.errors import ConfigError, StoreUnavailable
from eventctl.settings import SETTINGS
from eventctl.signals import process_signals

EXIT_STOPPED = 0
EXIT_GAVE_UP = 1
EXIT_BAD_SETTING = 2
EXIT_UNAVAILABLE = 3


def _serve(**options: str | None) -> None:
    process_signals.install()  # the console script (eventctl.cli:main) did it already, before its imports
    from eventctl.cli.render import error_line  # the server stack is imported only when serving

    try:
        code = _start_and_serve(options)
    except ConfigError as exc:
        error_line("ConfigError", str(exc))
        code = EXIT_BAD_SETTING
    except StoreUnavailable as exc:
        error_line("Unavailable", str(exc))
        code = EXIT_UNAVAILABLE
    raise typer.Exit(code)


def _start_and_serve(options: dict[str, str | None]) -> int:
    from eventctl.settings import Settings

    settings = Settings.load(os.environ, options)

    from eventctl.logs import configure_logging

    configure_logging(settings)

    from eventctl.runner import exit_at_once
    from eventctl.server import run

    stopped = run(settings, process_signals)
    code = EXIT_STOPPED if stopped.fatal_reason is None else EXIT_GAVE_UP
    if stopped.left_behind:
        exit_at_once(code)
    return code


def _option(spec: Any) -> inspect.Parameter:
    help_text = f"{spec.help} \\[env: {spec.env}; default: {spec.default}]"  # \\[ is not rich markup
    annotation = Annotated[str | None, typer.Option(spec.option, help=help_text, show_default=False, metavar=spec.env)]
    return inspect.Parameter(spec.field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


_parameters = [_option(spec) for spec in SETTINGS]
_serve.__signature__ = inspect.Signature(_parameters)  # type: ignore[attr-defined]
_serve.__annotations__ = {p.name: p.annotation for p in _parameters}
serve = _serve
