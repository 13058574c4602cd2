"""The ``eventctl`` command.

``main`` is the console script. For ``serve``, it takes SIGTERM and SIGINT before anything else is imported
(see ``eventctl.signals``): a stop that arrives while the server stack loads or the server starts means "do
not start", and the process exits 0 with one line, instead of dying by the signal. Client commands keep
Python's own Ctrl-C.
"""

import logging
import sys


def main() -> None:
    if sys.argv[1:2] != ["serve"]:
        _run()
        return
    from eventctl.signals import StopRequested, process_signals

    process_signals.install()
    try:
        _run()
    except StopRequested as stop:
        logging.getLogger("eventctl.server").warning("received %s before the server started: not starting", stop)
        sys.exit(0)


def _run() -> None:
    from eventctl.cli.main import main as run  # typer, rich and the commands: imported after the handlers

    run()
