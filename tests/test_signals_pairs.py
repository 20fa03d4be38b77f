"""The pairs stage on hand-written Korean preference pairs, and `tunelab curate` on a tiny DPO file: the
issue's case (rejected answers that are only `<|endoftext|>`), identical answers, contradictory labels
for one prompt, length bias when asked for, and every read row accounted for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tunelab.curate import pairs
from tunelab.curate.common import SIGNAL_SCHEMA, StageContext
from tunelab.curate.config import PairsSettings
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records

REPO = Path(__file__).resolve().parents[1]
GOOD = "김치찌개는 돼지고기와 신 김치를 볶은 뒤 물을 붓고 끓이면 됩니다."
BAD = "잘 모르겠어요."


def pair(prompt: str, chosen: str, rejected: str) -> dict[str, str]:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def load(tmp_path: Path, rows: list[dict], kind: str = "dpo") -> pl.DataFrame:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load_dataset_records(DatasetConfig(path=path, name="p", kind=kind)).frame


def decided(tmp_path: Path, rows: list[dict], cfg: PairsSettings | None = None) -> dict[int, tuple]:
    out = pairs.run(load(tmp_path, rows), cfg or PairsSettings(), StageContext(kind="dpo"))
    assert not out.decisions["kept"].any()
    assert out.frame.height == len(rows) - out.decisions.height
    return {
        int(sid.split(":")[1]): (reason, ref, evidence)
        for sid, reason, ref, evidence in out.decisions.select(
            "sample_id", "reason", "ref_sample_id", "evidence"
        ).iter_rows()
    }


def test_empty_and_special_token_only_answers_and_identical_pairs(tmp_path: Path) -> None:
    rows = [
        pair("김치찌개 끓이는 법 알려줘", GOOD, "<|endoftext|>"),  # the Korean preference set
        pair("김치찌개 끓이는 법 알려줘", "</s> <|im_end|>", GOOD),
        pair("된장찌개는?", "된장을  풀고\n끓여요.", " 된장을 풀고 끓여요. "),  # same after whitespace
        pair("된장찌개는?", GOOD, BAD),  # a good pair
        pair("된장찌개는?", GOOD + "<|endoftext|>", BAD),  # a leaked token is quality's business, not empty
    ]
    found = decided(tmp_path, rows)
    assert found == {
        0: ("pair:empty_rejected", None, "rejected: only '<|endoftext|>'"),
        1: ("pair:empty_chosen", None, "chosen: only '</s> <|im_end|>'"),
        2: ("pair:identical", None, "chosen == rejected apart from whitespace (12 chars)"),
    }


def test_contradictory_preferences_drop_both_or_keep_the_first(tmp_path: Path) -> None:
    rows = [
        pair("라면 끓이는 법", GOOD, BAD),
        pair("다른 질문", GOOD, BAD),
        pair("라면  끓이는 법", BAD, GOOD),  # the same prompt (spacing aside), the other answer wins
        pair("라면 끓이는 법", GOOD, BAD),  # agrees with row 0
        pair("다른 질문", "전혀 다른 답", BAD),  # same prompt, other answers: no contradiction
    ]
    found = decided(tmp_path, rows)
    assert {row: (reason, ref) for row, (reason, ref, _) in found.items()} == {
        0: ("pair:contradictory", "p:2"),
        2: ("pair:contradictory", "p:0"),
        3: ("pair:contradictory", "p:2"),
    }
    assert found[0][2] == "p:2 prefers the other answer for the same prompt"
    kept_first = decided(tmp_path, rows, PairsSettings(contradictory="keep_first"))
    assert {row: ref for row, (_, ref, _) in kept_first.items()} == {2: "p:0"}
    assert decided(tmp_path, rows, PairsSettings(contradictory="off")) == {}


def test_length_bias_only_when_asked_and_the_length_ratio_signal(tmp_path: Path) -> None:
    long_answer = GOOD * 6
    rows = [pair("질문", "네.", long_answer), pair("질문 둘", GOOD, long_answer), pair("질문 셋", GOOD, BAD)]
    assert decided(tmp_path, rows) == {}  # off by default: curt refusals are the point of harmlessness data
    found = decided(tmp_path, rows, PairsSettings(length_ratio=8, short_chars=30))
    assert list(found) == [0] and found[0][0] == "pair:length_bias"
    assert found[0][2] == f"rejected {len(long_answer)} chars = {len(long_answer) / 2:.1f}x chosen 2 chars"
    out = pairs.run(load(tmp_path, rows), PairsSettings(), StageContext(kind="dpo"))
    assert out.signals is not None and dict(out.signals.schema) == SIGNAL_SCHEMA
    assert out.signals["value"].to_list() == pytest.approx([len(long_answer) / 2, 6.0, len(BAD) / len(GOOD)])
    assert set(out.signals["signal"]) == {"length_ratio"} and out.signals["field"].null_count() == 3


def test_other_kinds_skip_the_stage(tmp_path: Path) -> None:
    frame = load(tmp_path, [{"prompt": "안녕", "response": "<|endoftext|>"}], kind="sft")
    out = pairs.run(frame, PairsSettings(), StageContext(kind="sft"))
    assert out.skipped == "not preference data (kind sft)" and out.decisions.height == 0
    assert out.frame.height == 1


def test_hh_rlhf_harmless_base(shared_data: Path) -> None:
    """harmless-base test: no identical or contradictory pair; 4 empty chosen answers that schema drops
    first (as empty:chosen); 77 pairs would be length bias at 8x / 30 chars (off by default, see docs)."""
    cfg = DatasetConfig(
        path=shared_data / "anthropics__hh-rlhf/harmless-base_test.jsonl.gz", name="hh", kind="dpo"
    )
    frame = load_dataset_records(cfg).frame
    counts = pairs.run(frame, PairsSettings(length_ratio=8), StageContext(kind="dpo")).decisions["reason"]
    assert dict(counts.value_counts().iter_rows()) == {"pair:empty_chosen": 4, "pair:length_bias": 77}


def test_tunelab_curate_on_a_tiny_dpo_file(tmp_path: Path) -> None:
    rows = [
        pair("김치찌개 끓이는 법 알려줘", GOOD, BAD),
        pair("김치찌개 맛있게 끓이는 법", GOOD, "<|endoftext|>"),
        pair("된장찌개는?", "된장을 풀고 끓여요.", "된장을  풀고 끓여요."),
        pair("라면 끓이는 법", "물이 끓으면 면과 스프를 넣고 4분 끓여요.", BAD),
        pair("라면 끓이는 법", BAD, "물이 끓으면 면과 스프를 넣고 4분 끓여요."),
        pair("기분이 어때?", "저는 AI 언어 모델이기 때문에 감정이 없습니다.", BAD),
        pair("노래 불러줘", "아아아아아아아아아아", BAD),
        pair("인사해줘", "안녕하세요!<|im_end|> 좋은 하루 보내세요.", BAD),  # a leak inside: the row goes
        pair("비빔밥 재료는?", "밥, 나물, 고추장, 참기름, 달걀이 들어갑니다.", BAD),
        pair("인사 한 번 더", "반갑습니다. 좋은 하루 되세요.<|endoftext|>", BAD),  # at the end: cut, kept
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(4, '{"prompt": "broken')
    (tmp_path / "dpo.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "recipe.yaml").write_text(
        "dataset: {path: dpo.jsonl, name: prefs, kind: dpo}\n"
        "curate:\n"
        "  stages: [schema, normalize, pairs, quality, exact, split]\n"
        "  split: {val_ratio: 0.0, stratify: null}\n"
        "  max_quarantine_ratio: 0.5\n",
        encoding="utf-8",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunelab.cli",
            "curate",
            str(tmp_path / "recipe.yaml"),
            "-w",
            str(tmp_path / "ws"),
        ]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    curation = json.loads(proc.stdout)["curations"][0]
    counts = curation["counts"]
    assert (counts["read"], counts["kept"], counts["dropped"], counts["quarantined"]) == (11, 3, 7, 1)
    assert counts["kept"] + counts["dropped"] + counts["quarantined"] == counts["read"]
    out_dir = Path(curation["out_dir"])
    train = [json.loads(line) for line in (out_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["chosen"] for r in train][-1] == "반갑습니다. 좋은 하루 되세요."  # the trailing token is gone
    decisions = pl.read_parquet(out_dir / "decisions.parquet").filter(~pl.col("kept"))
    # source rows: the broken line is row 4, so the rows after it move down one
    assert dict(decisions.select("sample_id", "reason").iter_rows()) == {
        "prefs:1": "pair:empty_rejected",
        "prefs:2": "pair:identical",
        "prefs:3": "pair:contradictory",
        "prefs:5": "pair:contradictory",
        "prefs:6": "quality:refusal",
        "prefs:7": "quality:repetition",
        "prefs:8": "quality:special_tokens",
    }
    assert {(r["stage"], r["reason"], r["count"]) for r in curation["reasons"]} >= {
        ("pairs", "pair:contradictory", 2),
        ("quality", "quality:special_tokens", 1),
    }
