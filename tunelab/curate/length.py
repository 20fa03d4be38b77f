"""Length stage: min/max per field in characters, and in tokens of the recipe's tokenizer when one is given."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import LengthSettings
from tunelab.errors import UserError
from tunelab.records.fields import CANONICAL_FIELDS, LIST_FIELDS


@lru_cache(maxsize=4)
def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception as exc:  # transformers raises OSError/ValueError/... for a bad name or path
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"curate.length.tokenizer: cannot load {name_or_path!r}: {first}") from None


def _text(frame: pl.DataFrame, field: str) -> pl.Series:
    col = pl.col(field).list.join("\n") if field in LIST_FIELDS else pl.col(field)
    return frame.select(col.fill_null("").alias(field))[field]


def token_counts(tokenizer: Any, texts: list[str], batch: int = 1024) -> np.ndarray:
    counts = np.zeros(len(texts), dtype=np.int64)
    for begin in range(0, len(texts), batch):
        ids = tokenizer(texts[begin : begin + batch], add_special_tokens=False)["input_ids"]
        counts[begin : begin + len(ids)] = [len(x) for x in ids]
    return counts


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "mean": round(float(values.mean()), 2),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }


def _check_fields(cfg: LengthSettings) -> None:
    # one curate block serves the SFT and the DPO dataset of a recipe: a field of another kind is
    # skipped for this one, a field of no kind at all is a typo
    allowed = {f for fields in CANONICAL_FIELDS.values() for f in fields}
    for block in ("min_chars", "max_chars", "min_tokens", "max_tokens"):
        for field in getattr(cfg, block):
            if field not in allowed:
                raise UserError(
                    f"curate.length.{block}: {field!r} is not a canonical field ({', '.join(sorted(allowed))})"
                )
    if (cfg.min_tokens or cfg.max_tokens) and not cfg.tokenizer:
        raise UserError(
            "curate.length: min_tokens/max_tokens need curate.length.tokenizer (a tokenizer name or path)"
        )


def run(frame: pl.DataFrame, cfg: LengthSettings, ctx: StageContext) -> StageOutput:
    """too_short/too_long drops (first failing limit wins: chars before tokens); length stats in ctx.stats."""
    _check_fields(cfg)
    fields = [f for f in CANONICAL_FIELDS[ctx.kind] if f in frame.columns]
    tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
    n = frame.height
    reason = np.full(n, None, dtype=object)
    evidence = np.full(n, None, dtype=object)
    stats: dict[str, dict[str, Any]] = {}

    def apply(field: str, values: np.ndarray, unit: str, low: dict[str, int], high: dict[str, int]) -> None:
        for limits, too, word, sign in (
            (low, values.__lt__, "too_short", "<"),
            (high, values.__gt__, "too_long", ">"),
        ):
            if field not in limits:
                continue
            fresh = too(limits[field]) & (reason == None)  # noqa: E711 (elementwise on an object array)
            reason[fresh] = f"{word}:{field}_{unit}{sign}{limits[field]}"
            evidence[fresh] = [f"{v} {unit}" for v in values[fresh]]

    for field in fields:
        texts = _text(frame, field)
        present = frame[field].is_not_null().to_numpy()
        chars = texts.str.len_chars().to_numpy().astype(np.int64)
        stats[field] = {"chars": _stats(chars[present])}
        apply(field, chars, "chars", cfg.min_chars, cfg.max_chars)
        if tokenizer is not None:
            tokens = token_counts(tokenizer, texts.to_list())
            stats[field]["tokens"] = _stats(tokens[present])
            apply(field, tokens, "tokens", cfg.min_tokens, cfg.max_tokens)
    ctx.stats["length"] = {"tokenizer": cfg.tokenizer, "fields": stats}
    dropped = np.flatnonzero(reason != None)  # noqa: E711
    out = decisions(
        frame["sample_id"].gather(dropped),
        "length",
        False,
        reason[dropped].tolist(),
        evidence=evidence[dropped].tolist(),
    )
    return survivors(frame, out)
