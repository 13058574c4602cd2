"""SIGTERM and SIGINT for ``eventctl serve``, owned in one place from the process's first instructions.

``eventctl serve`` installs these handlers before it imports the server stack. Until the server's event loop
runs, a stop signal means "do not start": the handler raises ``StopRequested`` wherever the start is
(importing, reading settings, loading the handler, binding the port), and ``serve`` exits 0, since nothing
was started and nothing can be lost. Once the server runs, every signal goes to the listener it set: the
first starts the drain, a second stops at once.

Only the standard library is imported here, so that installing the handlers costs nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Listener = Callable[[signal.Signals], None]


class StopRequested(BaseException):
    """A stop signal arrived before the server was up.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except Exception`` on the way (in a
    library being imported, in a user's handler module) swallows it.
    """

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.signal = sig


class StopSignals:
    """The process's handler of SIGTERM and SIGINT; see the module docstring."""

    def __init__(self) -> None:
        self._listener: Listener | None = None
        self._installed = False

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on. Installing twice changes nothing."""
        if self._installed:
            return
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        self._installed = True

    def listen(self, listener: Listener | None) -> None:
        """Hand every signal to ``listener`` from now on instead of raising ``StopRequested``; ``None``
        raises again. The listener runs inside the signal handler, on the main thread between two bytecodes:
        it must only schedule work (``loop.call_soon_threadsafe``) or set flags."""
        self._listener = listener

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self._listener is None:
            raise StopRequested(sig)
        self._listener(sig)


# Signal handlers belong to the process, so there is one of these per process.
process_signals = StopSignals()
