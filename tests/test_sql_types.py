"""Every DuckDB type prints through every output of `tunelab sql` and the dashboard console.

One query per logical type DuckDB lists in duckdb_types(): table, CSV and JSON must render it without a
crash, JSON must be valid JSON (no NaN), and values that polars would mangle (HUGEINT digits, DECIMAL(38),
TIMETZ offsets, infinite dates, BLOB bytes) must come out exactly as DuckDB writes them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import duckdb
import pytest

from tunelab.dashboards.console import console_query
from tunelab.errors import UserError
from tunelab.warehouse.connection import write_connection
from tunelab.warehouse.usersql import run_user_sql, write_result

# logical type -> (SQL literal, the text every format must show for it, or None to only require no crash)
VALUES: dict[str, tuple[str, str | None]] = {
    "ARRAY": ("[1, 2]::INTEGER[2]", None),
    "BIGINT": ("(-9223372036854775808)::BIGINT", "-9223372036854775808"),
    "BIGNUM": (
        "123456789012345678901234567890123456789012::BIGNUM",
        "123456789012345678901234567890123456789012",
    ),
    "BIT": ("'0101'::BIT", "0101"),
    "BLOB": ("'\\xAA\\xBB'::BLOB", "AABB"),
    "BOOLEAN": ("true", None),
    "DATE": ("'infinity'::DATE", "infinity"),
    "DECIMAL": (
        "12345678901234567890123456789.123456789::DECIMAL(38,9)",
        "12345678901234567890123456789.123456789",
    ),
    "DOUBLE": ("'-inf'::DOUBLE", "-infinity"),
    "ENUM": ("'x'::ENUM('x', 'y')", "x"),
    "FLOAT": ("'nan'::FLOAT", "nan"),
    "GEOMETRY": (None, None),  # type: ignore[dict-item]  # needs the spatial extension: not loadable here
    "HUGEINT": (
        "-170141183460469231731687303715884105727::HUGEINT",
        "-170141183460469231731687303715884105727",
    ),
    "INTEGER": ("42", "42"),
    "INTERVAL": ("INTERVAL 3 DAY", "3 days"),
    "LIST": ("[1::HUGEINT, 2]", None),
    "MAP": ("MAP {'k': 1}", None),
    "NULL": ("NULL", None),
    "SMALLINT": ("7::SMALLINT", "7"),
    "STRUCT": ("{'a': 1, 'b': 'ㄱ'}", None),
    "TIME": ("'12:34:56'::TIME", "12:34:56"),
    "TIME WITH TIME ZONE": ("'12:00:00+05:30'::TIMETZ", "12:00:00+05:30"),
    "TIMESTAMP": ("'-infinity'::TIMESTAMP", "-infinity"),
    "TIMESTAMP WITH TIME ZONE": ("'2020-01-01 00:00:00+00'::TIMESTAMPTZ", None),
    "TIMESTAMPTZ_NS": (None, None),  # type: ignore[dict-item]  # no literal syntax in this DuckDB
    "TIMESTAMP_MS": ("'2020-01-01 00:00:00.123'::TIMESTAMP_MS", None),
    "TIMESTAMP_NS": ("'2020-01-01 00:00:00.123456789'::TIMESTAMP_NS", None),
    "TIMESTAMP_S": ("'2020-01-01 00:00:00'::TIMESTAMP_S", None),
    "TIME_NS": (None, None),  # type: ignore[dict-item]  # no literal syntax in this DuckDB
    "TINYINT": ("-1::TINYINT", "-1"),
    "TUPLE": (None, None),  # type: ignore[dict-item]  # internal, not a result type
    "TYPE": (None, None),  # type: ignore[dict-item]  # internal, not a result type
    "UBIGINT": ("18446744073709551615::UBIGINT", "18446744073709551615"),
    "UHUGEINT": (
        "340282366920938463463374607431768211455::UHUGEINT",
        "340282366920938463463374607431768211455",
    ),
    "UINTEGER": ("4294967295::UINTEGER", "4294967295"),
    "UNION": ("union_value(num := 2)", "2"),
    "USMALLINT": ("65535::USMALLINT", "65535"),
    "UTINYINT": ("255::UTINYINT", "255"),
    "UUID": ("'5b7e59ce-bd56-4852-8d17-a0765d138c69'::UUID", "5b7e59ce-bd56-4852-8d17-a0765d138c69"),
    "VARCHAR": ("'한국어 -- not a comment'", "한국어 -- not a comment"),
    "VARIANT": ("1::VARIANT", "1"),
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqltypes") / "tunelab.duckdb"
    with write_connection(path):
        pass
    return path


def test_every_logical_type_is_covered() -> None:
    listed = {
        row[0]
        for row in duckdb.sql(
            "SELECT DISTINCT logical_type FROM duckdb_types() WHERE database_name = 'system'"
        ).fetchall()
    }
    assert listed <= set(VALUES), f"new DuckDB types to cover: {sorted(listed - set(VALUES))}"


def _rendered(frame, fmt: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        write_result(frame, fmt)
    return out.getvalue()


@pytest.mark.parametrize("type_name", [name for name, (sql, _) in VALUES.items() if sql is not None])
def test_type_prints_in_every_format(db: Path, type_name: str) -> None:
    literal, expected = VALUES[type_name]
    frame = run_user_sql(db, f"SELECT {literal} AS v")
    for fmt in ("table", "csv", "json"):
        text = _rendered(frame, fmt)
        if fmt == "json":
            rows = json.loads(text)  # strict JSON: NaN/Infinity would fail
            assert len(rows) == 1 and "v" in rows[0]
            if expected is not None:
                assert str(rows[0]["v"]).lower() in (expected, expected.lower()), (type_name, rows)
        elif expected is not None:
            assert expected in text.replace("\n", " "), (type_name, fmt, text)
    console_frame, _ = console_query(db, f"SELECT {literal} AS v")  # the dashboard's path
    assert console_frame.height == 1


def test_big_numbers_are_strings_in_json_not_rounded_floats(db: Path) -> None:
    frame = run_user_sql(
        db, "SELECT 170141183460469231731687303715884105727::HUGEINT AS h, 0.1::DECIMAL(38,30) d"
    )
    row = json.loads(_rendered(frame, "json"))[0]
    assert row == {"h": "170141183460469231731687303715884105727", "d": "0.100000000000000000000000000000"}


@pytest.mark.parametrize(
    "sql",
    [
        "PIVOT (SELECT 1 AS a, 'x' AS b) ON b USING sum(a)",
        "UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v",
        "DESCRIBE SELECT 1 AS a",
        "SUMMARIZE SELECT 1 AS a",
        "SHOW TABLES",
        "-- a leading comment\nFROM (SELECT 1 AS a)",
    ],
)
def test_read_only_statements_are_accepted(db: Path, sql: str) -> None:
    assert run_user_sql(db, sql).height >= 1


def test_writes_hidden_in_a_pivot_are_still_refused(db: Path) -> None:
    with pytest.raises(UserError):
        run_user_sql(db, "PIVOT (SELECT 1 AS a, 'x' AS b) ON b USING sum(a); DROP TABLE runs")


def test_dashboard_console_keeps_comment_like_lines_inside_strings(db: Path) -> None:
    frame, truncated = console_query(db, "SELECT 'first\n-- second' AS t -- trailing note\n;")
    assert frame["t"].to_list() == ["first\n-- second"] and not truncated
    frame, truncated = console_query(db, "SELECT * FROM range(10)", limit=3)
    assert frame.height == 3 and truncated


def test_bad_lock_timeout_is_one_line(db: Path) -> None:
    env = {**os.environ, "TUNELAB_LOCK_TIMEOUT": "abc"}
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "sql", "select 1", "--warehouse", str(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: TUNELAB_LOCK_TIMEOUT: 'abc' is not a number of seconds (e.g. 30)"
