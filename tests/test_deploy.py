"""What we ship is checked by the tools its users' platforms use: hadolint reads the Dockerfile,
``kubernetes-validate --strict`` reads the manifests as ``kubectl kustomize`` renders them, and the manifests
agree with the code on probe paths, port and shutdown timing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Match

from eventctl.api import create_app
from eventctl.server import CONNECTION_CLOSE_SECONDS
from eventctl.settings import Settings
from tests.tools import require_tool

ROOT = Path(__file__).parent.parent
KUSTOMIZATION = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES_VERSION = "1.31.0"
PIP_TOOLS = "pip install -e '.[test]'"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> str:
    kubectl = require_tool("kubectl", PIP_TOOLS)
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def manifests(rendered: str) -> dict[str, Manifest]:
    documents = [document for document in yaml.safe_load_all(rendered) if document]
    by_kind = {document["kind"]: document for document in documents}
    assert len(by_kind) == len(documents), "one manifest of each kind"
    return by_kind


@pytest.fixture(scope="module")
def container(manifests: dict[str, Manifest]) -> Manifest:
    [container] = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    found: Manifest = container
    return found


@pytest.fixture(scope="module")
def configured(manifests: dict[str, Manifest]) -> Settings:
    """The settings the ConfigMap and the example Secret give a pod, parsed by the code itself (so a bad value,
    or prod without API keys, fails here)."""
    return Settings.load({**manifests["ConfigMap"]["data"], **manifests["Secret"]["stringData"]})


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = require_tool("hadolint", PIP_TOOLS)
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_strict_accepts_every_rendered_manifest(
    rendered: str, manifests: dict[str, Manifest], tmp_path: Path
) -> None:
    validate = require_tool("kubernetes-validate", PIP_TOOLS)
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered)
    result = subprocess.run(
        [validate, "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") + result.stderr.count(" passed for resource ") == len(manifests)
    assert set(manifests) == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


def test_probes_point_at_the_apps_health_and_ready_routes(container: Manifest) -> None:
    api = create_app(Settings()).api
    for path in ("/health", "/ready"):
        scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "root_path": "", "path_params": {}}
        assert any(route.matches(scope)[0] is Match.FULL for route in api.router.routes), f"no GET {path} route"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_container_port_is_the_default_port_everywhere(
    manifests: dict[str, Manifest], container: Manifest, configured: Settings
) -> None:
    [port] = container["ports"]
    assert port["containerPort"] == Settings().port == configured.port
    assert configured.host == "0.0.0.0"  # noqa: S104 - a pod must listen on its own address
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    [service_port] = manifests["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert f"EXPOSE {Settings().port}" in DOCKERFILE.read_text()


def test_grace_period_covers_the_pre_stop_pause_and_the_drain(
    manifests: dict[str, Manifest], container: Manifest, configured: Settings
) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert pause > 0, "the pause lets endpoints drop the pod before SIGTERM"
    assert configured.shutdown_timeout_s == Settings().shutdown_timeout_s
    assert pod["terminationGracePeriodSeconds"] > pause + configured.shutdown_timeout_s + CONNECTION_CLOSE_SECONDS


def test_the_images_stop_timeout_covers_the_drain() -> None:
    match = re.search(r'io\.eventctl\.stop-timeout="(\d+)"', DOCKERFILE.read_text())
    assert match is not None
    assert int(match.group(1)) >= Settings().shutdown_timeout_s + CONNECTION_CLOSE_SECONDS


def test_replicas_share_postgresql_from_the_secret(manifests: dict[str, Manifest], container: Manifest) -> None:
    assert manifests["Deployment"]["spec"]["replicas"] > 1
    assert manifests["HorizontalPodAutoscaler"]["spec"]["minReplicas"] > 1
    from_secret = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]
        for variable in container["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    secret = manifests["Secret"]
    assert set(from_secret) == {"DATABASE_URL", "API_KEYS"}
    for name, reference in from_secret.items():
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"], name
    assert not {"DATABASE_URL", "API_KEYS"} & set(manifests["ConfigMap"]["data"])
    database_url = Settings.load(secret["stringData"]).database_url
    assert database_url.startswith("postgresql://"), "a SQLite file belongs to one process"


def test_the_example_secret_holds_only_placeholders(manifests: dict[str, Manifest]) -> None:
    for name, value in manifests["Secret"]["stringData"].items():
        assert "CHANGE-ME" in value, f"{name} must be an obvious placeholder"


def test_the_pod_runs_non_root_on_a_read_only_root_filesystem(
    manifests: dict[str, Manifest], container: Manifest
) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"--uid {pod['securityContext']['runAsUser']} " in DOCKERFILE.read_text()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    writable = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in writable  # noqa: S108 - an emptyDir, the pod's own
    for resources in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][resources])


def test_disruption_budget_service_and_autoscaler_select_the_deployments_pods(
    manifests: dict[str, Manifest],
) -> None:
    deployment = manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector.items() <= labels.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(manifests["Service"]["spec"]["selector"])
    assert selects(manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
