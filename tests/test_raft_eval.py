"""Evaluating RAG answers: exact match and token F1 on the `<ANSWER>:` part with Korean particles dropped,
in the comparison with intervals; the stored prompt holds the documents; long RAFT rows in training."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.errors import UserError  # noqa: E402
from tunelab.evaluate.answers import answer_scores, parse_answer  # noqa: E402


def scores(reference: str, prediction: str) -> tuple[float, float]:
    em, f1 = answer_scores([reference], [prediction])
    return em[0], f1[0]


def test_korean_particles_and_endings_do_not_break_a_match() -> None:
    assert scores("서울", "서울이") == (1.0, 1.0)
    assert scores("서울", "서울입니다.") == (1.0, 1.0)
    assert scores("1443년", "1443년에") == (1.0, 1.0)
    assert scores("서울", "부산") == (0.0, 0.0)
    em, f1 = scores("서울", "서울 특별시")  # one token of two: precision 1/2, recall 1
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    em, f1 = scores("경복궁 광화문", "광화문")
    assert em == 0.0 and 0.0 < f1 < 1.0
    # English as SQuAD normalises it: case, punctuation and articles do not count
    assert scores("the Eiffel Tower", "Eiffel tower!") == (1.0, 1.0)
    assert scores("", "") == (1.0, 1.0) and scores("서울", "") == (0.0, 0.0)


def test_answers_are_read_from_the_cot_format() -> None:
    cot = "##begin_quote##한글은 세종이 창제하였다.##end_quote##\n<ANSWER>: 세종"
    assert parse_answer(cot) == "세종" and parse_answer("세종대왕") == "세종대왕"
    assert parse_answer("<ANSWER>: 틀림 <ANSWER>: 세종") == "세종"  # the last marker
    # the reasoning differs, the answers agree: a match (a plain text comparison would say 0)
    assert scores(cot, "##begin_quote##다른 문장##end_quote##\n<ANSWER>: 세종이") == (1.0, 1.0)
    assert scores(cot, "세종") == (1.0, 1.0)


def test_em_and_f1_reach_the_comparison_with_intervals() -> None:
    from tunelab.evaluate.compare import compare_models
    from tunelab.evaluate.metrics import score_pairs

    refs = ["<ANSWER>: 서울", "<ANSWER>: 세종", "<ANSWER>: 한라산", "<ANSWER>: 1996년"]
    base = ["부산", "모름", "설악산", "1995년"]
    sft = ["<ANSWER>: 서울이", "<ANSWER>: 세종", "<ANSWER>: 한라산", "<ANSWER>: 1995년"]
    pairs = pl.DataFrame(
        {
            "model": ["base"] * 4 + ["sft"] * 4,
            "sample_id": [f"s{i}" for i in range(4)] * 2,
            "reference": refs * 2,
            "prediction": base + sft,
        }
    )
    per_sample, corpus = score_pairs(pairs, ("exact_match", "token_f1"))
    means = {(r["model"], r["metric"]): r["value"] for r in corpus.to_dicts()}
    assert means[("base", "exact_match")] == 0.0 and means[("sft", "exact_match")] == 0.75
    assert 0.0 < means[("base", "token_f1")] < means[("sft", "token_f1")] < 1.0  # 1995년 vs 1996년: "년"
    comparison = compare_models(pairs, per_sample)
    est = comparison.estimates.filter(pl.col("metric") == "exact_match").to_dicts()
    assert {r["model"]: r["n"] for r in est} == {"base": 4, "sft": 4}
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in est)
    delta = comparison.deltas.filter(pl.col("metric") == "token_f1").to_dicts()[0]
    assert delta["model"] == "sft" and delta["delta"] > 0 and delta["p_value"] is not None


def test_the_stored_prompt_holds_the_documents_and_the_reference_its_answer() -> None:
    from tunelab.evaluate.generate import eval_rows_from_frame

    frame = pl.DataFrame(
        {
            "sample_id": ["r:0"],
            "instruction": ["문서를 보고 답하세요."],
            "context": [["서울은 수도이다.", "부산은 항구이다."]],
            "question": ["수도는?"],
            "answer": ["서울"],
            "cot": ["##begin_quote##서울은 수도이다.##end_quote##"],
        }
    )
    row = eval_rows_from_frame(frame, "raft", "val").to_dicts()[0]
    assert "<DOCUMENT>서울은 수도이다.</DOCUMENT>" in row["prompt_text"]
    assert "<DOCUMENT>부산은 항구이다.</DOCUMENT>" in row["prompt_text"]
    assert row["prompt_text"].startswith("system: 문서를 보고 답하세요.") and row["prompt_text"].endswith(
        "수도는?"
    )
    assert row["reference"].endswith("<ANSWER>: 서울") and parse_answer(row["reference"]) == "서울"


# ---------------------------------------------------------------- long RAFT rows in training


def syllables(n: int, seed: int) -> str:
    return "".join(chr(0xAC00 + (seed * 131 + i * 7919) % 11172) for i in range(n))


def raft_rows(long_docs: int) -> list[dict[str, Any]]:
    """Six RAFT rows; the first `long_docs` hold documents far longer than max_length."""
    rows = []
    for i in range(6):
        size = 300 if i < long_docs else 3
        rows.append({"sample_id": f"r:{i}", "label": None, "instruction": "답하세요.",
                     "context": [syllables(size, i), syllables(size, i + 10)], "question": f"질문 {i}?",
                     "answer": "서울", "cot": None, "golden": None})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunelab.modeling.tiny import build_tiny_model

    texts = [t for row in raft_rows(6) for t in [*row["context"], row["question"], row["answer"]]]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", texts, vocab_size=400, hidden_size=32,
                            pretrain_steps=0)  # fmt: skip


def train_raft(tiny: Path, workspace: Path, rows: list[dict[str, Any]]) -> tuple[Any, str]:
    from tunelab.recipe import parse_recipe
    from tunelab.train.sft import run_sft

    out = workspace / "curations" / "cur-raft"
    out.mkdir(parents=True)
    pl.DataFrame(rows).write_parquet(out / "train.parquet")
    pl.DataFrame(rows[:0]).write_parquet(out / "val.parquet")
    recipe = parse_recipe(
        {
            "dataset": {"path": "r.jsonl", "name": "r", "kind": "raft"},
            "train": {
                "base_model": str(tiny),
                "quantization": "none",
                "compute_dtype": "float32",
                "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                "sft": {"max_steps": 1, "batch_size": 6, "max_length": 160, "save_steps": 1000},
            },
        }
    )
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        result = run_sft(recipe, workspace, curation_id="cur-raft", show_progress=False)
    return result, stderr.getvalue()


def test_every_raft_row_too_long_is_one_line_naming_the_setting(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        train_raft(tiny, tmp_path, raft_rows(6))
    message = str(error.value)
    assert "\n" not in message and "train.sft.max_length: none of the 6 training rows" in message
    assert "raise train.sft.max_length (e.g. to " in message


def test_some_raft_rows_too_long_are_dropped_with_a_note(tiny: Path, tmp_path: Path) -> None:
    result, stderr = train_raft(tiny, tmp_path, raft_rows(2))
    assert (
        "note: train.sft.max_length 160: 2 of 6 train rows are longer and get truncated; 2 keep no " in stderr
    )
    assert result.metrics["train_rows_dropped_no_response"] == 2.0
