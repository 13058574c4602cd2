"""Every error of the CLI is one line that shows the reason, with the right exit code, never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.net import foreign_server
from tests.test_cli import eventctl


@pytest.fixture(scope="module")
def server(shared_servers: ServerFactory) -> ServerProcess:
    return shared_servers.start(DATABASE_URL="memory://")


@pytest.fixture(scope="module")
def foreign() -> Iterator[str]:
    with foreign_server() as url:
        yield url


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be a single line and no traceback."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_invalid_event_id_shows_the_pointer_and_the_reason(server: ServerProcess) -> None:
    result = eventctl("send", "bad\nid", url=server.url)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("BadRequest: Bad Request (400): the body is not a valid event")
    assert "#/event_id: event_id must not contain control characters" in line


def test_a_bad_filter_shows_which_parameter_and_why(server: ServerProcess) -> None:
    result = eventctl("events", "--status", "bogus", url=server.url)
    assert result.returncode == 1
    line = one_line(result)
    assert "#/query/status" in line
    assert "'accepted'" in line


def test_a_duplicate_shows_the_stored_status_and_whether_the_payloads_match(server: ServerProcess) -> None:
    assert eventctl("send", "err_dup", "--payload", '{"a": 1}', url=server.url).returncode == 0
    result = eventctl("send", "err_dup", "--payload", '{"a": 2}', url=server.url)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("Conflict: Conflict (409)")
    assert "event_status=" in line
    assert "payload_matches=false" in line


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "localhost:8080"])
def test_a_url_without_a_scheme_is_a_usage_error_that_suggests_http(url: str) -> None:
    result = eventctl("health", url=url)
    assert result.returncode == 2
    assert f"did you mean 'http://{url}'" in one_line(result)


@pytest.mark.parametrize("command", [["health"], ["send", "x"], ["send", "--file", "/dev/null"]])
def test_an_invalid_url_is_a_usage_error(command: list[str]) -> None:
    result = eventctl(*command, url="http://[::1")
    assert result.returncode == 2
    assert "UsageError: --url: 'http://[::1' is not a valid URL" in one_line(result)


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("/html", "answered 200 with text/html (<!DOCTYPE html> <html><body> <h1>Hello</h1>"),
        ("/redirect", "answered 302 (a redirect to https://login.example/)"),
        ("/empty", "answered 204 with an empty body"),
        ("/plain-404", "answered 404 with text/plain (Not Found)"),
    ],
)
@pytest.mark.parametrize("command", [["health"], ["ready"], ["status", "x"], ["send", "x"], ["events"]])
def test_an_answer_that_is_not_eventctls_is_one_line_saying_what_answered(
    foreign: str, path: str, what: str, command: list[str]
) -> None:
    result = eventctl(*command, url=foreign + path)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(f"NotAnEventctlService: {foreign}{path} does not look like an eventctl service")
    assert what in line
    assert "check the URL" in line


def test_a_path_below_the_service_says_to_give_the_base_url(server: ServerProcess) -> None:
    result = eventctl("health", url=server.url + "/api")
    assert result.returncode == 1
    line = one_line(result)
    assert f"{server.url}/api has no route GET /health" in line
    assert "without a path below it" in line


def test_a_payload_file_that_is_not_utf8_is_a_usage_error(server: ServerProcess, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"name": "Zoë"}'.encode("latin-1"))
    result = eventctl("send", "err_latin1", "--payload", f"@{latin1}", url=server.url)
    assert result.returncode == 2
    assert "is not UTF-8 text" in one_line(result)
    assert server.client.get("/events/err_latin1").status_code == 404


def test_an_unreachable_service_is_one_line_with_exit_3() -> None:
    from tests.net import unused_port

    result = eventctl("status", "x", url=f"http://127.0.0.1:{unused_port()}")
    assert result.returncode == 3
    assert one_line(result).startswith("ServiceUnreachable: cannot reach http://127.0.0.1:")
