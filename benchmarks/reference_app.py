"""The baselines eventctl's ingest is measured against: minimal apps that keep events in a Python set, with no
durability at all. Served by the same uvicorn (uvloop, httptools) as eventctl."""

from __future__ import annotations

from typing import Any

import orjson
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


def _raw_app() -> Any:
    """No framework at all: the ceiling of what uvicorn itself allows."""
    seen: set[str] = set()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        event_id = orjson.loads(body)["event_id"]
        status = 409 if event_id in seen else 202
        seen.add(event_id)
        answer = orjson.dumps({"event_id": event_id, "status": "accepted"})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


pydantic_app = _pydantic_app()
raw_app = _raw_app()
json_app = _json_app()
