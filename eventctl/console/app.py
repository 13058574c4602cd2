"""``install_console`` adds the console's routes and static files to the API's FastAPI app. The console
does its own access control (a login form and a session cookie, see ``session``), so the API's bearer-key
middleware lets ``/ui`` through.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from eventctl.console.context import Console
from eventctl.console.views import router
from eventctl.service import Service

PACKAGE = Path(__file__).parent


def install_console(app: FastAPI, service: Service) -> None:
    app.state.console = Console(service, PACKAGE / "templates")
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=PACKAGE / "static"), name="console-static")
