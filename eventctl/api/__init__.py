"""The HTTP API."""

from eventctl.api.app import EventctlApp, create_app

__all__ = ["EventctlApp", "create_app"]
