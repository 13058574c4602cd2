"""Logging for the server: readable lines in dev, one JSON object a line in staging and prod.

One setup for eventctl's own loggers and uvicorn's, on the standard library: uvicorn and every library
already log through it, so one handler and a small formatter give every line the same shape, with no
extra dependency. Lines logged while serving a request carry its ``request_id`` (and ``event_id`` once
known) from context variables; worker lines carry ``event_id`` and ``attempt`` (passed as ``extra``).
Payloads and keys are never logged. Python's warnings are logged too (logger ``py.warnings``), in the same
format.

Logged values come from clients (a path, an event id), so a console line escapes every control character
in them (C0, DEL, C1, and the line and paragraph separators) as ``\\xNN`` or ``\\uNNNN``: a value cannot start
a line of its own or drive the terminal. Tracebacks stay on their lines. In a JSON line, orjson escapes
C0; the other characters some readers take for line breaks (DEL, C1, the separators: Python's
``splitlines`` does) are escaped as ``\\uNNNN`` here, so that a line is one whole object for every reader.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

from eventctl.settings import Settings

CONTEXT_FIELDS = ("request_id", "event_id", "attempt")
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
EVENT_ID: ContextVar[str | None] = ContextVar("event_id", default=None)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with each control character written as an escape, so that it stays on one line."""
    # isprintable is one pass in C, true for nearly every line: the expression runs only on the rest.
    return text if text.isprintable() else _CONTROL.sub(_escape_control, text)


# What orjson leaves raw in a JSON string, and some readers still take for a line break.
_JSON_LINE_BREAKS = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


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
        line = orjson.dumps(entry, default=str).decode()
        # Such characters can only sit inside JSON strings, where \uNNNN means the same character.
        return line if line.isprintable() else _JSON_LINE_BREAKS.sub(_json_escape, line)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL   logger: message [request_id=… event_id=…]``, then any traceback. Control characters
    in the message and the context are escaped (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _SecondClock(lambda second: time.strftime("%H:%M:%S", time.localtime(second)))

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(record.getMessage().rstrip())
        line = f"{self._clock(record.created)} {record.levelname:<7} {record.name}: {message}"
        fields = record.__dict__
        context = " ".join(f"{name}={escape_controls(str(fields[name]))}" for name in CONTEXT_FIELDS if name in fields)
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
    logging.captureWarnings(True)  # e.g. "coroutine ... was never awaited", in the chosen format
