"""Running a user's SQL against the warehouse safely, and printing the result.

Safety comes from DuckDB itself: the connection is read-only, external access (files, ATTACH, COPY,
INSTALL/LOAD, read_csv of any path) is disabled and the configuration is locked so SET cannot undo it.
A parser-based pre-check on top turns the common cases into a friendlier one-line message and also
refuses temporary CREATEs, which DuckDB allows on a read-only file.
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import duckdb
import polars as pl

from tunelab.errors import UserError
from tunelab.warehouse.connection import read_connection

DuckType = type(duckdb.sql("SELECT 1").types[0])  # DuckDBPyType: its module moved between DuckDB releases
READ_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}
# DuckDB parses a PIVOT without an IN list as MULTI (it first creates an enum of the pivoted values): a read
# statement all the same, and the read-only connection refuses anything else it might contain
_PIVOT = re.compile(r"^(\s*(--[^\n]*\n|/\*.*?\*/))*\s*pivot\b", re.IGNORECASE | re.DOTALL)
# types that polars reads from Arrow exactly and prints as the user expects; every other type is shown as
# DuckDB's own text for it (HUGEINT digits, DECIMAL(38), TIMETZ offsets, infinite dates, BIT, VARIANT ...)
_EXACT_TYPES = {
    "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
    "FLOAT", "DOUBLE", "VARCHAR",
}  # fmt: skip

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
        if kind == "MULTI" and len(statements) == 1 and _PIVOT.match(sql):
            continue
        if kind not in READ_STATEMENTS:
            raise UserError(
                f"sql: refused {kind} statement: the warehouse is read-only here "
                "(only SELECT / WITH / FROM / PIVOT / SHOW / DESCRIBE / SUMMARIZE / EXPLAIN queries)"
            )
    if len(statements) > 1:  # only the last result would be shown: say so rather than hide the others
        raise UserError(f"sql: {len(statements)} statements given; run one query at a time")


def _exact(dtype: DuckType) -> bool:
    """True when polars reads this type from Arrow exactly (nested types: when all their children are)."""
    kind = dtype.id.upper()
    if kind in ("LIST", "STRUCT", "MAP", "ARRAY"):
        return all(_exact(child) for _, child in dtype.children if isinstance(child, DuckType))
    return kind in _EXACT_TYPES


def _shown_as(dtype: DuckType) -> str | None:
    """How a result column of this DuckDB type is fetched: None (as is), or a SQL expression template."""
    kind = dtype.id.upper()
    if kind == "BLOB":
        return "hex({col})"
    if kind == "DECIMAL":
        precision = dict(dtype.children).get("precision", 38)
        # up to 15 digits a double holds the value exactly; beyond, digits would be lost: keep DuckDB's text
        return "CAST({col} AS DOUBLE)" if precision <= 15 else "CAST({col} AS VARCHAR)"
    return None if _exact(dtype) else "CAST({col} AS VARCHAR)"


def user_result(relation: duckdb.DuckDBPyRelation, limit: int | None = None) -> pl.DataFrame:
    """Every DuckDB type as something every output format can print without loss or crash."""
    replace = []
    for name, dtype in zip(relation.columns, relation.types, strict=True):
        template = _shown_as(dtype)
        if template is not None:
            quoted = '"' + name.replace('"', '""') + '"'
            replace.append(f"{template.format(col=quoted)} AS {quoted}")
    if replace:
        relation = relation.project(f"* REPLACE ({', '.join(replace)})")
    if limit is not None:
        relation = relation.limit(limit)
    return relation.pl()


def run_user_sql(db: Path, sql: str, precheck: bool = True, limit: int | None = None) -> pl.DataFrame:
    """The rows of a user's query (at most `limit`); every DuckDB refusal or SQL error is a one-line UserError."""
    if precheck:
        check_read_only(sql)
    try:
        with read_connection(db) as con:
            relation = con.sql(sql)
            return pl.DataFrame() if relation is None else user_result(relation, limit)
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
        return f"{value:.6g}" if math.isfinite(value) else _non_finite_text(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def to_csv(frame: pl.DataFrame) -> str:
    nested = [
        name for name, dtype in frame.schema.items() if dtype.is_nested() or str(dtype).startswith("Map")
    ]
    floats = [
        name
        for name, dtype in frame.schema.items()
        if dtype.is_float() and not frame[name].drop_nulls().is_finite().all()
    ]
    frame = frame.with_columns(
        pl.col(name).map_elements(_cell, return_dtype=pl.Utf8, skip_nulls=True) for name in nested + floats
    )
    return frame.write_csv()


def _non_finite_text(value: float) -> str:
    return "nan" if math.isnan(value) else ("infinity" if value > 0 else "-infinity")


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: those floats become the same words every format uses."""
    if isinstance(value, float) and not math.isfinite(value):
        return _non_finite_text(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def to_json(frame: pl.DataFrame) -> str:
    rows = [_json_safe(row) for row in frame.to_dicts()]
    return json.dumps(rows, ensure_ascii=False, default=str, indent=1, allow_nan=False) + "\n"


def print_table(frame: pl.DataFrame, out: TextIO | None = None, title: str | None = None) -> None:
    """A rich table of the rows (first TABLE_MAX_ROWS), to stdout or to `out` at a fixed width."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for name in frame.columns:
        table.add_column(name, overflow="fold")
    for row in frame.head(TABLE_MAX_ROWS).iter_rows():
        table.add_row(*(Text(_cell(value)) for value in row))  # warehouse text is data, not rich markup
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
