"""Regressions found by a new user's QA pass over the curation side (small hand-written inputs)."""

from __future__ import annotations

import polars as pl

from tunelab.curate import language
from tunelab.curate.common import StageContext
from tunelab.curate.config import LanguageSettings


def dpo(*rows: tuple[str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": [f"d:{i}" for i in range(len(rows))],
            "prompt": [p for p, _, _ in rows],
            "chosen": [c for _, c, _ in rows],
            "rejected": [r for _, _, r in rows],
        }
    )


def test_language_does_not_count_special_tokens_as_latin_letters() -> None:
    # language runs before quality cuts a trailing <|endoftext|>: the token's letters made a short Korean
    # answer read as hangul_ratio 0.25 and dropped the pair
    frame = dpo(
        ("인사해 주세요", "안녕하세요 반가워요<|endoftext|>", "싫어요<|endoftext|>"),
        ("인사해 주세요", "네, 맞아요.</s>", "아니요[|endofturn|]"),
        ("인사해 주세요", "안녕하세요 반가워요", "Hello there, nice to meet you all"),
    )
    out = language.run(frame, LanguageSettings(), StageContext(kind="dpo"))
    dropped = out.decisions.filter(~pl.col("kept"))
    assert dropped["sample_id"].to_list() == ["d:2"]  # a real English answer is still a finding
    assert out.frame["sample_id"].to_list() == ["d:0", "d:1"]
