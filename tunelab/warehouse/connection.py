"""Short-lived DuckDB connections to the warehouse file: lock retries, schema creation and migration.

A DuckDB file is opened read-write by one process at a time, and while a writer holds it no other
process can open it even read-only (and vice versa). So nobody keeps a connection: a writer opens,
runs one transaction, closes; a reader opens read-only, fetches, closes; both retry on the lock error
with exponential backoff plus jitter until a total timeout.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl

from tunelab.errors import UserError

T = TypeVar("T")

SCHEMA_VERSION = 7

# Steps that bring a file written by an older tunelab up to date, keyed by the version they produce.
# Version 1 had no `reviews` table and no `runs.metrics` column.
MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS metrics VARCHAR",
        """CREATE TABLE IF NOT EXISTS reviews (
               eval_id VARCHAR NOT NULL, model VARCHAR NOT NULL, sample_id VARCHAR NOT NULL,
               rating INTEGER NOT NULL, comment VARCHAR, created_at TIMESTAMP)""",
    ],
    # version 2 did not record who reviewed
    3: ["ALTER TABLE reviews ADD COLUMN IF NOT EXISTS reviewer VARCHAR"],
    # version 3 kept only the row index, not the record's own id
    4: ["ALTER TABLE samples ADD COLUMN IF NOT EXISTS source_id VARCHAR"],
    # version 4 stored corpus metrics without their uncertainty, and no deltas
    5: [
        *(
            f"ALTER TABLE eval_metrics ADD COLUMN IF NOT EXISTS {column}"
            for column in ("ci_low DOUBLE", "ci_high DOUBLE", "n INTEGER", "method VARCHAR", "seed INTEGER")
        ),
        """CREATE TABLE IF NOT EXISTS eval_deltas (
               eval_id VARCHAR NOT NULL, model VARCHAR NOT NULL, baseline VARCHAR NOT NULL,
               metric VARCHAR NOT NULL, delta DOUBLE, ci_low DOUBLE, ci_high DOUBLE, p_value DOUBLE,
               n INTEGER, delta_pct DOUBLE, significant BOOLEAN, method VARCHAR, seed INTEGER)""",
    ],
    # version 5 had no columns for conversations: their turns never reached the warehouse
    6: [
        "ALTER TABLE samples ADD COLUMN IF NOT EXISTS messages STRUCT(role VARCHAR, content VARCHAR)[]",
        "ALTER TABLE samples ADD COLUMN IF NOT EXISTS history STRUCT(role VARCHAR, content VARCHAR)[]",
    ],
    # version 6 had no notes on runs, no curation signals, no judge verdicts, no blind pairwise reviews and
    # no near-duplicate threshold marks
    7: [
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS note VARCHAR",
        """CREATE TABLE IF NOT EXISTS signals (
               curation_id VARCHAR NOT NULL, sample_id VARCHAR NOT NULL, stage VARCHAR NOT NULL,
               field VARCHAR, signal VARCHAR NOT NULL, value DOUBLE)""",
        """CREATE TABLE IF NOT EXISTS judgments (
               eval_id VARCHAR NOT NULL, sample_id VARCHAR NOT NULL, model VARCHAR NOT NULL, opponent VARCHAR,
               mode VARCHAR NOT NULL, score DOUBLE, verdict VARCHAR, consistent BOOLEAN, reason VARCHAR,
               judge VARCHAR, signature VARCHAR, created_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS pair_reviews (
               eval_id VARCHAR NOT NULL, sample_id VARCHAR NOT NULL, model_a VARCHAR NOT NULL,
               model_b VARCHAR NOT NULL, left_model VARCHAR, winner VARCHAR NOT NULL, reviewer VARCHAR,
               comment VARCHAR, created_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS threshold_marks (
               curation_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, sample_id VARCHAR NOT NULL,
               ref_sample_id VARCHAR NOT NULL, similarity DOUBLE, is_duplicate BOOLEAN NOT NULL,
               reviewer VARCHAR, created_at TIMESTAMP)""",
    ],
}

# Reads run user SQL (tunelab sql, the dashboard): no file system, and the setting cannot be undone.
READ_CONFIG = {"enable_external_access": False, "lock_configuration": True}

DEFAULT_LOCK_TIMEOUT_S = 30.0


class WarehouseBusyError(UserError):
    """Another process kept the warehouse locked for longer than the lock timeout."""


def lock_timeout_s() -> float:
    """Seconds to wait for another process's lock: $TUNELAB_LOCK_TIMEOUT, else 30."""
    text = os.environ.get("TUNELAB_LOCK_TIMEOUT")
    if text is None or not text.strip():
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise UserError(f"TUNELAB_LOCK_TIMEOUT: {text!r} is not a number of seconds (e.g. 30)")
    return value


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _is_lock_conflict(exc: Exception) -> bool:
    message = str(exc)
    if isinstance(exc, duckdb.IOException):
        return "Could not set lock" in message or "Conflicting lock" in message
    # same process, another thread holds the file with the other mode (read-only vs read-write), or is
    # attaching it at this very moment
    if isinstance(exc, duckdb.ConnectionException):
        return "different configuration" in message
    return "Unique file handle conflict" in message or "is already attached by database" in message


def with_lock_retry(db: Path, open_once: Callable[[], T], timeout_s: float | None = None) -> T:
    """Call `open_once` until it stops failing on the file lock; backoff 5 ms doubling to 50 ms, jittered."""
    timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            return open_once()
        except duckdb.Error as exc:
            if not _is_lock_conflict(exc):  # not a DuckDB file, no permission, disk full, ...
                raise UserError(f"{db}: cannot open the warehouse: {str(exc).splitlines()[0]}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseBusyError(
                    f"{db}: warehouse is locked by another process for more than {timeout_s:g} s "
                    "(a long ingest, or a program holding it open); retry later"
                ) from None
            time.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 2, 0.05)


@contextmanager
def write_connection(db: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on a fresh read-write connection: committed on success, rolled back on error."""
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    con = with_lock_retry(db, lambda: duckdb.connect(str(db)))
    try:
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        con.close()


@contextmanager
def read_connection(db: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh read-only connection with external access disabled; migrates an older file first."""
    db = Path(db)
    if not db.exists():
        raise UserError(f"{db}: no warehouse here yet (run `tunelab curate` first, or pass --warehouse FILE)")
    con = with_lock_retry(db, lambda: duckdb.connect(str(db), read_only=True, config=dict(READ_CONFIG)))
    if schema_version(con) < SCHEMA_VERSION or views_missing(con):
        # read-only connections cannot migrate: upgrade once through a write connection, then reopen
        con.close()
        with write_connection(db):
            pass
        con = with_lock_retry(db, lambda: duckdb.connect(str(db), read_only=True, config=dict(READ_CONFIG)))
    try:
        yield con
    finally:
        con.close()


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    has_table = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version' AND schema_name = 'main'"
    ).fetchall()[0][0]
    if not has_table:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]


def _sql_file(name: str) -> str:
    return resources.files("tunelab.warehouse").joinpath(name).read_text(encoding="utf-8")


def views_missing(con: duckdb.DuckDBPyConnection) -> bool:
    """A view of views.sql the file lacks: a file written by a tunelab of the same schema version that had
    fewer views (views change without a migration, so they are checked by name on every open)."""
    wanted = set(re.findall(r"CREATE OR REPLACE VIEW\s+(\w+)", _sql_file("views.sql")))
    present = {
        row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    return not wanted <= present


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create a fresh file's schema, or apply the missing migration steps, in one transaction."""
    current = schema_version(con)
    if current == SCHEMA_VERSION:
        if views_missing(con):
            con.execute(_sql_file("views.sql"))
        return
    if current > SCHEMA_VERSION:
        raise UserError(
            f"warehouse schema version {current} is newer than this tunelab understands "
            f"({SCHEMA_VERSION}); upgrade tunelab"
        )
    con.execute("BEGIN TRANSACTION")
    try:
        if current == 0:
            con.execute(_sql_file("schema.sql"))
        else:
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    con.execute(statement)
        con.execute(_sql_file("views.sql"))
        con.execute("INSERT INTO schema_version VALUES (?, ?)", [SCHEMA_VERSION, utcnow()])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def relation_to_polars(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """`relation.pl()`, except that types polars can't import from Arrow (INTERVAL, UNION) come as text."""
    unsupported = [
        name
        for name, dtype in zip(relation.columns, relation.types, strict=True)
        if str(dtype).upper().startswith(("INTERVAL", "UNION"))
    ]
    if unsupported:
        quoted = ['"' + name.replace('"', '""') + '"' for name in unsupported]
        casts = ", ".join(f"CAST({q} AS VARCHAR) AS {q}" for q in quoted)
        relation = relation.project(f"* REPLACE ({casts})")
    return relation.pl()
