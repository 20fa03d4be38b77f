"""Schema creation, the version table, and migrating a file written by an older tunelab."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tunelab.errors import UserError
from tunelab.warehouse import store
from tunelab.warehouse.connection import SCHEMA_VERSION, write_connection

TABLES = {
    "schema_version", "datasets", "curations", "samples", "decisions", "quarantine", "runs", "train_log",
    "evals", "predictions", "scores", "eval_metrics", "eval_deltas", "reviews", "signals", "judgments",
    "pair_reviews", "threshold_marks",
}  # fmt: skip
VIEWS = {"v_drop_reasons", "v_run_compare", "v_lineage"}


def columns(db: Path) -> list[tuple[str, str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()


def make_fresh(db: Path) -> None:
    with write_connection(db):
        pass


def make_version_1(db: Path) -> None:
    """A file as tunelab's schema version 1 wrote it: no `reviews`, no `runs.metrics`, one run in it."""
    make_fresh(db)
    con = duckdb.connect(str(db))
    try:
        con.execute("DROP TABLE reviews")
        con.execute("ALTER TABLE runs DROP COLUMN note")  # version 7
        con.execute("ALTER TABLE runs DROP COLUMN metrics")
        for table in ("signals", "judgments", "pair_reviews", "threshold_marks"):  # version 7
            con.execute(f"DROP TABLE {table}")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (1, now())")
        con.execute(
            "INSERT INTO runs (run_id, kind, status, base_model) VALUES ('old-run', 'sft', 'finished', 'm')"
        )
    finally:
        con.close()


def test_fresh_file_has_every_table_view_and_the_version(tmp_path: Path) -> None:
    db = tmp_path / "tunelab.duckdb"
    make_fresh(db)
    tables = set(store.query(db, "SELECT table_name FROM duckdb_tables()")["table_name"])
    views = set(store.query(db, "SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"])
    assert tables == TABLES and views >= VIEWS
    assert store.query(db, "SELECT version FROM schema_version")["version"].to_list() == [SCHEMA_VERSION]


def test_version_1_file_is_migrated_by_a_reader(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.duckdb", tmp_path / "fresh.duckdb"
    make_version_1(old)
    make_fresh(fresh)
    assert ("runs", "metrics", "VARCHAR") not in columns(old)
    # a read (what `tunelab sql` and the dashboard do first) upgrades the file
    run = store.get_run(old, "old-run")
    assert run is not None and run["base_model"] == "m" and run["metrics"] is None
    assert columns(old) == columns(fresh)
    versions = store.query(old, "SELECT version FROM schema_version ORDER BY version")["version"].to_list()
    assert versions == [1, SCHEMA_VERSION]
    assert store.query(old, "SELECT count(*) AS n FROM reviews")["n"][0] == 0  # the table exists now


def test_version_1_file_is_migrated_by_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    make_version_1(db)
    store.finish_run(db, "old-run", "finished", metrics={"train_loss": 0.5})
    assert store.get_run(db, "old-run")["metrics"] == '{"train_loss": 0.5}'
    assert store.query(db, "SELECT count(*) AS n FROM v_lineage")["n"][0] == 0


def test_newer_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    make_fresh(db)
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_version VALUES (99, now())")
    con.close()
    with pytest.raises(UserError, match="schema version 99 is newer"):
        store.start_run(db, {"run_id": "r", "kind": "sft"})


def test_reading_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no warehouse here yet"):
        store.query(tmp_path / "nope.duckdb", "SELECT 1")
    assert store.get_run(tmp_path / "nope.duckdb", "r") is None
    assert store.latest_curation(tmp_path / "nope.duckdb", "d") is None
    assert not (tmp_path / "nope.duckdb").exists()


def test_a_file_that_is_not_duckdb_is_a_user_error(tmp_path: Path) -> None:
    bogus = tmp_path / "tunelab.duckdb"
    bogus.write_text("sample_id,prompt\n1,hello\n")
    with pytest.raises(UserError, match="cannot open the warehouse: .*not a valid DuckDB database file"):
        store.query(bogus, "SELECT 1")
    with pytest.raises(UserError, match="cannot open the warehouse"):
        store.start_run(bogus, {"run_id": "r", "kind": "sft"})
