"""The Insomnia collection is a true description of the API: sent in order to a real server, every request
gets the status its name promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import ServerFactory

COLLECTION = Path(__file__).parent.parent / "insomnia-collection.json"

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


def test_every_request_gets_its_promised_status_from_a_real_server(servers: ServerFactory) -> None:
    server = servers.start(PROCESSING_DELAY_MS=0)
    for request in _resources("request"):
        url = request["url"].replace("{{ _.base_url }}", server.url)
        headers = {header["name"]: header["value"] for header in request["headers"]}
        response = server.client.request(
            request["method"], url, content=request["body"].get("text", "").encode() or None, headers=headers
        )
        assert response.status_code == EXPECTED_STATUS[request["name"]], (request["name"], response.text)
