"""Log lines cannot be forged: a value a client sends (a path, an event id) never starts a line of its own or
drives the terminal, in either format (SPEC §9), and Python's warnings come in the chosen format too."""

from __future__ import annotations

import logging

import orjson
import pytest

from eventctl.logs import ConsoleFormatter
from tests.conftest import ServerFactory, wait_for_status, wait_until

FORGED = "/events/x%0AFORGED-LINE%0D%E2%80%A8%C2%85%1B[31m"


def forge(servers: ServerFactory, log_format: str) -> list[str]:
    """The log lines of a server asked for ``FORGED``."""
    server = servers.start(DATABASE_URL="memory://", LOG_FORMAT=log_format)
    assert server.client.get(FORGED).status_code == 404
    wait_until(lambda: "FORGED" in server.log, timeout=10, message="the access line")
    return server.log.splitlines()


def test_console_lines_escape_what_a_client_sent(servers: ServerFactory) -> None:
    lines = forge(servers, "console")
    assert not [line for line in lines if line.startswith("FORGED-LINE")]
    assert not [line for line in lines if "\x1b" in line or "\u2028" in line or "\x85" in line or "\r" in line]
    [access] = [line for line in lines if "eventctl.access" in line and "FORGED" in line]
    assert "GET /events/x\\x0aFORGED-LINE\\x0d\\u2028\\x85\\x1b[31m 404" in access


def test_json_lines_stay_one_object_a_line(servers: ServerFactory) -> None:
    """Even for a reader that breaks lines at every separator Unicode knows (``str.splitlines``)."""
    lines = forge(servers, "json")
    entries = [orjson.loads(line) for line in lines]  # every line is one whole object
    [access] = [entry for entry in entries if entry["logger"] == "eventctl.access" and "FORGED" in entry["message"]]
    assert access["message"].startswith("GET /events/x\nFORGED-LINE\r\u2028\x85\x1b[31m 404")


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_python_warnings_are_logged_in_the_chosen_format(servers: ServerFactory, log_format: str) -> None:
    server = servers.start(DATABASE_URL="memory://", HANDLER="tests.scripted_handlers:warns", LOG_FORMAT=log_format)
    assert server.client.post("/events", json={"event_id": "noisy"}).status_code == 202
    wait_for_status(server.client, "noisy", "processed")
    wait_until(lambda: "a warning while handling noisy" in server.log, timeout=10, message="the warning")
    [line] = [line for line in server.log.splitlines() if "a warning while handling noisy" in line]
    if log_format == "json":
        entry = orjson.loads(line)
        assert (entry["logger"], entry["level"]) == ("py.warnings", "warning")
    else:
        assert " WARNING py.warnings: " in line


def test_a_traceback_keeps_its_lines_while_the_message_is_escaped() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = logging.LogRecord("eventctl.worker", logging.ERROR, __file__, 1, "bad %s", ("id\nX",), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
    first, *rest = ConsoleFormatter().format(record).splitlines()
    assert first.endswith("eventctl.worker: bad id\\x0aX")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"
