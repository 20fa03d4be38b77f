"""The warehouse API other components call: every ingest is one transaction on a short-lived connection.

Frames go in with `INSERT ... SELECT` over the Polars frame (DuckDB scans its Arrow buffers), so a
200k-row curation is one statement, not 200k. Columns the frame lacks are written as NULL.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tunelab.errors import UserError
from tunelab.warehouse.connection import read_connection, relation_to_polars, utcnow, write_connection

__all__ = [
    "add_pair_review",
    "add_review",
    "finish_run",
    "get_curation",
    "get_run",
    "ingest_curation",
    "ingest_eval",
    "latest_curation",
    "log_train",
    "query",
    "start_run",
]

CURATION_KEYS = (
    "curation_id", "dataset", "dataset_path", "kind", "data_version", "recipe", "created_at",
    "read", "kept", "dropped", "quarantined", "report", "out_dir",
)  # fmt: skip
RUN_KEYS = (
    "run_id", "kind", "status", "curation_id", "parent_run_id", "base_model", "base_revision",
    "recipe", "git_sha", "adapter_path", "output_dir", "started_at", "note",
)  # fmt: skip
TRAIN_LOG_COLUMNS = (
    "step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm", "rewards_chosen",
    "rewards_rejected", "rewards_margins", "rewards_accuracies", "logps_chosen", "logps_rejected",
)  # fmt: skip
EVAL_KEYS = ("eval_id", "eval_set", "curation_id", "created_at", "params")
JSON_KEYS = {"recipe", "report", "params", "metrics", "gen_params", "extra", "field_types"}

# Columns a caller's frame must carry (others of the table are optional and default to NULL).
REQUIRED = {
    "samples": ("sample_id",),
    "decisions": ("sample_id", "stage", "kept"),
    "quarantine": (),
    "predictions": ("model", "sample_id"),
    "scores": ("model", "sample_id", "metric", "value"),
    "eval_metrics": ("model", "metric", "value"),
    "eval_deltas": ("model", "baseline", "metric", "delta"),
    "judgments": ("sample_id", "model", "mode"),
}


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _timestamp(value: Any) -> datetime:
    """ISO text (with or without a zone) or a datetime, stored as naive UTC; None means now."""
    if value is None:
        return utcnow()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _path_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _row_values(record: dict[str, Any], keys: tuple[str, ...], what: str) -> list[Any]:
    unknown = sorted(set(record) - set(keys))
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown}; expected some of {list(keys)}")
    values = []
    for key in keys:
        value = record.get(key)
        if key in JSON_KEYS:
            value = _json_text(value)
        elif key.endswith("_at"):
            value = _timestamp(value)
        elif isinstance(value, Path):
            value = _path_text(value)
        elif hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()  # numpy / polars scalars: DuckDB binds Python numbers
        values.append(value)
    return values


_COLUMNS: dict[str, list[tuple[str, str]]] = {}


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """Column names and types, cached: every file is migrated to the same columns before a write."""
    if table not in _COLUMNS:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        _COLUMNS[table] = [(name, dtype) for name, dtype in rows]
    return _COLUMNS[table]


def _insert_frame(
    con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, constants: dict[str, Any]
) -> None:
    """INSERT every row of `frame` into `table`; `constants` fill columns the frame must not disagree on."""
    missing = [c for c in REQUIRED.get(table, ()) if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} frame lacks required columns {missing}; it has {frame.columns}")
    for name, value in constants.items():
        if name in frame.columns:
            others = frame.filter(pl.col(name) != value).height
            if others:
                raise ValueError(f"{table} frame: {others} rows have {name} != {value!r}")
    if frame.height == 0:
        return
    # JSON-ish object columns arrive as dicts from some callers: store them as JSON text
    for name in JSON_KEYS & set(frame.columns):
        if frame.schema[name] != pl.Utf8:
            frame = frame.with_columns(
                pl.col(name).map_elements(_json_text, return_dtype=pl.Utf8, skip_nulls=True)
            )
    con.register("incoming_frame", frame)
    try:
        columns = _table_columns(con, table)
        select = []
        for name, dtype in columns:
            if name in constants:
                select.append(f"CAST(? AS {dtype})")
            elif name in frame.columns:
                select.append(f'CAST("{name}" AS {dtype})')
            else:
                select.append(f"CAST(NULL AS {dtype})")
        params = [constants[name] for name, _ in columns if name in constants]
        con.execute(f"INSERT INTO {table} SELECT {', '.join(select)} FROM incoming_frame", params)
    finally:
        con.unregister("incoming_frame")


def _exists(con: duckdb.DuckDBPyConnection, table: str, key: str, value: str) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM {table} WHERE {key} = ?", [value]).fetchall()[0][0])


def _refuse_or_clear(
    con: duckdb.DuckDBPyConnection,
    db: Path,
    what: str,
    key: str,
    value: str,
    tables: tuple[str, ...],
    replace: bool,
) -> None:
    if not _exists(con, tables[0], key, value):
        return
    if not replace:
        raise UserError(
            f"{db}: {what} {value!r} is already in the warehouse (pass replace=True to overwrite it)"
        )
    for table in tables:
        con.execute(f"DELETE FROM {table} WHERE {key} = ?", [value])


def ingest_curation(
    db: Path,
    curation: dict[str, Any],
    samples: pl.DataFrame | str,
    decisions: pl.DataFrame | str,
    quarantine: pl.DataFrame,
    signals: pl.DataFrame | str | None = None,
    replace: bool = False,
    memory_limit: str | None = None,
) -> None:
    """Write one curation (its row, every sample, every decision, the quarantine, what the signal stages
    measured) in one transaction. `samples` (every read row, the largest table) may be a glob of Parquet
    shards, which DuckDB reads itself (the Ray executor writes them from its workers); so may `decisions`
    and `signals` (the Ray executor's workers write them as shards too; a signals glob must match files).

    `memory_limit` (e.g. "1GB"): DuckDB's limit for this connection; past it DuckDB writes to disk instead
    of holding the transaction's rows (measured: 1M samples rows of ~1 KB, peak RSS 1.73 GiB by default,
    0.58 GiB at 512MB, 1.5x the time). The streaming executor sets it so the ingest stays bounded."""
    curation_id = curation.get("curation_id")
    if not curation_id or not curation.get("dataset"):
        raise ValueError("curation: curation_id and dataset are required")
    if memory_limit is not None and not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)", memory_limit):
        raise ValueError(f"memory_limit: {memory_limit!r} is not a size like 1GB")
    values = _row_values(curation, CURATION_KEYS, "curation")
    created_at = values[CURATION_KEYS.index("created_at")]
    with write_connection(db) as con:
        if memory_limit is not None:
            con.execute(f"SET memory_limit = '{memory_limit}'")  # checked above: digits and a unit
        _refuse_or_clear(
            con, Path(db), "curation", "curation_id", curation_id,
            ("curations", "samples", "decisions", "quarantine", "signals"), replace,
        )  # fmt: skip
        placeholders = ", ".join("?" * len(CURATION_KEYS))
        columns = ", ".join(f'"{k}"' for k in CURATION_KEYS)
        con.execute(f"INSERT INTO curations ({columns}) VALUES ({placeholders})", values)
        if isinstance(samples, str):
            _insert_parquet(con, "samples", samples, {"curation_id": curation_id})
        else:
            _insert_frame(con, "samples", samples, {"curation_id": curation_id})
        if isinstance(decisions, str):
            _insert_parquet(con, "decisions", decisions, {"curation_id": curation_id})
        else:
            _insert_frame(con, "decisions", decisions, {"curation_id": curation_id})
        _insert_frame(con, "quarantine", quarantine, {"curation_id": curation_id})
        if isinstance(signals, str):
            _insert_parquet(con, "signals", signals, {"curation_id": curation_id})
        elif signals is not None and signals.height:
            _insert_frame(con, "signals", signals, {"curation_id": curation_id})
        dataset = curation.get("dataset")
        if not _exists(con, "datasets", "name", dataset):
            con.execute("INSERT INTO datasets (name, first_seen_at) VALUES (?, ?)", [dataset, created_at])
        con.execute(
            "UPDATE datasets SET kind = ?, path = ?, last_curation_id = ?, last_curated_at = ? WHERE name = ?",
            [curation.get("kind"), _path_text(curation.get("dataset_path")), curation_id, created_at, dataset],
        )  # fmt: skip


def _insert_parquet(
    con: duckdb.DuckDBPyConnection, table: str, files: str, constants: dict[str, Any]
) -> None:
    """INSERT every row of the Parquet files `files` (a glob) into `table`, DuckDB reading them itself (no
    frame in this process); columns cast as _insert_frame casts them."""
    described = con.execute("DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)", [files])
    found = {row[0] for row in described.fetchall()}
    missing = [c for c in REQUIRED.get(table, ()) if c not in found]
    if missing:
        raise ValueError(f"{table} files {files} lack required columns {missing}; they have {sorted(found)}")
    select, params = [], []
    for name, dtype in _table_columns(con, table):
        if name in constants:
            select.append(f"CAST(? AS {dtype})")
            params.append(constants[name])
        elif name in found:
            select.append(f'CAST("{name}" AS {dtype})')
        else:
            select.append(f"CAST(NULL AS {dtype})")
    con.execute(
        f"INSERT INTO {table} SELECT {', '.join(select)} FROM read_parquet(?, union_by_name = true)",
        [*params, files],
    )


def start_run(db: Path, run: dict[str, Any]) -> None:
    """Record a training run as it starts (status 'running' unless given)."""
    run = {"status": "running", **run}
    if not run.get("run_id") or run.get("kind") not in ("sft", "dpo"):
        raise ValueError(
            f"run: needs run_id and kind 'sft'|'dpo', got {run.get('run_id')!r}, {run.get('kind')!r}"
        )
    values = _row_values(run, RUN_KEYS, "run")
    with write_connection(db) as con:
        if _exists(con, "runs", "run_id", run["run_id"]):
            raise UserError(f"{db}: run {run['run_id']!r} is already in the warehouse")
        columns = ", ".join(RUN_KEYS)
        con.execute(f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' * len(RUN_KEYS))})", values)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def log_train(db: Path, run_id: str, rows: list[dict[str, Any]]) -> None:
    """Append a batch of trainer log rows; keys that are not columns go into `extra` as JSON."""
    if not rows:
        return
    now = utcnow()
    records = []
    for row in rows:
        extra = dict(
            json.loads(row["extra"]) if isinstance(row.get("extra"), str) else row.get("extra") or {}
        )
        extra.update({k: v for k, v in row.items() if k not in TRAIN_LOG_COLUMNS and k != "extra"})
        record: dict[str, Any] = {k: _number(row.get(k)) for k in TRAIN_LOG_COLUMNS}
        record["step"] = None if row.get("step") is None else int(row["step"])
        record["extra"] = _json_text(extra) if extra else None
        record["logged_at"] = now
        records.append(record)
    frame = pl.DataFrame(
        records,
        schema={**{k: pl.Float64 for k in TRAIN_LOG_COLUMNS}, "step": pl.Int64, "extra": pl.Utf8,
                "logged_at": pl.Datetime("us")},
    )  # fmt: skip
    with write_connection(db) as con:
        if not _exists(con, "runs", "run_id", run_id):
            raise ValueError(f"log_train: run {run_id!r} was never started (call start_run first)")
        _insert_frame(con, "train_log", frame, {"run_id": run_id})


def finish_run(
    db: Path,
    run_id: str,
    status: str,
    error: str | None = None,
    metrics: dict[str, Any] | None = None,
    adapter_path: str | None = None,
) -> None:
    """Close a run: status 'finished' or 'failed', the error, final metrics, where the adapter went."""
    if status not in ("finished", "failed"):
        raise ValueError(f"finish_run: status must be 'finished' or 'failed', got {status!r}")
    with write_connection(db) as con:
        if not _exists(con, "runs", "run_id", run_id):
            raise ValueError(f"finish_run: run {run_id!r} was never started")
        con.execute(
            "UPDATE runs SET status = ?, error = ?, metrics = coalesce(?, metrics), "
            "adapter_path = coalesce(?, adapter_path), finished_at = ? WHERE run_id = ?",
            [
                status,
                error,
                _json_text(metrics),
                None if adapter_path is None else str(adapter_path),
                utcnow(),
                run_id,
            ],
        )


def reopen_run(db: Path, run_id: str) -> None:
    """Mark an interrupted run as running again while it resumes from its checkpoint."""
    with write_connection(db) as con:
        if not _exists(con, "runs", "run_id", run_id):
            raise ValueError(f"reopen_run: run {run_id!r} was never started")
        con.execute(
            "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL WHERE run_id = ?", [run_id]
        )


def ingest_eval(
    db: Path,
    eval: dict[str, Any],
    predictions: pl.DataFrame,
    scores: pl.DataFrame,
    metrics: pl.DataFrame,
    replace: bool = False,
    deltas: pl.DataFrame | None = None,
    judgments: pl.DataFrame | None = None,
) -> None:
    """Write one evaluation (its row, every prediction, per-sample scores, corpus metrics with their
    intervals, the deltas between models, an LLM judge's verdicts) in one transaction."""
    eval_id = eval.get("eval_id")
    if not eval_id:
        raise ValueError("eval: eval_id is required")
    values = _row_values(eval, EVAL_KEYS, "eval")
    with write_connection(db) as con:
        # reviews are people's work: they survive a replaced eval
        _refuse_or_clear(
            con,
            Path(db),
            "eval",
            "eval_id",
            eval_id,
            ("evals", "predictions", "scores", "eval_metrics", "eval_deltas", "judgments"),
            replace,
        )
        con.execute(f"INSERT INTO evals ({', '.join(EVAL_KEYS)}) VALUES (?, ?, ?, ?, ?)", values)
        _insert_frame(con, "predictions", predictions, {"eval_id": eval_id})
        _insert_frame(con, "scores", scores, {"eval_id": eval_id})
        _insert_frame(con, "eval_metrics", metrics, {"eval_id": eval_id})
        if deltas is not None:
            _insert_frame(con, "eval_deltas", deltas, {"eval_id": eval_id})
        if judgments is not None:
            _insert_frame(con, "judgments", judgments, {"eval_id": eval_id})


# a review comment is a sentence or two; a cap keeps a pasted document (or a hostile client) out of the file
MAX_REVIEW_COMMENT_CHARS = 2000


def default_reviewer() -> str:
    """$TUNELAB_REVIEWER, else the operating-system user."""
    name = os.environ.get("TUNELAB_REVIEWER", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def add_review(
    db: Path,
    eval_id: str,
    model: str,
    sample_id: str,
    rating: int,
    comment: str | None,
    reviewer: str | None = None,
) -> None:
    """A person's thumbs up (+1) or down (-1) on one prediction that exists in the warehouse."""
    if rating not in (1, -1):
        raise UserError(f"review: rating must be +1 or -1, got {rating!r}")
    if comment is not None and len(comment) > MAX_REVIEW_COMMENT_CHARS:
        raise UserError(
            f"review: the comment has {len(comment):,} characters; at most {MAX_REVIEW_COMMENT_CHARS:,}"
        )
    reviewer = (reviewer or "").strip() or default_reviewer()
    with write_connection(db) as con:
        found = con.execute(
            "SELECT count(*) FROM predictions WHERE eval_id = ? AND model = ? AND sample_id = ?",
            [eval_id, model, sample_id],
        ).fetchall()[0][0]
        if not found:
            raise UserError(
                f"review: no prediction of model '{model}' for sample '{sample_id}' in evaluation '{eval_id}'"
            )
        con.execute(
            "INSERT INTO reviews (eval_id, model, sample_id, rating, comment, created_at, reviewer) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [eval_id, model, sample_id, rating, comment, utcnow(), reviewer[:200]],
        )


# what a blind A/B rater may answer besides one of the two model names
TIE = "tie"


def add_pair_review(
    db: Path,
    eval_id: str,
    sample_id: str,
    left_model: str,
    right_model: str,
    winner: str,
    comment: str | None = None,
    reviewer: str | None = None,
) -> None:
    """A person's blind choice between two models' answers to one prompt: `winner` is one of the two model
    names or 'tie'. The pair is stored in sorted order (model_a < model_b) so ratings of the same pair shown
    either way round group together; `left_model` keeps which answer the reviewer saw on the left."""
    if left_model == right_model:
        raise UserError(f"pair review: the two models must differ, got '{left_model}' twice")
    if TIE in (left_model, right_model):
        raise UserError(f"pair review: a model named '{TIE}' can't be told apart from a tie")
    if winner not in (left_model, right_model, TIE):
        raise UserError(
            f"pair review: winner must be '{left_model}', '{right_model}' or '{TIE}', got {winner!r}"
        )
    if comment is not None and len(comment) > MAX_REVIEW_COMMENT_CHARS:
        raise UserError(
            f"pair review: the comment has {len(comment):,} characters; at most {MAX_REVIEW_COMMENT_CHARS:,}"
        )
    reviewer = (reviewer or "").strip() or default_reviewer()
    model_a, model_b = sorted((left_model, right_model))
    with write_connection(db) as con:
        found = {
            row[0]
            for row in con.execute(
                "SELECT DISTINCT model FROM predictions WHERE eval_id = ? AND sample_id = ? AND model IN (?, ?)",
                [eval_id, sample_id, model_a, model_b],
            ).fetchall()
        }
        missing = [m for m in (model_a, model_b) if m not in found]
        if missing:
            raise UserError(
                f"pair review: no prediction of model '{missing[0]}' for sample '{sample_id}' "
                f"in evaluation '{eval_id}'"
            )
        con.execute(
            "INSERT INTO pair_reviews (eval_id, sample_id, model_a, model_b, left_model, winner, reviewer, "
            "comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [eval_id, sample_id, model_a, model_b, left_model, winner, reviewer[:200], comment, utcnow()],
        )


def query(db: Path, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
    """Run one read-only query (external access disabled) and return its rows as a Polars frame."""
    with read_connection(db) as con:
        relation = con.sql(sql, params=params)
        return pl.DataFrame() if relation is None else relation_to_polars(relation)


def _one(db: Path, sql: str, params: list[Any]) -> dict[str, Any] | None:
    if not Path(db).exists():
        return None
    rows = query(db, sql, params).to_dicts()
    return rows[0] if rows else None


def get_run(db: Path, run_id: str) -> dict[str, Any] | None:
    return _one(db, "SELECT * FROM runs WHERE run_id = ?", [run_id])


def get_curation(db: Path, curation_id: str) -> dict[str, Any] | None:
    return _one(db, "SELECT * FROM curations WHERE curation_id = ?", [curation_id])


def latest_curation(db: Path, dataset_name: str) -> str | None:
    """The id of the newest curation of a dataset, or None when it was never curated."""
    row = _one(
        db,
        "SELECT curation_id FROM curations WHERE dataset = ? ORDER BY created_at DESC NULLS LAST LIMIT 1",
        [dataset_name],
    )
    return None if row is None else row["curation_id"]


def latest_finished_run(db: Path, kind: str, dataset_name: str) -> str | None:
    """The newest finished run of `kind` trained on a curation of `dataset_name`."""
    rows = query(
        db,
        "select r.run_id from runs r join curations c on c.curation_id = r.curation_id "
        "where r.kind = ? and r.status = 'finished' and c.dataset = ? order by r.started_at desc limit 1",
        [kind, dataset_name],
    )
    return rows["run_id"][0] if rows.height else None


def logged_steps(db: Path, run_id: str) -> set[int]:
    """Steps of a run already in train_log (a resumed run must not log them twice)."""
    rows = query(db, "select distinct step from train_log where run_id = ? and step is not null", [run_id])
    return set(rows["step"].to_list()) if rows.height else set()


def curation_folders(db: Path) -> list[dict[str, Any]]:
    """Every curation the warehouse knows, with the folder it was written to."""
    return query(db, "SELECT curation_id, out_dir FROM curations ORDER BY created_at").to_dicts()


def runs_overview(db: Path) -> list[dict[str, Any]]:
    """Every run with its status and the folders it wrote (for `tunelab doctor`)."""
    return query(
        db, "SELECT run_id, kind, status, output_dir, adapter_path FROM runs ORDER BY started_at"
    ).to_dicts()


# ---------------------------------------------------------------- comparing two curations (`tunelab diff`)

# the text of a sample of any kind, turns of a conversation as "role: content" lines; NULL fields skipped
_TURNS_SQL = "array_to_string(list_transform({col}, lambda t: t.role || ': ' || t.content), chr(10))"
SAMPLE_TEXT_SQL = (
    "concat_ws(chr(10), system, "
    + _TURNS_SQL.format(col="history")
    + ", prompt, response, chosen, rejected, instruction, array_to_string(context, chr(10)), question, "
    "answer, cot, text, " + _TURNS_SQL.format(col="messages") + ")"
)


def find_curations(db: Path, text: str) -> list[str]:
    """The curation ids equal to `text`, else those starting with it (a unique prefix names one)."""
    exact = query(db, "SELECT curation_id FROM curations WHERE curation_id = ?", [text])
    if exact.height:
        return exact["curation_id"].to_list()
    found = query(
        db,
        "SELECT curation_id FROM curations WHERE starts_with(curation_id, ?) ORDER BY curation_id LIMIT 10",
        [text],
    )
    return found["curation_id"].to_list()


def curation_outcomes(db: Path, curation_id: str) -> pl.DataFrame:
    """One row per sample the curation read (oversampled copies left out): its id, source row, content hash,
    `outcome` kept | dropped, the dropping decision's stage, reason and evidence (null when kept), the split
    of a kept row, and `notes`: the kept=true decisions with a reason (normalized, masked ...) as stage:reason."""
    return query(
        db,
        """WITH s AS (
               SELECT sample_id, source_row, content_hash FROM samples
               WHERE curation_id = $cid AND NOT contains(sample_id, '#dup')
           ), dropped AS (
               SELECT sample_id, arg_min(stage, rowid) AS stage, arg_min(reason, rowid) AS reason,
                      arg_min(evidence, rowid) AS evidence
               FROM decisions WHERE curation_id = $cid AND NOT kept GROUP BY sample_id
           ), finals AS (
               SELECT sample_id, any_value(evidence) AS split FROM decisions
               WHERE curation_id = $cid AND stage = 'final' GROUP BY sample_id
           ), notes AS (
               SELECT sample_id, string_agg(stage || ':' || reason, ', ' ORDER BY rowid) AS notes
               FROM decisions
               WHERE curation_id = $cid AND kept AND stage <> 'final' AND reason IS NOT NULL
               GROUP BY sample_id
           )
           SELECT s.sample_id, s.source_row, s.content_hash,
                  CASE WHEN dropped.sample_id IS NULL THEN 'kept' ELSE 'dropped' END AS outcome,
                  dropped.stage, dropped.reason, dropped.evidence,
                  replace(finals.split, 'split=', '') AS split, notes.notes
           FROM s LEFT JOIN dropped USING (sample_id) LEFT JOIN finals USING (sample_id)
                  LEFT JOIN notes USING (sample_id)
           ORDER BY s.source_row, s.sample_id""",
        {"cid": curation_id},
    )


def curation_reason_counts(db: Path, curation_id: str) -> pl.DataFrame:
    """Rows per (stage, reason, kept) of one curation: every drop, and every kept row a stage annotated
    (normalized, masked, oversampled); the terminal `final` decisions are left out."""
    return query(
        db,
        """SELECT stage, reason, kept, count(*) AS n FROM decisions
           WHERE curation_id = $cid AND stage <> 'final' AND (NOT kept OR reason IS NOT NULL)
           GROUP BY ALL ORDER BY n DESC, stage, reason""",
        {"cid": curation_id},
    )


def sample_texts(db: Path, curation_id: str, sample_ids: list[str]) -> pl.DataFrame:
    """(sample_id, text) of the given samples of one curation: every text field joined by newlines."""
    return query(
        db,
        f"""SELECT sample_id, {SAMPLE_TEXT_SQL} AS text FROM samples
            WHERE curation_id = $cid AND list_contains($ids, sample_id)""",
        {"cid": curation_id, "ids": sample_ids},
    )


# ---------------------------------------------------------------- threshold marks (the Thresholds page)

THRESHOLD_STAGES = ("minhash", "semantic")


def add_threshold_mark(
    db: Path,
    curation_id: str,
    stage: str,
    sample_id: str,
    ref_sample_id: str,
    similarity: float,
    is_duplicate: bool,
    reviewer: str | None = None,
) -> None:
    """A person's verdict on one candidate near-duplicate pair of a curation: duplicate or not.

    Both samples must be rows of that curation and the similarity the stage's own number (a Jaccard in
    [0, 1], a cosine in [-1, 1]); a pair marked again keeps every mark, and readers take the newest
    (v_threshold_precision)."""
    if stage not in THRESHOLD_STAGES:
        raise UserError(f"threshold mark: stage must be one of {', '.join(THRESHOLD_STAGES)}, got {stage!r}")
    if not isinstance(is_duplicate, bool):
        raise UserError(f"threshold mark: is_duplicate must be true or false, got {is_duplicate!r}")
    try:
        value = float(similarity)
    except (TypeError, ValueError):
        raise UserError(f"threshold mark: similarity must be a number, got {similarity!r}") from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0 or (stage == "minhash" and value < 0):
        raise UserError(f"threshold mark: similarity {similarity!r} is outside the {stage} range")
    if not sample_id or not ref_sample_id or sample_id == ref_sample_id:
        raise UserError("threshold mark: a pair needs two different sample ids")
    reviewer = (reviewer or "").strip() or default_reviewer()
    with write_connection(db) as con:  # (a file lacking a view of views.sql gets it on open)
        found = con.execute(
            "SELECT count(DISTINCT sample_id) FROM samples WHERE curation_id = ? AND sample_id IN (?, ?)",
            [curation_id, sample_id, ref_sample_id],
        ).fetchall()[0][0]
        if found != 2:
            raise UserError(
                f"threshold mark: '{sample_id}' and '{ref_sample_id}' are not both samples of curation "
                f"'{curation_id}'"
            )
        con.execute(
            "INSERT INTO threshold_marks (curation_id, stage, sample_id, ref_sample_id, similarity, "
            "is_duplicate, reviewer, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [curation_id, stage, sample_id, ref_sample_id, value, is_duplicate, reviewer[:200], utcnow()],
        )


def threshold_marks(db: Path, curation_id: str, stage: str) -> pl.DataFrame:
    """The newest mark of every marked pair of one curation and stage (one row per pair)."""
    return query(
        db,
        """SELECT sample_id, ref_sample_id, similarity, is_duplicate, reviewer, created_at
           FROM threshold_marks WHERE curation_id = $cid AND stage = $stage
           QUALIFY row_number() OVER (PARTITION BY sample_id, ref_sample_id
                                      ORDER BY created_at DESC, rowid DESC) = 1
           ORDER BY similarity, sample_id, ref_sample_id""",
        {"cid": curation_id, "stage": stage},
    )


def threshold_precision(db: Path, curation_id: str, stage: str) -> pl.DataFrame:
    """Per similarity band: marked pairs, those marked duplicate, precision and its 95 % Wilson interval."""
    try:
        return query(
            db,
            """SELECT band_low, band_high, n, duplicates, precision, ci_low, ci_high
               FROM v_threshold_precision WHERE curation_id = $cid AND stage = $stage ORDER BY band_low""",
            {"cid": curation_id, "stage": stage},
        )
    except duckdb.CatalogException:
        # a version-7 file made before the view existed, and never marked (the first mark creates the view)
        return pl.DataFrame(
            schema={"band_low": pl.Float64, "band_high": pl.Float64, "n": pl.Int64, "duplicates": pl.Int64,
                    "precision": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}
        )  # fmt: skip


def curation_samples(db: Path, curation_id: str, sample_ids: list[str] | None = None) -> pl.DataFrame:
    """Every column of the samples of one curation (all of them, or the given ids), in source order."""
    return query(
        db,
        """SELECT * EXCLUDE (curation_id) FROM samples
           WHERE curation_id = $cid AND ($ids IS NULL OR list_contains($ids, sample_id))
           ORDER BY source_row, sample_id""",
        {"cid": curation_id, "ids": sample_ids},
    )
