"""The baselines eventctl's ingest is measured against: minimal FastAPI apps that keep events in a Python
set, with no durability at all. Served by the same uvicorn (uvloop, httptools) as eventctl."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class EventIn(BaseModel):
    event_id: str
    payload: Any = {}


def _pydantic_app() -> FastAPI:
    app = FastAPI()
    seen: set[str] = set()

    @app.post("/events", status_code=202)
    async def create_event(event: EventIn) -> Any:
        if event.event_id in seen:
            return JSONResponse({"detail": "duplicate"}, status_code=409)
        seen.add(event.event_id)
        return {"event_id": event.event_id, "status": "accepted"}

    return app


def _json_app() -> FastAPI:
    app = FastAPI()
    seen: set[str] = set()

    @app.post("/events", status_code=202)
    async def create_event(request: Request) -> Any:
        body = await request.json()
        event_id = body["event_id"]
        if event_id in seen:
            return JSONResponse({"detail": "duplicate"}, status_code=409)
        seen.add(event_id)
        return {"event_id": event_id, "status": "accepted"}

    return app


pydantic_app = _pydantic_app()
json_app = _json_app()
