"""The canonical columns of each kind of record: what adapters produce, stages judge and training renders.

One place for the kinds, so adding one (its fields, which are required, what dedup compares, how a value is
checked) touches this file and the adapter that fills it.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from tunelab.records.config import Kind

CANONICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("system", "prompt", "response"),
    "dpo": ("prompt", "chosen", "rejected"),
    "raft": ("instruction", "context", "question", "answer", "cot"),
    "text": ("text",),
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt", "response"),
    "dpo": ("prompt", "chosen", "rejected"),
    "raft": ("context", "question", "answer"),
    "text": ("text",),
}
# what each kind deduplicates on: two rows are the same sample when these agree
CONTENT_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt", "response"),
    "dpo": ("prompt", "chosen", "rejected"),
    "raft": ("question", "answer"),
    "text": ("text",),
}
LIST_FIELDS = {"context"}


def frame_schema(kind: Kind) -> dict[str, pl.DataType]:
    schema: dict[str, Any] = {
        "sample_id": pl.String,
        "dataset": pl.String,
        "source_row": pl.Int64,
        "source_line": pl.Int64,
        "label": pl.String,
        "field_types": pl.String,
    }
    for field in CANONICAL_FIELDS[kind]:
        schema[field] = pl.List(pl.String) if field in LIST_FIELDS else pl.String
    return schema


def content_text(kind: str, separator: str = "\n") -> pl.Expr:
    """The text that identifies a sample for deduplication (sft: prompt + response, ...)."""
    parts = []
    for field in CONTENT_FIELDS[kind]:
        col = pl.col(field)
        parts.append(col.list.join("\n") if field in LIST_FIELDS else col)
    return pl.concat_str([p.fill_null("") for p in parts], separator=separator).alias("content")


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def fits(field: str, value: Any) -> bool:
    if field in LIST_FIELDS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)
