"""The image is built and run, as users run it: built with podman from the Dockerfile without network
(from a wheelhouse, as in an air-gapped build) on a local Debian base, it answers ready from inside, processes
an event, keeps its SQLite file on the /data volume, and ``podman stop`` ends it with exit 0 within its stop
timeout.

No image registry is reachable in CI, so the base is a Debian root filesystem made with debootstrap and
imported into podman. It and podman's storage are cached under the system temp dir between runs
(``EVENTCTL_CONTAINER_CACHE`` overrides where).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventctl.settings import Settings
from tests.tools import require_tool, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).parent.parent
BASE_IMAGE = "localhost/eventctl-test-base:bookworm"
APT_TOOLS = "apt-get install podman buildah runc debootstrap, or .ci/install-tools"
STOP_TIMEOUT_LABEL = "io.eventctl.stop-timeout"
# The build context: what the Dockerfile copies (.dockerignore decides within it), plus the wheelhouse.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "eventctl")


@dataclass
class Podman:
    """podman with its own configuration and storage, so that it runs here without touching the host's."""

    executable: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.executable, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def exec(self, container: str, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.run("exec", container, *command, timeout=timeout, check=False)


def _cache_directory() -> Path:
    configured = os.environ.get("EVENTCTL_CONTAINER_CACHE")
    directory = Path(configured) if configured else Path(tempfile.gettempdir()) / "eventctl-container-tests"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _debian_mirror() -> str:
    """The Debian mirror apt uses here: debootstrap must reach the same one."""
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        text = path.read_text() if path.exists() else ""
        match = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.MULTILINE) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+bookworm\b", text, re.MULTILINE
        )
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="module")
def podman() -> Podman:
    executable = require_tool("podman", APT_TOOLS)
    cache = _cache_directory()
    # Here runc is the runtime that works, the default open-files limit is too high for the sandbox, and vfs is
    # the storage driver that needs no kernel overlay support.
    containers_conf = cache / "containers.conf"
    containers_conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n'
    )
    storage_conf = cache / "storage.conf"
    storage_conf.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{cache / "run"}"\ngraphroot = "{cache / "storage"}"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}
    return Podman(executable, env)


@pytest.fixture(scope="module")
def base_image(podman: Podman) -> str:
    """A Debian bookworm image with python3 and venv, made once with debootstrap and then kept."""
    if podman.run("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    debootstrap = require_tool("debootstrap", APT_TOOLS)
    workspace = Path(tempfile.mkdtemp(prefix="base-", dir=_cache_directory()))
    # debootstrap makes this directory itself: it becomes the image's "/", which must not keep mkdtemp's 0700.
    rootfs = workspace / "rootfs"
    try:
        command = [debootstrap, "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs)]
        result = subprocess.run(
            [*command, _debian_mirror()],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            unavailable(f"debootstrap could not make the base image:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        archive = workspace / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True, timeout=300)
        podman.run("import", str(archive), BASE_IMAGE, timeout=300)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image(podman: Podman, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image built from our Dockerfile with no network at all: every dependency comes from the wheelhouse."""
    context = tmp_path_factory.mktemp("context")
    for name in CONTEXT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    wheels = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(context / "wheels"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert wheels.returncode == 0, wheels.stderr
    tag = f"localhost/eventctl-test:{uuid.uuid4().hex[:12]}"
    podman.run(
        "build",
        "--format=docker",  # HEALTHCHECK and STOPSIGNAL are Docker image settings; OCI drops the first
        "--network=none",
        "--layers=false",
        f"--build-arg=BASE={base_image}",
        "--build-arg=WHEELS=wheels",
        f"--tag={tag}",
        str(context),
        timeout=900,
    )
    yield tag
    podman.run("rmi", "--force", tag, check=False)


@pytest.fixture
def volume(podman: Podman) -> Iterator[str]:
    name = f"eventctl-test-{uuid.uuid4().hex[:12]}"
    podman.run("volume", "create", name)
    yield name
    podman.run("volume", "rm", "--force", name, check=False)


@pytest.fixture
def containers(podman: Podman) -> Iterator[list[str]]:
    started: list[str] = []
    yield started
    for name in started:
        podman.run("rm", "--force", "--time=0", name, check=False)


def _start(podman: Podman, image: str, volume: str, containers: list[str], stop_timeout: int) -> str:
    name = f"eventctl-test-{uuid.uuid4().hex[:12]}"
    containers.append(name)
    podman.run(
        "run",
        "--detach",
        f"--name={name}",
        "--network=none",  # the checks run inside the container; nothing needs to reach it from outside
        f"--stop-timeout={stop_timeout}",
        f"--volume={volume}:/data",
        "--env=PROCESSING_DELAY_MS=2000",
        image,
    )
    deadline = time.monotonic() + 60
    while podman.exec(name, "eventctl", "ready").returncode != 0:
        if time.monotonic() > deadline:
            logs = podman.run("logs", name, check=False)
            pytest.fail(f"the container never became ready:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.5)
    return name


def _status(podman: Podman, container: str, event_id: str) -> str:
    result = podman.exec(container, "eventctl", "status", event_id, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status: str = json.loads(result.stdout)["status"]
    return status


def _stop_timeout(podman: Podman, image: str) -> int:
    [inspected] = json.loads(podman.run("image", "inspect", image).stdout)
    return int(inspected["Config"]["Labels"][STOP_TIMEOUT_LABEL])


def test_the_image_runs_non_root_with_its_healthcheck_and_sqlite_on_the_volume(
    podman: Podman, image: str, volume: str, containers: list[str]
) -> None:
    container = _start(podman, image, volume, containers, _stop_timeout(podman, image))
    assert podman.exec(container, "id", "-u").stdout.strip() == "10001"
    health = podman.run("healthcheck", "run", container, check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    assert podman.exec(container, "test", "-f", "/data/eventctl.db").returncode == 0


def test_the_image_processes_an_event_and_stops_with_exit_0_within_its_stop_timeout(
    podman: Podman, image: str, volume: str, containers: list[str]
) -> None:
    stop_timeout = _stop_timeout(podman, image)
    assert stop_timeout >= Settings().shutdown_timeout_s
    container = _start(podman, image, volume, containers, stop_timeout)

    sent = podman.exec(container, "eventctl", "send", "evt_container_1", "--payload", '{"n": 1}', "--wait")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert _status(podman, container, "evt_container_1") == "processed"

    # An event still in its handler (2 s) when the stop comes: the drain lets it finish before exit 0.
    sent = podman.exec(container, "eventctl", "send", "evt_container_2")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    started = time.monotonic()
    podman.run("stop", container, timeout=stop_timeout + 30)
    elapsed = time.monotonic() - started
    exit_code = podman.run("inspect", "--format={{.State.ExitCode}}", container).stdout.strip()
    logged = podman.run("logs", container)
    logs = logged.stdout + logged.stderr
    assert exit_code == "0", logs
    assert elapsed < stop_timeout, f"stopped after {elapsed:.1f}s, the stop timeout is {stop_timeout}s"
    assert "received SIGTERM: draining" in logs

    # The SQLite file is on the volume: a new container on it finds both events, the second one processed.
    again = _start(podman, image, volume, containers, stop_timeout)
    assert _status(podman, again, "evt_container_1") == "processed"
    assert _status(podman, again, "evt_container_2") == "processed"
