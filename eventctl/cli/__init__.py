"""The ``eventctl`` command."""

from eventctl.cli.main import app, main

__all__ = ["app", "main"]
