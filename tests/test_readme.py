"""The README stays true: CI runs its test command, and its settings table matches the code."""

from __future__ import annotations

from pathlib import Path

from eventctl.settings import SETTINGS

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 ")]
    assert len(ci_lines) == 1
    assert f"\n{ci_lines[0]}\n" in README


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    for spec in SETTINGS:
        row = next((line for line in README.splitlines() if line.startswith(f"| `{spec.env}` |")), None)
        assert row is not None, f"{spec.env} is missing from the README's settings table"
        expected = "unset" if spec.default == "unset" else f"`{spec.default}`"
        assert expected in row, f"{spec.env}: the README's default disagrees with the code ({spec.default})"
