"""Intervals and significance on every compared number (issue: comparisons you can defend)."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from tunelab.evaluate import stats
from tunelab.evaluate.compare import compare_models, comparisons
from tunelab.evaluate.metrics import score_pairs

REFS = [f"서울의 {i}번째 구는 강{i}구이고 인구는 {i * 7}만 명입니다" for i in range(40)]


def _noise(seed: int) -> list[str]:
    rng = random.Random(seed)
    words = "바다 하늘 고양이 커피 기차 연필 구름 노래 창문 바람".split()
    return [" ".join(rng.choice(words) for _ in range(6)) for _ in REFS]


def test_identical_systems_have_p_near_1_and_an_interval_centred_on_zero() -> None:
    values = np.random.default_rng(0).random(60)
    est = stats.paired_difference(values, values.copy())
    assert est.value == 0 and est.ci_low == 0 and est.ci_high == 0
    assert est.p_value == pytest.approx(1.0) and not est.significant


def test_a_real_difference_is_significant_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(60)
    better = base + 0.3 + rng.normal(0, 0.05, 60)
    est = stats.paired_difference(better, base)
    assert est.p_value < 0.01 and est.ci_low > 0.2 and est.significant
    jitter = base + rng.normal(0, 0.05, 60)
    assert stats.paired_difference(jitter, base).p_value > 0.05


def test_intervals_reproduce_for_a_fixed_seed_and_move_with_another() -> None:
    values = np.random.default_rng(2).random(50)
    assert stats.mean_interval(values, seed=7) == stats.mean_interval(values, seed=7)
    assert stats.mean_interval(values, seed=7).ci_low != stats.mean_interval(values, seed=8).ci_low
    est = stats.mean_interval(values)
    assert est.ci_low < est.value < est.ci_high and est.n == 50


def test_percent_change_is_withheld_against_a_near_zero_base() -> None:
    assert not stats.relative_change_is_meaningful(0.04, 1.0)  # ROUGE 0.04 -> 0.09 is not "+125 %"
    assert not stats.relative_change_is_meaningful(0.151, 100.0)  # BLEU 0.151 -> 0.677 is not "+347 %"
    assert stats.relative_change_is_meaningful(0.35, 1.0) and stats.relative_change_is_meaningful(25.0, 100.0)


@pytest.fixture(scope="module")
def oracle_vs_noise() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = []
    for model, preds in (("base", _noise(0)), ("sft", REFS), ("dpo", REFS)):
        rows += [{"model": model, "sample_id": f"s:{i}", "reference": r, "prediction": p}
                 for i, (r, p) in enumerate(zip(REFS, preds, strict=True))]  # fmt: skip
    predictions = pl.DataFrame(rows)
    scores, _ = score_pairs(predictions, metrics=("rouge", "bleu", "chrf"), rouge_tokenizer_name="whitespace")
    return predictions, scores


def test_oracle_vs_noise_table_has_intervals_and_significant_deltas(oracle_vs_noise) -> None:
    predictions, scores = oracle_vs_noise
    result = compare_models(predictions, scores, bleu_tokenize="13a", n_resamples=300)
    est = {(r["model"], r["metric"]): r for r in result.estimates.to_dicts()}
    assert est[("sft", "rougeL")]["value"] == pytest.approx(1.0) and est[("sft", "rougeL")]["n"] == 40
    assert est[("base", "bleu_corpus")]["ci_low"] <= est[("base", "bleu_corpus")]["value"]
    deltas = {(r["model"], r["baseline"], r["metric"]): r for r in result.deltas.to_dicts()}
    # every model vs base, and DPO vs its parent SFT
    assert {(m, b) for m, b, _ in deltas} == {("sft", "base"), ("dpo", "base"), ("dpo", "sft")}
    for metric in ("rougeL", "bleu_corpus", "chrf_corpus"):
        vs_base = deltas[("sft", "base", metric)]
        assert vs_base["p_value"] < 0.01 and vs_base["significant"] and vs_base["ci_low"] > 0, metric
        same = deltas[("dpo", "sft", metric)]
        assert same["delta"] == pytest.approx(0) and not same["significant"], metric
    # the base scores near 0: no relative change is shown against it
    assert deltas[("sft", "base", "bleu_corpus")]["delta_pct"] is None


def test_comparisons_follow_the_training_lineage() -> None:
    assert comparisons(["base", "sft", "dpo"]) == [("sft", "base"), ("dpo", "base"), ("dpo", "sft")]
    assert comparisons(["base", "run-7"]) == [("run-7", "base")]
    assert comparisons(["sft", "dpo"]) == [("dpo", "sft")]
