"""The dedup key: MinHash and (optionally) exact compare NFKC, lower-cased, punctuation-free,
whitespace-collapsed text, verify with exact Jaccard on that key, and keep the original text."""

from __future__ import annotations

import polars as pl
import pytest
from pydantic import ValidationError

from tunelab.curate import exact, minhash
from tunelab.curate.common import StageContext
from tunelab.curate.config import CurateConfig, DedupKeySettings, ExactSettings, MinhashSettings
from tunelab.curate.dedup_key import dedup_key, dedup_keys
from tunelab.textnorm import char_shingles, exact_jaccard

RAW = DedupKeySettings(unicode="none", lowercase=False, punctuation=False, whitespace=False)

SAMPLES = [
    "Hello,  World!  안녕하세요?",
    "ＦＵＬＬ　ｗｉｄｔｈ ①… 「인용」 — dash",
    "  tabs\tand\nnewlines \u00a0 nbsp ",
    "이메일: a.b@example.com (가격 $5 + 10%) 😀",
    "",
    "ÉCOLE Straße İstanbul",
]


@pytest.mark.parametrize("key", [DedupKeySettings(), RAW, DedupKeySettings(punctuation=False),
                                 DedupKeySettings(lowercase=False, unicode="NFC")])  # fmt: skip
def test_vectorised_key_matches_the_reference(key: DedupKeySettings) -> None:
    assert dedup_keys(SAMPLES, key) == [dedup_key(t, key) for t in SAMPLES]


def test_default_key_values() -> None:
    key = DedupKeySettings()
    assert dedup_key("Hello,  World!  안녕하세요?", key) == "hello world 안녕하세요"
    assert dedup_key("ＦＵＬＬ　ｗｉｄｔｈ", key) == "full width"
    assert dedup_key("가격: $5 + 10%", key) == "가격 5 10"
    assert dedup_keys(["a  b", None], RAW) == ["a  b", ""]  # type: ignore[list-item]


def test_key_settings_are_strict_and_switchable() -> None:
    cfg = CurateConfig.model_validate({"minhash": {"key": {"lowercase": False}}, "exact": {"key": {}}})
    assert cfg.minhash.key == DedupKeySettings(lowercase=False)
    assert cfg.exact.key == DedupKeySettings()
    assert CurateConfig().exact.key is None and CurateConfig().minhash.key == DedupKeySettings()
    with pytest.raises(ValidationError):
        CurateConfig.model_validate({"minhash": {"key": {"casefold": True}}})


def noisy_pair() -> tuple[str, str]:
    base = (
        "Seoul is the capital of Korea, and 서울은 한국의 수도입니다. It has many palaces; "
        "경복궁과 창덕궁이 유명하고, 봄에는 벚꽃이 핍니다!"
    )
    copy = (
        "seoul  is the CAPITAL of korea and 서울은  한국의 수도입니다 it has many palaces "
        "경복궁과 창덕궁이 유명하고 봄에는 벚꽃이 핍니다."
    )
    return base, copy


def test_minhash_finds_copies_that_differ_in_spacing_punctuation_and_case() -> None:
    base, copy = noisy_pair()
    raw_j = exact_jaccard(char_shingles(base, 5), char_shingles(copy, 5))
    assert raw_j < 0.7  # invisible to a Jaccard on the raw text
    frame = pl.DataFrame({"sample_id": ["a", "b"], "content": [base, copy]})
    out = minhash.run(frame, MinhashSettings(), StageContext())
    drops = out.decisions.filter(~pl.col("kept"))
    assert drops["sample_id"].to_list() == ["b"] and drops["ref_sample_id"].to_list() == ["a"]
    key = DedupKeySettings()
    expected = exact_jaccard(char_shingles(dedup_key(base, key), 5), char_shingles(dedup_key(copy, key), 5))
    assert drops["score"][0] == pytest.approx(expected) and expected >= 0.9
    assert out.frame["content"].to_list() == [base]  # the output keeps the original text
    # with the key switched off, the stage compares the raw text and keeps both
    raw = minhash.run(frame, MinhashSettings(key=RAW), StageContext()).decisions
    assert raw.filter(~pl.col("kept")).height == 0


def test_exact_key_is_an_option() -> None:
    frame = pl.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "content": ["Hello, world!", "hello world", "hello there"],
            "content_hash": ["h1", "h2", "h3"],
        }
    )
    assert exact.run(frame, ExactSettings(), StageContext()).decisions.height == 0
    out = exact.run(frame, ExactSettings(key=DedupKeySettings()), StageContext())
    assert out.decisions["sample_id"].to_list() == ["b"] and out.decisions["ref_sample_id"].to_list() == ["a"]
    assert "dedup key" in out.decisions["evidence"][0]
    assert out.frame["content"].to_list() == ["Hello, world!", "hello there"]
