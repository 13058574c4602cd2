"""The two line formats, for records with context and with a traceback."""

from __future__ import annotations

import logging
import sys

import orjson

from eventctl.logs import ConsoleFormatter, JsonFormatter


def record(message: str, *, failing: bool = False, **context: object) -> logging.LogRecord:
    exc_info = None
    if failing:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    entry = logging.LogRecord("eventctl.worker", logging.WARNING, __file__, 1, message, (), exc_info)
    entry.created = 1_700_000_000.25
    entry.__dict__.update(context)
    return entry


def test_console_lines_carry_context_and_any_traceback() -> None:
    formatter = ConsoleFormatter()
    line = formatter.format(record("attempt failed", event_id="e1", attempt=2))
    assert line.endswith(" WARNING eventctl.worker: attempt failed [event_id=e1 attempt=2]")
    first, *rest = formatter.format(record("crashed", failing=True)).splitlines()
    assert first.endswith("eventctl.worker: crashed")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"


def test_json_lines_are_one_object_with_millisecond_utc_time_context_and_traceback() -> None:
    formatter = JsonFormatter()
    line = formatter.format(record("crashed", failing=True, request_id="r1", event_id="e1"))
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["time"] == "2023-11-14T22:13:20.250+00:00"
    assert (entry["level"], entry["logger"], entry["message"]) == ("warning", "eventctl.worker", "crashed")
    assert (entry["request_id"], entry["event_id"]) == ("r1", "e1")
    assert entry["exception"].endswith("ValueError: boom")


def test_the_clock_moves_on_with_the_second() -> None:
    formatter = JsonFormatter()
    early, late = record("a"), record("b")
    late.created = early.created + 1
    times = [orjson.loads(formatter.format(entry))["time"] for entry in (early, late, early)]
    assert times == ["2023-11-14T22:13:20.250+00:00", "2023-11-14T22:13:21.250+00:00", "2023-11-14T22:13:20.250+00:00"]
