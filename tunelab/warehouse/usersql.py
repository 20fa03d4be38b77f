"""Running a user's SQL against the warehouse safely, and printing the result.

Safety comes from DuckDB itself: the connection is read-only, external access (files, ATTACH, COPY,
INSTALL/LOAD, read_csv of any path) is disabled and the configuration is locked so SET cannot undo it.
A parser-based pre-check on top turns the common cases into a friendlier one-line message and also
refuses temporary CREATEs, which DuckDB allows on a read-only file.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import duckdb
import polars as pl

from tunelab.errors import UserError
from tunelab.warehouse.connection import read_connection, relation_to_polars

READ_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}
FORMATS = ("table", "csv", "json")
TABLE_MAX_ROWS = 1000


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_read_only(sql: str) -> None:
    """Refuse anything but read statements, judged by DuckDB's own parser (not a regex)."""
    try:
        statements = duckdb.connect(":memory:").extract_statements(sql)
    except duckdb.Error as exc:
        raise UserError(f"sql: {_first_line(exc)}") from None
    if not statements:
        raise UserError("sql: empty query")
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_STATEMENTS:
            raise UserError(
                f"sql: refused {kind} statement: the warehouse is read-only here "
                "(only SELECT / WITH / FROM / SHOW / DESCRIBE / EXPLAIN queries)"
            )
    if len(statements) > 1:  # only the last result would be shown: say so rather than hide the others
        raise UserError(f"sql: {len(statements)} statements given; run one query at a time")


def run_user_sql(db: Path, sql: str, precheck: bool = True) -> pl.DataFrame:
    """The rows of a user's query; every DuckDB refusal or SQL error becomes a one-line UserError."""
    if precheck:
        check_read_only(sql)
    try:
        with read_connection(db) as con:
            relation = con.sql(sql)
            return pl.DataFrame() if relation is None else relation_to_polars(relation)
    except duckdb.PermissionException as exc:
        raise UserError(f"sql: refused: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        raise UserError(f"sql: {_first_line(exc)}") from None


def _plain(frame: pl.DataFrame) -> pl.DataFrame:
    """DECIMAL becomes DOUBLE (DuckDB literals like 0.71 are DECIMAL)."""
    return frame.with_columns(
        pl.col(name).cast(pl.Float64) for name, dtype in frame.schema.items() if dtype.is_decimal()
    )


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def to_csv(frame: pl.DataFrame) -> str:
    nested = [
        name for name, dtype in frame.schema.items() if dtype.is_nested() or str(dtype).startswith("Map")
    ]
    frame = frame.with_columns(
        pl.col(name).map_elements(_cell, return_dtype=pl.Utf8, skip_nulls=True) for name in nested
    )
    return frame.write_csv()


def to_json(frame: pl.DataFrame) -> str:
    return json.dumps(frame.to_dicts(), ensure_ascii=False, default=str, indent=1) + "\n"


def print_table(frame: pl.DataFrame, out: TextIO | None = None, title: str | None = None) -> None:
    """A rich table of the rows (first TABLE_MAX_ROWS), to stdout or to `out` at a fixed width."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in frame.columns:
        table.add_column(name, overflow="fold")
    for row in frame.head(TABLE_MAX_ROWS).iter_rows():
        table.add_row(*(_cell(value) for value in row))
    # piped output keeps whole rows instead of rich's 80-column fallback
    width = None if out is None and sys.stdout.isatty() else 240
    console = Console(file=out, width=width)
    console.print(table)
    if frame.height > TABLE_MAX_ROWS:
        console.print(f"… {frame.height - TABLE_MAX_ROWS} more rows (use --format csv or json for all)")
    console.print(f"({frame.height} row{'s' if frame.height != 1 else ''})")


def write_result(frame: pl.DataFrame, fmt: str, out: Path | None = None, title: str | None = None) -> None:
    """Write rows as a rich table, CSV or JSON to stdout, or to `out`."""
    if fmt not in FORMATS:
        raise UserError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    frame = _plain(frame)
    if fmt == "table":
        if out is None:
            print_table(frame, title=title)
            return
        try:
            with open(out, "w", encoding="utf-8") as handle:
                print_table(frame, handle, title=title)
        except OSError as exc:
            raise UserError(f"{out}: cannot write: {exc.strerror}") from None
        return
    text = to_csv(frame) if fmt == "csv" else to_json(frame)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{out}: cannot write: {exc.strerror}") from None
