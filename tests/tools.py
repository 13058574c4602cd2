"""Third-party command-line tools the shipping tests run: found in the project's venv, its node_modules or on
PATH. Missing, a test is skipped with the reason, except under CI (``CI`` set), where it fails: CI installs
them all (``.ci/install-tools`` and the ``test`` extra)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).parent.parent


def require_tool(name: str, how_to_install: str) -> str:
    """The path of the ``name`` executable, or skip (fail under CI) saying how to install it."""
    for directory in (Path(sys.executable).parent, ROOT / "node_modules" / ".bin"):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is not None:
        return found
    unavailable(f"{name} is not installed ({how_to_install})")


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``; under CI, fail it instead, since CI must run every test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run this test")
    pytest.skip(reason)
