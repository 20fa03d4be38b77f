"""Exact-duplicate stage: rows with the same normalised content hash (or, with `exact.key`, the same dedup
key: NFKC, lower-cased, punctuation removed, whitespace collapsed); one representative per group. The
output keeps the original text."""

from __future__ import annotations

import polars as pl
import xxhash

from tunelab.curate.common import StageContext, StageOutput, decisions, keep_order, survivors
from tunelab.curate.config import ExactSettings
from tunelab.curate.dedup_key import dedup_keys, describe


def run(frame: pl.DataFrame, cfg: ExactSettings, ctx: StageContext) -> StageOutput:
    """exact_dup drops: ref_sample_id = the group's representative (first, or longest), score 1.0."""
    ranked = frame.select("sample_id", "content_hash").with_columns(
        rank=keep_order(frame, cfg.keep, frame["content"] if "content" in frame.columns else None)
    )
    what = "content hash"
    if cfg.key is not None:
        keys = dedup_keys(frame["content"], cfg.key)
        hashes = [xxhash.xxh64_hexdigest(k.encode("utf-8")) for k in keys]
        ranked = ranked.with_columns(content_hash=pl.Series(hashes, dtype=pl.String))
        what = f"dedup key ({describe(cfg.key)})"
    grouped = ranked.with_columns(
        ref=pl.col("sample_id").sort_by("rank").first().over("content_hash"),
        group_size=pl.len().over("content_hash"),
    ).filter(pl.col("sample_id") != pl.col("ref"))
    grouped = grouped.with_columns(
        evidence=pl.format(f"same {what} as {{}} ({{}} copies)", pl.col("ref"), pl.col("group_size"))
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
