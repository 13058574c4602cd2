"""Logging for the server: readable lines in dev, one JSON object a line in staging and prod.

One setup for eventctl's own loggers and uvicorn's, on the standard library: uvicorn and every library
already log through it, so one handler and a small formatter give every line the same shape, with no
extra dependency. Lines logged while serving a request carry its ``request_id`` (and ``event_id`` once
known) from context variables; worker lines carry ``event_id`` and ``attempt`` (passed as ``extra``).
Payloads and keys are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

from eventctl.settings import Settings

CONTEXT_FIELDS = ("request_id", "event_id", "attempt")
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
EVENT_ID: ContextVar[str | None] = ContextVar("event_id", default=None)


class RequestContext(logging.Filter):
    """Adds the current request's id (and event id, once known) to every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
            event_id = EVENT_ID.get()
            if event_id is not None and not hasattr(record, "event_id"):
                record.event_id = event_id
        return True


class _SecondClock:
    """The wall-clock text of a record's second, formatted once per second rather than once per line:
    at thousands of access lines a second, ``strftime`` per line is a visible share of a request."""

    def __init__(self, render: Callable[[int], str]) -> None:
        self._render = render
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, self._render(second)
        return self._text


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.stack_info:
        return "\n".join(filter(None, (record.exc_text, formatter.formatStack(record.stack_info))))
    return record.exc_text


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _SecondClock(lambda second: datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))

    def format(self, record: logging.LogRecord) -> str:
        milliseconds = int(record.created % 1 * 1000)
        entry: dict[str, object] = {
            "time": f"{self._clock(record.created)}.{milliseconds:03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        exception = _exception_text(self, record)
        if exception:
            entry["exception"] = exception
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL   logger: message [request_id=… event_id=…]``, then any traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _SecondClock(lambda second: time.strftime("%H:%M:%S", time.localtime(second)))

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self._clock(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = record.__dict__
        context = " ".join(f"{name}={fields[name]}" for name in CONTEXT_FIELDS if name in fields)
        if context:
            line = f"{line} [{context}]"
        exception = _exception_text(self, record)
        return f"{line}\n{exception}" if exception else line


def configure_logging(settings: Settings) -> None:
    # What no line of ours shows, the records need not gather (the logging HOWTO's "Optimization"):
    # the caller's file and line, the thread, the process, the multiprocessing name.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.addFilter(RequestContext())
    handler.setFormatter(JsonFormatter() if settings.effective_log_format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
