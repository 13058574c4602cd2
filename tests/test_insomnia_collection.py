"""The Insomnia collection is a true description of the API: sent in order to a real server, every request
gets the status its name promises; and the collection carries its own test suite, which Insomnia's CLI (inso)
runs against a live server. Its event ids are made fresh on every send (template tags), so both hold when the
collection runs again against the same server."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import ServerFactory
from tests.tools import require_tool

COLLECTION = Path(__file__).parent.parent / "insomnia-collection.json"
SUITE = "Contract"
SUB_ENVIRONMENT = "Local"

EXPECTED_STATUS = {
    "GET /health": 200,
    "GET /ready": 200,
    "POST /events - New Event": 202,
    "POST /events - Duplicate Event": 409,
    "POST /events - Event 2": 202,
    "POST /events - Event 3": 202,
    "POST /events - Missing event_id": 400,
    "POST /events - Invalid JSON": 400,
    "GET /events/{event_id} - Status": 200,
    "GET /events - List": 200,
    "POST /events/{event_id}/replay - Replay": 409,
    "POST /events/batch - Batch": 200,
}


def _resources(kind: str) -> list[dict[str, Any]]:
    document = json.loads(COLLECTION.read_text())
    assert document["_type"] == "export"
    assert document["__export_format"] == 4
    return [resource for resource in document["resources"] if resource["_type"] == kind]


def test_base_environment_points_at_the_default_address() -> None:
    [base] = [env for env in _resources("environment") if env["parentId"].startswith("wrk_")]
    assert base["data"]["base_url"] == "http://127.0.0.1:8080"


def test_collection_has_the_seed_requests_and_the_new_ones_by_name() -> None:
    assert [request["name"] for request in _resources("request")] == list(EXPECTED_STATUS)


_TAG = re.compile(r"\{\{ _\.base_url \}\}|\{% uuid 'v4' %\}|\{% response 'body', '(\w+)', '\$\.(\w+)', [^%]*%\}")


def render(text: str, base_url: str, last_bodies: dict[str, Any]) -> str:
    """``text`` with the template tags the collection uses rendered as Insomnia renders them: the base URL,
    a fresh v4 UUID, and a field of the last response body of another request."""

    def value(match: re.Match[str]) -> str:
        if match.group(0).startswith("{{"):
            return base_url
        if match.group(1) is None:
            return str(uuid.uuid4())
        return str(last_bodies[match.group(1)][match.group(2)])

    return _TAG.sub(value, text)


def test_every_request_gets_its_promised_status_from_a_real_server_run_after_run(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=0)
    last_bodies: dict[str, Any] = {}
    for _run in range(2):
        for request in _resources("request"):
            url = render(request["url"], server.url, last_bodies)
            headers = {header["name"]: header["value"] for header in request["headers"]}
            body = render(request["body"].get("text", ""), server.url, last_bodies).encode() or None
            response = server.client.request(request["method"], url, content=body, headers=headers)
            assert response.status_code == EXPECTED_STATUS[request["name"]], (request["name"], response.text)
            last_bodies[request["_id"]] = response.json()


def test_every_event_id_the_collection_stores_is_made_per_send() -> None:
    for request in _resources("request"):
        if EXPECTED_STATUS[request["name"]] == 400:
            continue  # refused, so never stored: a fixed id cannot collide
        for event_id in re.findall(r'"event_id": "([^"]*)"', request["body"].get("text", "")):
            assert "{%" in event_id, (request["name"], event_id)
        if "/events/" in request["url"] and not request["url"].endswith("/events/batch"):  # an event's URL
            assert "{% response" in request["url"], request["name"]


def test_the_suite_checks_every_requests_promised_status() -> None:
    [suite] = [suite for suite in _resources("unit_test_suite") if suite["name"] == SUITE]
    assert suite["parentId"] == "wrk_eventctl"
    tests = [test for test in _resources("unit_test") if test["parentId"] == suite["_id"]]
    names = {request["_id"]: request["name"] for request in _resources("request")}
    assert [names[test["requestId"]] for test in tests] == list(EXPECTED_STATUS), "one test per request, in order"
    for test in tests:
        assert "const response = await insomnia.send();" in test["code"], test["name"]
        checked = re.findall(r"expect\(response\.status\)\.to\.equal\((\d+)\)", test["code"])
        assert checked == [str(EXPECTED_STATUS[names[test["requestId"]]])], test["name"]


def test_inso_runs_the_collections_suite_green_twice_against_one_server(servers: ServerFactory, tmp_path: Path) -> None:
    """The collection points at 127.0.0.1:8080; the test server has a free port, so inso gets a copy whose
    "Local" sub-environment overrides base_url with the live address (the requests stay as they are)."""
    inso = require_tool("inso", "npm ci, or .ci/install-tools")
    server = servers.start(PROCESSING_DELAY_MS=0)
    document = json.loads(COLLECTION.read_text())
    [local] = [
        resource
        for resource in document["resources"]
        if resource["_type"] == "environment" and resource["name"] == SUB_ENVIRONMENT
    ]
    local["data"] = {"base_url": server.url}
    collection = tmp_path / COLLECTION.name
    collection.write_text(json.dumps(document))
    for _run in range(2):
        result = subprocess.run(
            [inso, "run", "test", SUITE, "--src", str(collection), "--env", SUB_ENVIRONMENT, "--ci"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{len(EXPECTED_STATUS)} passing" in result.stdout, result.stdout
