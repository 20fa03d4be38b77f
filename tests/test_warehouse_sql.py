"""`tunelab sql` / `runs` / `export`: refusals enforced by DuckDB itself, output formats, Parquet export."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from tunelab.errors import UserError
from tunelab.warehouse import store
from tunelab.warehouse.commands import register
from tunelab.warehouse.usersql import run_user_sql

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_warehouse_queries import fill_demo_warehouse

    path = tmp_path_factory.mktemp("sqlwh") / "tunelab.duckdb"
    fill_demo_warehouse(path)
    return path


def refusals(tmp: Path) -> list[tuple[str, str]]:
    """(statement, what DuckDB itself answers when the parser pre-check is bypassed)."""
    return [
        ("INSERT INTO runs (run_id, kind, status) VALUES ('x', 'sft', 'running')", 'type "INSERT"'),
        ("UPDATE runs SET status = 'failed'", 'type "UPDATE"'),
        ("DELETE FROM runs", 'type "DELETE"'),
        ("CREATE TABLE t (a INTEGER)", 'type "CREATE"'),
        ("DROP TABLE runs", 'type "DROP"'),
        ("ALTER TABLE runs ADD COLUMN z INTEGER", 'type "ALTER"'),
        ("SELECT 1; DELETE FROM runs", 'type "DELETE"'),
        (f"ATTACH '{tmp}/other.duckdb' AS other", "file system operations are disabled"),
        (f"COPY runs TO '{tmp}/leak.csv'", "file system operations are disabled"),
        (f"EXPORT DATABASE '{tmp}/dump'", "file system operations are disabled"),
        ("INSTALL httpfs", "file system operations are disabled"),
        ("LOAD httpfs", "Loading external extensions is disabled"),
        ("SET enable_external_access = true", "the configuration has been locked"),
        ("SET lock_configuration = false", "the configuration has been locked"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_text('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM glob('/etc/*')", "file system operations are disabled"),
    ]


def test_duckdb_itself_refuses_every_write_and_file_access(db: Path, tmp_path: Path) -> None:
    before = store.query(db, "SELECT count(*) AS n FROM runs")["n"][0]
    for sql, duckdb_says in refusals(tmp_path):
        with pytest.raises(UserError) as caught:
            run_user_sql(db, sql, precheck=False)
        message = str(caught.value)
        assert duckdb_says in message, (sql, message)
        assert "\n" not in message
    assert store.query(db, "SELECT count(*) AS n FROM runs")["n"][0] == before
    assert list(tmp_path.iterdir()) == []  # no COPY, ATTACH or EXPORT file appeared


def test_precheck_gives_a_friendly_line_for_non_reads(db: Path, tmp_path: Path) -> None:
    for sql, _ in refusals(tmp_path):
        with pytest.raises(UserError, match="^sql: refused") as caught:
            run_user_sql(db, sql)
        assert "\n" not in str(caught.value)
    # DuckDB would allow a temporary table on a read-only file; the pre-check does not
    with pytest.raises(UserError, match="refused CREATE statement"):
        run_user_sql(db, "CREATE TEMP TABLE t AS SELECT 1")
    with pytest.raises(UserError, match="^sql: Parser Error"):
        run_user_sql(db, "SELEC 1")
    with pytest.raises(UserError, match="^sql: Catalog Error: Table with name nope does not exist"):
        run_user_sql(db, "SELECT * FROM nope")


def test_reads_of_every_kind_are_allowed(db: Path) -> None:
    assert "runs" in run_user_sql(db, "SHOW TABLES")["name"].to_list()
    assert "run_id" in run_user_sql(db, "DESCRIBE runs")["column_name"].to_list()
    assert run_user_sql(db, "FROM runs SELECT run_id ORDER BY 1")["run_id"].to_list() == [
        "run-dpo-1",
        "run-sft-1",
    ]
    assert run_user_sql(db, "WITH x AS (SELECT 2 AS v) SELECT v FROM x")["v"].to_list() == [2]
    assert run_user_sql(db, "EXPLAIN SELECT * FROM runs").height >= 1


def test_cli_refusal_is_one_line_and_exit_2(db: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", "from tunelab.cli import main; main()", "sql",
         "SELECT * FROM read_csv('/etc/passwd')", "--warehouse", str(db)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        'error: sql: refused: Permission Error: Cannot access file "/etc/passwd" - file system operations '
        "are disabled by configuration"
    ]
    assert "root:" not in out.stdout


def invoke(args: list[str]) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_sql_formats(db: Path, tmp_path: Path) -> None:
    sql = "SELECT run_id, kind, 0.5 AS half FROM runs ORDER BY run_id"
    code, text = invoke(["sql", sql, "--warehouse", str(db), "--format", "csv"])
    assert code == 0
    assert list(csv.reader(io.StringIO(text))) == [
        ["run_id", "kind", "half"],
        ["run-dpo-1", "dpo", "0.5"],
        ["run-sft-1", "sft", "0.5"],
    ]
    code, text = invoke(["sql", sql, "--warehouse", str(db), "--format", "json"])
    assert json.loads(text) == [
        {"run_id": "run-dpo-1", "kind": "dpo", "half": 0.5},
        {"run_id": "run-sft-1", "kind": "sft", "half": 0.5},
    ]
    code, text = invoke(["sql", sql, "--warehouse", str(db)])
    assert "run-dpo-1" in text and "(2 rows)" in text
    out = tmp_path / "r.json"
    code, text = invoke(["sql", "SELECT context FROM samples LIMIT 0", "--warehouse", str(db), "--out", str(out),
                         "--format", "json"])  # fmt: skip
    assert json.loads(out.read_text()) == []
    lineage = tmp_path / "l.csv"
    invoke(["sql", "SELECT sample_id, scores FROM v_lineage WHERE model = 'sft' ORDER BY sample_id LIMIT 1",
            "--warehouse", str(db), "--format", "csv", "--out", str(lineage)])  # fmt: skip
    assert pl.read_csv(lineage)["sample_id"].to_list() == ["demo-persona:1"]
    # --format is a typed choice: click refuses other values (one line on stderr through tunelab.cli.main)
    code, _ = invoke(["sql", sql, "--warehouse", str(db), "--format", "xml"])
    assert code == 2


def test_query_from_stdin(db: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app,
        ["sql", "-", "--warehouse", str(db), "--format", "csv"],
        input="-- a comment first\nSELECT 7 AS n\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["n", "7"]


def test_workspace_option_finds_the_default_file(db: Path) -> None:
    code, text = invoke(
        ["sql", "SELECT count(*) AS n FROM runs", "--workspace", str(db.parent), "--format", "csv"]
    )
    assert text.splitlines() == ["n", "2"]
    with pytest.raises(UserError, match="no warehouse here yet"):
        invoke(["sql", "SELECT 1", "--workspace", str(db.parent / "missing")])


def test_runs_lists_lineage(db: Path) -> None:
    code, text = invoke(["runs", "--warehouse", str(db), "--format", "json"])
    runs = {r["run_id"]: r for r in json.loads(text)}
    assert runs["run-sft-1"]["data_version"] == "dv-persona-aaaa"
    assert runs["run-sft-1"]["final_loss"] == pytest.approx(1.0) and runs["run-sft-1"]["steps"] == 5
    assert runs["run-dpo-1"]["parent_run_id"] == "run-sft-1" and runs["run-dpo-1"]["dataset"] == "demo-prefs"
    code, text = invoke(["runs", "--warehouse", str(db)])
    assert code == 0 and "run-sft-1" in text and "dv-persona-aaaa" in text


def test_export_writes_every_table_to_parquet(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "it's here"  # a quote in the path must not break the COPY statement
    code, text = invoke(["export", str(out), "--warehouse", str(db)])
    assert code == 0
    tables = set(store.query(db, "SELECT table_name FROM duckdb_tables()")["table_name"])
    assert {p.stem for p in out.glob("*.parquet")} == tables
    for table in tables:
        expected = store.query(db, f"SELECT count(*) AS n FROM {table}")["n"][0]
        assert pl.read_parquet(out / f"{table}.parquet").height == expected, table
    samples = pl.read_parquet(out / "samples.parquet")
    assert samples.filter(pl.col("sample_id") == "demo-persona:12")["prompt"].to_list() == [
        "질문 5: 테토 성격을 설명해 줘"
    ]


def test_interval_and_union_results_come_back_as_text(db: Path) -> None:
    frame = run_user_sql(db, "SELECT INTERVAL 90 SECOND AS took, union_value(k := 1) AS u, 2 AS n")
    assert frame.rows() == [("00:01:30", "1", 2)]
    assert store.query(db, "SELECT INTERVAL 1 DAY AS d")["d"].to_list() == ["1 day"]


def test_unwritable_outputs_are_one_line_errors(db: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(UserError, match="a-file: cannot create the export folder"):
        invoke(["export", str(blocker), "--warehouse", str(db)])
    with pytest.raises(UserError, match=r"x\.csv: cannot write: No such file or directory"):
        invoke(
            [
                "sql",
                "SELECT 1",
                "--warehouse",
                str(db),
                "--format",
                "csv",
                "--out",
                str(tmp_path / "no" / "x.csv"),
            ]
        )


def test_several_statements_are_refused_rather_than_half_shown(db: Path) -> None:
    with pytest.raises(UserError, match="2 statements given; run one query at a time"):
        run_user_sql(db, "SELECT 1; SELECT 2")
    assert run_user_sql(db, "SELECT 1 AS one;")["one"].to_list() == [1]  # a trailing ';' is one statement
