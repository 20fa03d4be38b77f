"""Normalise stage: NFC (composes decomposed Hangul jamo), control characters out, whitespace collapsed.

Rows are never dropped here; `run` reports which fields of which rows changed (kept=true, reason
'normalized') and `transform` returns the cleaned frame the next stages see.
"""

from __future__ import annotations

import polars as pl

from tunelab.curate.common import StageContext, decisions
from tunelab.curate.config import NormalizeSettings
from tunelab.records import CANONICAL_FIELDS, LIST_FIELDS
from tunelab.textnorm import normalize_expr

TEXT_FIELDS = tuple(dict.fromkeys(f for fields in CANONICAL_FIELDS.values() for f in fields))


def _normalized(field: str, cfg: NormalizeSettings) -> pl.Expr:
    def clean(expr: pl.Expr) -> pl.Expr:
        return normalize_expr(expr, cfg.unicode, cfg.collapse_whitespace, cfg.strip_control)

    if field in LIST_FIELDS:
        return pl.col(field).list.eval(clean(pl.element()))
    return clean(pl.col(field))


def _fields(frame: pl.DataFrame) -> list[str]:
    return [f for f in TEXT_FIELDS if f in frame.columns]


def _label() -> pl.Expr:
    # labels compare exactly in balance/split: ChatbotData has a '2   ' next to its '2'
    return pl.col("label").str.strip_chars()


def transform(frame: pl.DataFrame, cfg: NormalizeSettings) -> pl.DataFrame:
    """The frame with every canonical text column normalised and labels stripped."""
    columns = [_normalized(f, cfg).alias(f) for f in _fields(frame)]
    if "label" in frame.columns:
        columns.append(_label())
    return frame.with_columns(columns)


def run(frame: pl.DataFrame, cfg: NormalizeSettings, ctx: StageContext) -> pl.DataFrame:
    """kept=true annotations for rows whose text changed; evidence lists the changed fields."""
    fields = _fields(frame)
    if not fields:
        return decisions([], "normalize", True)
    changed = frame.select(
        "sample_id",
        evidence=pl.concat_str(
            [
                pl.when(_normalized(f, cfg).ne_missing(pl.col(f))).then(pl.lit(f)).otherwise(None)
                for f in fields
            ]
            + (
                [pl.when(_label().ne_missing(pl.col("label"))).then(pl.lit("label"))]
                if "label" in frame.columns
                else []
            ),
            separator=",",
            ignore_nulls=True,
        ),
    ).filter(pl.col("evidence").str.len_chars() > 0)
    ctx.stats["normalize"] = {"rows_changed": changed.height}
    return decisions(
        changed["sample_id"], "normalize", True, "normalized", evidence="changed: " + changed["evidence"]
    )
