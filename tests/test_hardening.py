"""Issue 12's hardening cases that are not about SQL types or the dashboard (those have their own files)."""

from __future__ import annotations

import pytest

from tunelab.errors import UserError
from tunelab.recipe import parse_recipe


@pytest.mark.parametrize("name", ["../../../x", "a/b", "a\\b", ".hidden", "x/../../y", "tab\there"])
def test_dataset_names_cannot_leave_the_workspace(name: str) -> None:
    with pytest.raises(UserError, match=r"dataset\.name: .*must be a plain name"):
        parse_recipe({"dataset": {"path": "x.jsonl", "name": name}})


@pytest.mark.parametrize("name", ["demo-persona", "한국어_데이터", "v1.2"])
def test_plain_names_are_accepted(name: str) -> None:
    assert parse_recipe({"dataset": {"path": "x.jsonl", "name": name}}).dataset.name == name


def _cli(*args: str):
    from typer.testing import CliRunner

    from tunelab.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture
def workspace(tmp_path):
    from tunelab.warehouse.connection import write_connection

    ws = tmp_path / "ws"
    with write_connection(ws / "tunelab.duckdb"):
        pass
    (ws / "curations" / "c1").mkdir(parents=True)
    return ws


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("ws/tunelab.duckdb", "that is the warehouse itself"),
        ("ws/tunelab.duckdb.wal", "that is the warehouse itself"),
        ("ws/curations/c1/train.parquet", "inside the workspace's curations/ folder"),
        ("ws/runs/x.csv", "inside the workspace's runs/ folder"),
    ],
)
def test_sql_out_never_clobbers_the_warehouse_or_managed_files(workspace, out, message) -> None:
    before = (workspace / "tunelab.duckdb").read_bytes()
    target = workspace.parent / out
    result = _cli(
        "sql", "select 1 AS x", "--format", "csv", "-w", str(workspace), "--out", str(target), "--force"
    )
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert (workspace / "tunelab.duckdb").read_bytes() == before


def test_sql_out_refuses_an_existing_file_unless_forced(workspace) -> None:
    out = workspace.parent / "result.csv"
    out.write_text("keep me", encoding="utf-8")
    result = _cli("sql", "select 1 AS x", "--format", "csv", "-w", str(workspace), "--out", str(out))
    assert isinstance(result.exception, UserError) and "already exists; pass --force" in str(result.exception)
    assert out.read_text(encoding="utf-8") == "keep me"
    result = _cli(
        "sql", "select 1 AS x", "--format", "csv", "-w", str(workspace), "--out", str(out), "--force"
    )
    assert result.exit_code == 0 and out.read_text(encoding="utf-8") == "x\n1\n"


def test_export_refuses_managed_folders_and_existing_files(workspace) -> None:
    result = _cli("export", str(workspace / "runs"), "-w", str(workspace))
    assert isinstance(result.exception, UserError) and "runs/ folder" in str(result.exception)
    out = workspace.parent / "export"
    assert _cli("export", str(out), "-w", str(workspace)).exit_code == 0
    result = _cli("export", str(out), "-w", str(workspace))
    assert isinstance(result.exception, UserError) and "pass --force" in str(result.exception)
    assert _cli("export", str(out), "-w", str(workspace), "--force").exit_code == 0
