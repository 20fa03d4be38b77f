"""What every stage shares: the decisions frame shape, the context the pipeline hands in, what a stage
returns, and the `content` / `content_hash` columns the comparing stages read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import xxhash

from tunelab.records.fields import content_text

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "stage": pl.String(),
    "kept": pl.Boolean(),
    "reason": pl.String(),
    "ref_sample_id": pl.String(),
    "score": pl.Float64(),
    "evidence": pl.String(),
}


# per-row measurements of the signal stages (language, pii, quality, pairs), kept rows included: the
# dashboard draws their distributions; `field` is the text field measured, or null for the whole row
SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "stage": pl.String(),
    "field": pl.String(),
    "signal": pl.String(),
    "value": pl.Float64(),
}


def empty_signals() -> pl.DataFrame:
    return pl.DataFrame(schema=SIGNAL_SCHEMA)


@dataclass
class StageContext:
    """Inputs a stage may need besides its frame and settings; `stats` collects numbers for the report."""

    kind: str = "sft"
    dataset_name: str = "dataset"
    cache_dir: Path | None = None  # WORKSPACE/cache/embeddings
    workspace: Any = None  # the Workspace: its models (curate.length.tokenizer: tunelab-tiny)
    eval_texts: list[str] | None = None  # normalised eval content for decontamination
    eval_prompts: list[str] | None = None  # the eval rows' prompt (question) field alone
    eval_ids: list[str] | None = None
    show_progress: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    # sample_id -> near-dup group, left by minhash (rows kept in one LSH component) for split, which keeps
    # a group on one side
    clusters: dict[str, str] = field(default_factory=dict)
    # every stage's per-row measurements (SIGNAL_SCHEMA), gathered by the pipeline after the last stage
    signals: pl.DataFrame = field(default_factory=empty_signals)


@dataclass(frozen=True)
class StageOutput:
    """What a stage returns: `frame` = the rows that go on to the next stage (the survivors, or the
    transformed / expanded frame), `decisions` = one row per decision (exactly DECISION_SCHEMA).
    `skipped` says why a stage had nothing to do (the report shows it); `signals` = what it measured per
    row (exactly SIGNAL_SCHEMA), for stages that score rows."""

    frame: pl.DataFrame
    decisions: pl.DataFrame
    skipped: str | None = None
    signals: pl.DataFrame | None = None


def survivors(frame: pl.DataFrame, stage_decisions: pl.DataFrame) -> StageOutput:
    """The StageOutput of a stage that only drops rows: `frame` without every row a kept=false decision names."""
    gone = stage_decisions.filter(~pl.col("kept"))["sample_id"].unique()
    if gone.len():
        frame = frame.filter(~pl.col("sample_id").is_in(gone.implode()))
    return StageOutput(frame, stage_decisions)


def with_content(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Add `content` (what dedup compares) and `content_hash` (xxhash64 hex of it)."""
    frame = frame.with_columns(content_text(kind))
    hashes = [xxhash.xxh64_hexdigest(text.encode("utf-8")) for text in frame["content"].to_list()]
    return frame.with_columns(content_hash=pl.Series(hashes, dtype=pl.String))


def empty_decisions() -> pl.DataFrame:
    return pl.DataFrame(schema=DECISION_SCHEMA)


def decisions(
    sample_ids: pl.Series | list[str],
    stage: str,
    kept: bool | pl.Series | list[bool],
    reason: str | None | pl.Series | list[str | None] = None,
    ref_sample_id: pl.Series | list[str | None] | None = None,
    score: pl.Series | list[float | None] | None = None,
    evidence: str | None | pl.Series | list[str | None] = None,
) -> pl.DataFrame:
    """A decisions frame with exactly the contract's columns and types; scalars broadcast."""
    ids = pl.Series("sample_id", sample_ids, dtype=pl.String)
    n = len(ids)

    def column(name: str, value: Any) -> pl.Series:
        dtype = DECISION_SCHEMA[name]
        if isinstance(value, pl.Series):
            return value.alias(name).cast(dtype)
        if isinstance(value, list):
            return pl.Series(name, value, dtype=dtype)
        return pl.Series(name, [value] * n, dtype=dtype)

    return pl.DataFrame(
        [
            ids,
            column("stage", stage),
            column("kept", kept),
            column("reason", reason),
            column("ref_sample_id", ref_sample_id),
            column("score", score),
            column("evidence", evidence),
        ]
    )


def keep_order(frame: pl.DataFrame, keep: str, text: pl.Series | None = None) -> pl.Series:
    """Priority rank per row (0 = best representative): 'first' = source order, 'longest' = most characters."""
    n = frame.height
    if keep == "longest" and text is not None:
        return longest_first_rank(text.str.len_chars().fill_null(0))
    return pl.Series("rank", range(n), dtype=pl.Int64)


def longest_first_rank(lengths: pl.Series | Any) -> pl.Series:
    """keep_order's 'longest' rank from the rows' lengths alone (most characters first, ties by position):
    what an executor holding only a length column per row needs."""
    n = len(lengths)
    order = pl.DataFrame({"i": range(n), "len": lengths}).sort(["len", "i"], descending=[True, False])
    return pl.Series("rank", order["i"].arg_sort(), dtype=pl.Int64)
