"""The face of the CLI: --version, a help page for every command, JSON that scripts can parse, one-line
usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tunelab.cli import app, tunelab_version

ROOT = Path(__file__).resolve().parents[1]


def tunelab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def command_paths() -> list[list[str]]:
    """Every command and group under `tunelab`, as the words that name it."""
    found: list[list[str]] = []

    def walk(command, path: list[str]) -> None:
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_version() -> None:
    result = tunelab("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tunelab {tunelab_version()}\n"
    assert tunelab_version() != "unknown"  # the package is installed (pip install -e .)


def test_every_command_has_a_help_page() -> None:
    paths = command_paths()
    names = {" ".join(path) for path in paths}
    assert {
        "curate",
        "audit",
        "train sft",
        "train dpo",
        "evaluate",
        "score",
        "sql",
        "runs",
        "export",
    } <= names
    assert {"dashboard", "demo"} <= names
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], prog_name="tunelab")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: tunelab" in result.output, (path, result.output)


def test_shell_completion_is_offered() -> None:
    result = CliRunner().invoke(app, ["--help"], prog_name="tunelab")
    assert "--install-completion" in result.output and "--version" in result.output


@pytest.fixture
def empty_warehouse(tmp_path: Path) -> Path:
    from tunelab.warehouse.connection import write_connection
    from tunelab.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    with write_connection(workspace.warehouse):
        pass
    return workspace.root


@pytest.mark.parametrize("args", [["runs"], ["sql", "SELECT run_id, kind FROM runs"]], ids=["runs", "sql"])
def test_json_on_an_empty_warehouse_is_only_json(empty_warehouse: Path, args: list[str]) -> None:
    for workspace_flag in ("--workspace", "-w"):
        result = tunelab(*args, workspace_flag, str(empty_warehouse), "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == []


def test_bad_choice_is_a_one_line_error(empty_warehouse: Path) -> None:
    result = tunelab("runs", "-w", str(empty_warehouse), "--format", "xml")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tunelab runs:"), result.stderr
    assert "'xml' is not one of 'table', 'csv', 'json'" in lines[0]
    missing = tunelab("sql")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "Missing argument" in missing.stderr and "tunelab sql --help" in missing.stderr


def test_bare_command_shows_the_help() -> None:
    result = tunelab()
    assert result.returncode == 2 and "Usage: tunelab" in result.stdout + result.stderr
