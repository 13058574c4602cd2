"""compose.yaml agrees with the code: three instances on 8081-8083 sharing the PostgreSQL service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from eventctl.settings import Settings

ROOT = Path(__file__).parent.parent


def test_compose_runs_three_instances_on_one_postgresql() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert "postgres" in services
    instances = {name: service for name, service in services.items() if name.startswith("eventctl-")}
    assert sorted(service["ports"][0] for service in instances.values()) == ["8081:8080", "8082:8080", "8083:8080"]
    for service in instances.values():
        settings = Settings.load(service["environment"])
        assert settings.database_url.startswith("postgresql://")
        assert "@postgres:5432/" in settings.database_url
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert float(service["stop_grace_period"].rstrip("s")) > settings.shutdown_timeout_s


def test_the_image_listens_where_compose_publishes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HOST=0.0.0.0" in dockerfile
    assert "PORT=8080" in dockerfile
    assert "USER 10001:10001" in dockerfile  # numeric, so that Kubernetes can verify runAsNonRoot
