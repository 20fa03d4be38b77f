"""Exact-duplicate stage: rows with the same normalised content hash; one representative per group."""

from __future__ import annotations

import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, keep_order, survivors
from tunelab.curate.config import ExactSettings


def run(frame: pl.DataFrame, cfg: ExactSettings, ctx: StageContext) -> StageOutput:
    """exact_dup drops: ref_sample_id = the group's representative (first, or longest), score 1.0."""
    ranked = frame.select("sample_id", "content_hash").with_columns(
        rank=keep_order(frame, cfg.keep, frame["content"] if "content" in frame.columns else None)
    )
    grouped = ranked.with_columns(
        ref=pl.col("sample_id").sort_by("rank").first().over("content_hash"),
        group_size=pl.len().over("content_hash"),
    ).filter(pl.col("sample_id") != pl.col("ref"))
    grouped = grouped.with_columns(
        evidence=pl.format("same content hash as {} ({} copies)", pl.col("ref"), pl.col("group_size"))
    )
    ctx.stats["exact"] = {"dropped": grouped.height}
    out = decisions(
        grouped["sample_id"],
        "exact",
        False,
        "exact_dup",
        ref_sample_id=grouped["ref"],
        score=pl.Series([1.0] * grouped.height),
        evidence=grouped["evidence"],
    )
    return survivors(frame, out)
