"""Settings: environment and options, defaults of the seed, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventctl.errors import ConfigError
from eventctl.settings import SETTINGS, Settings


def test_defaults_keep_the_seed_names_and_values() -> None:
    settings = Settings.load({})
    assert settings.port == 8080
    assert settings.env == "dev"
    assert settings.processing_delay_ms == 1000
    assert settings.host == "127.0.0.1"
    assert settings.database_url == "sqlite:///eventctl.db"
    assert settings.effective_log_format == "console"


def test_environment_is_read_and_options_override_it() -> None:
    settings = Settings.load({"PORT": "9000", "ENV": "prod", "API_KEYS": "k" * 16 + ":admin"}, {"port": "9100"})
    assert settings.port == 9100
    assert settings.env == "prod"
    assert settings.effective_log_format == "json"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("ENV", "production"),
        ("PROCESSING_DELAY_MS", "-1"),
        ("WORKER_CONCURRENCY", "0"),
        ("LEASE_SECONDS", "soon"),
        ("LOG_FORMAT", "xml"),
        ("MAX_BODY_BYTES", "1.5"),
    ],
)
def test_a_bad_value_raises_one_line_naming_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.load({env: value})
    message = str(raised.value)
    assert message.startswith(f"invalid {env}=")
    assert "\n" not in message


def test_backoff_cap_below_base_is_refused() -> None:
    with pytest.raises(ConfigError, match="RETRY_BACKOFF_MAX_MS"):
        Settings.load({"RETRY_BACKOFF_MS": "5000", "RETRY_BACKOFF_MAX_MS": "1000"})


def test_every_setting_is_a_serve_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventctl", "serve", "--help"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert result.returncode == 0
    for spec in SETTINGS:
        assert spec.option in result.stdout
        assert f"env: {spec.env}" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ([], {"PORT": "not-a-port"}, "PORT"),
        (["--port", "99999"], {}, "PORT"),
        ([], {"PORT": "0", "DATABASE_URL": "mysql://nope"}, "DATABASE_URL"),
        ([], {"PORT": "0", "DATABASE_URL": "sqlite:////no/such/directory/events.db"}, "DATABASE_URL"),
    ],
)
def test_serve_with_a_bad_value_stops_with_one_line_naming_it(
    args: list[str], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventctl", "serve", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if named in line]
    assert len(error_lines) == 1, result.stderr
