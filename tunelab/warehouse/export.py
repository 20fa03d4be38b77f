"""Every warehouse table to Parquet, through DuckDB's COPY on a connection we control (never user SQL)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tunelab.errors import UserError
from tunelab.warehouse.connection import read_connection, with_lock_retry


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def export_tables(db: Path, out_dir: Path, force: bool = False) -> dict[str, int]:
    """Write DIR/<table>.parquet for each table; returns the row count written per table.

    Existing <table>.parquet files are replaced only with `force` (checked before anything is written)."""
    db = Path(db)
    with read_connection(db):  # a friendly error for a missing file, and migration of an old one
        pass
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the export folder: {exc.strerror}") from None
    # COPY ... TO needs file access, which the user-SQL connection forbids: a plain read-only one here
    con = with_lock_retry(db, lambda: duckdb.connect(str(db), read_only=True))
    try:
        tables = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name"
            ).fetchall()
        ]
        existing = [t for t in tables if (out_dir / f"{t}.parquet").exists()]
        if existing and not force:
            raise UserError(
                f"{out_dir / (existing[0] + '.parquet')}: already exists ({len(existing)} of the "
                f"{len(tables)} files would be replaced); pass --force to replace them"
            )
        written = {}
        for table in tables:
            target = (out_dir / f"{table}.parquet").resolve()
            try:
                con.execute(f'COPY "{table}" TO {_sql_string(str(target))} (FORMAT parquet)')
            except duckdb.IOException as exc:
                raise UserError(f"{target}: cannot write: {str(exc).splitlines()[0]}") from None
            written[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
        return written
    finally:
        con.close()
