"""The SQL page's console: user SQL run read-only with a row cap, CSV export, and the example queries
(the ```sql blocks of docs/warehouse.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from tunelab.warehouse.usersql import run_user_sql

SQL_CONSOLE_ROW_LIMIT = 10_000


def console_query(db: Path, sql: str, limit: int = SQL_CONSOLE_ROW_LIMIT) -> tuple[pl.DataFrame, bool]:
    """Run user SQL read-only, at most `limit` rows (DuckDB applies the limit to the relation, so the
    query text is never edited: comments and `--` inside string literals stay as written).

    Returns the rows and whether they were cut at `limit`.
    """
    frame = run_user_sql(db, sql, limit=int(limit) + 1)
    return frame.head(limit), frame.height > limit


def to_csv(frame: pl.DataFrame) -> str:
    """CSV of a result; list/struct/map columns (CSV has no such thing) become JSON text."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if nested:
        frame = frame.with_columns(
            pl.col(name).map_elements(
                lambda v: json.dumps(
                    v.to_list() if isinstance(v, pl.Series) else v, ensure_ascii=False, default=str
                ),
                return_dtype=pl.Utf8,
            )
            for name in nested
        )
    return frame.write_csv()


_SQL_BLOCK = re.compile(r"```sql[ \t]*([\w-]*)[^\n]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def example_queries(readme: Path | None = None) -> list[tuple[str, str]]:
    """(title, sql) pairs: the ```sql blocks of docs/warehouse.md, else a built-in list.

    A block's title is the heading above it; a second block under the same heading is told apart by
    its name (```sql all_duplicates), else by its first `-- comment` line.
    """
    readme = readme or Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"
    found: list[tuple[str, str]] = []
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        for match in _SQL_BLOCK.finditer(text):
            name, sql = match.group(1), match.group(2).strip()
            comment = next(
                (ln.strip()[2:].strip() for ln in sql.splitlines() if ln.strip().startswith("--")), ""
            )
            headings = re.findall(r"^#+\s*(.+)$", text[: match.start()], re.MULTILINE)
            title = headings[-1].strip() if headings else comment or name.replace("_", " ") or "query"
            if any(title == seen for seen, _ in found):
                title = f"{title}: {comment or name.replace('_', ' ') or len(found) + 1}"
            found.append((title, sql))
    return found or list(BUILTIN_EXAMPLES)


BUILTIN_EXAMPLES = (
    (
        "Why rows were dropped, per curation",
        "SELECT curation_id, stage, reason, n, round(pct, 2) AS pct\nFROM v_drop_reasons\nORDER BY curation_id, n DESC;",
    ),
    (
        "Before/after metrics of every model",
        "SELECT eval_set, metric, model, round(value, 4) AS value, round(delta_pct, 1) AS delta_pct\n"
        "FROM v_run_compare\nORDER BY eval_set, metric, model;",
    ),
    (
        "Runs with their data version",
        "SELECT r.run_id, r.kind, r.status, r.parent_run_id, c.dataset, c.data_version\n"
        "FROM runs r LEFT JOIN curations c USING (curation_id)\nORDER BY r.started_at;",
    ),
    (
        "Near-duplicates with their representative",
        "SELECT d.sample_id, d.ref_sample_id, round(d.score, 3) AS similarity\nFROM decisions d\n"
        "WHERE d.reason LIKE 'near_dup%'\nORDER BY d.score DESC\nLIMIT 20;",
    ),
    (
        "Prompts where a tuned model got worse than base",
        "SELECT t.sample_id, t.model, t.metric, round(b.value, 3) AS base, round(t.value, 3) AS tuned\n"
        "FROM scores t JOIN scores b USING (eval_id, sample_id, metric)\n"
        "WHERE b.model = 'base' AND t.model <> 'base' AND t.value < b.value\nORDER BY t.value - b.value\nLIMIT 20;",
    ),
    (
        "Reviews so far",
        "SELECT eval_id, model, sample_id, rating, comment, created_at\nFROM reviews\nORDER BY created_at DESC;",
    ),
)
