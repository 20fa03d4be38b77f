"""Reading a predictions JSONL for `tunelab score`: validated line by line, one-line errors naming file:line:field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.errors import UserError
from tunelab.evaluate.generate import PREDICTION_COLUMNS

# written next to PREDICTION_COLUMNS by `tunelab evaluate`, so a re-score uses the same scoring inputs
SCORING_COLUMNS = {
    "curation_id": pl.Utf8,
    "embedding_model": pl.Utf8,
    "rouge_tokenizer": pl.Utf8,
    "metrics": pl.Utf8,  # the metrics that were asked for, comma-separated
    "eval_set": pl.Utf8,  # the eval set's own name, kept by a re-score
}


REQUIRED_FILE_COLUMNS = ("prompt", "reference", "prediction", "model")


def read_predictions_file(path: Path) -> pl.DataFrame:
    """A predictions JSONL -> PREDICTION_COLUMNS (+ scoring columns when present); bad rows -> UserError."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    rows: list[dict[str, Any]] = []
    seen_per_model: dict[str, int] = {}
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                # utf-8-sig: a file saved by Windows tools opens with a BOM, which is not part of the JSON
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{path}:{line_no}: invalid UTF-8 at byte {exc.start}; save the file as UTF-8"
                    " (a CP949/EUC-KR file: iconv -f cp949 -t utf-8)"
                ) from None
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise UserError(f"{path}:{line_no}: each line must be a JSON object")
            for field in REQUIRED_FILE_COLUMNS:
                if field not in record:
                    raise UserError(f"{path}:{line_no}: {field}: missing")
                if not isinstance(record[field], str):
                    raise UserError(
                        f"{path}:{line_no}: {field}: must be a string, got {type(record[field]).__name__}"
                    )
            if not record["model"].strip():
                # a nameless model is a blank column in the table and can't be picked as a baseline
                raise UserError(f"{path}:{line_no}: model: empty; name the model that wrote the prediction")
            _normalise_optional_fields(record, f"{path}:{line_no}")
            # without ids, the n-th row of each model is sample n: one model's rows pair with another's
            nth = seen_per_model.get(record["model"], 0)
            seen_per_model[record["model"]] = nth + 1
            record["sample_id"] = record.get("sample_id") or f"{path.stem}:{nth}"
            rows.append(record)
    if not rows:
        raise UserError(f"{path}: no predictions")
    columns = {**PREDICTION_COLUMNS, **SCORING_COLUMNS}
    frame = pl.DataFrame([{name: row.get(name) for name in columns} for row in rows], schema=columns)
    dupes = frame.group_by("model", "sample_id").len().filter(pl.col("len") > 1)
    if dupes.height:
        first = dupes.row(0, named=True)
        raise UserError(
            f"{path}: sample_id: '{first['sample_id']}' appears twice for model '{first['model']}'"
        )
    return frame


def _normalise_optional_fields(record: dict[str, Any], where: str) -> None:
    """Optional columns in place: integer ids/labels become text, gen_params objects become JSON."""
    for field in ("sample_id", "label", "run_id", *SCORING_COLUMNS):
        value = record.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and field in ("sample_id", "label"):
            record[field] = str(value)
        elif value is not None and not isinstance(value, str):
            raise UserError(f"{where}: {field}: must be a string, got {type(value).__name__}")
    latency = record.get("latency_s")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise UserError(f"{where}: latency_s: must be a number, got {type(latency).__name__}")
    params = record.get("gen_params")
    if isinstance(params, dict):
        record["gen_params"] = json.dumps(params, sort_keys=True)
    elif params is not None and not isinstance(params, str):
        raise UserError(
            f"{where}: gen_params: must be an object or a JSON string, got {type(params).__name__}"
        )
