"""The ``eventctl`` command.

``main`` is the console script. For ``serve``, it takes SIGTERM and SIGINT before anything else is imported
(see ``eventctl.signals``): a stop that arrives while the server stack loads or the server starts means "do
not start", and the process exits 0 with one line, instead of dying by the signal. Client commands keep
Python's own Ctrl-C.
"""

import logging
import sys


def main() -> None:
    serving = sys.argv[1:2] == ["serve"]
    if not serving:
        from eventctl.cli.main import main as run

        run()
        return
    from eventctl.signals import StopRequested, process_signals

    process_signals.install()
    try:
        from eventctl.cli.main import main as run

        run()
    except StopRequested as stop:
        logging.getLogger("eventctl.server").warning("received %s before the server started: not starting", stop)
        sys.exit(0)
