"""A recipe in another folder finds its own files, whatever the current directory holds.

proj/recipe.yaml says `dataset.path: data/train.jsonl` and `evaluate.eval_set.path: data/eval.jsonl`; every
command runs through the real CLI from a sibling folder that has its own, different data/*.jsonl (decoys).
Decontamination must drop the training row that copies a row of proj/data/eval.jsonl and keep the rows
that copy the decoy eval file; so must `train sft` / `train dpo` when they curate for themselves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tunelab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]

EVAL = [
    {
        "prompt": "한라산 영실 코스는 초보자도 오를 수 있을까요?",
        "response": "네, 영실 코스는 완만해서 천천히 걸으면 초보자도 충분히 오를 수 있어요.",
    },
    {
        "prompt": "전주 한옥마을에서 꼭 먹어야 할 음식은 뭐예요?",
        "response": "전주비빔밥과 콩나물국밥은 꼭 드셔 보세요, 아침에는 국밥이 좋아요.",
    },
    {
        "prompt": "경주 불국사는 몇 시에 가는 게 제일 한적해요?",
        "response": "문 여는 아침 일곱 시쯤 가면 사람이 적고 햇빛도 부드러워요.",
    },
]
# the other data/eval.jsonl, in the current directory: nothing may be decontaminated against it
DECOY = [
    {
        "prompt": "서울 지하철 2호선 순환선은 한 바퀴 도는 데 얼마나 걸려요?",
        "response": "한 바퀴 도는 데 보통 한 시간 반 정도 걸리고 출퇴근 시간에는 더 걸려요.",
    },
    {
        "prompt": "부산 해운대 겨울 바다 산책하기 좋은 시간은 언제예요?",
        "response": "해 질 무렵 다섯 시쯤이 바람도 덜 불고 노을이 예뻐서 산책하기 좋아요.",
    },
]
CITIES = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "수원", "제주"]

TRAIN = [
    {
        "prompt": f"{city}에서 가볼 만한 시장 하나만 알려줘",
        "response": f"{city}에 가면 오래된 전통시장에서 {i + 2}천 원짜리 국수를 드셔 보세요.",
    }
    for i, city in enumerate(CITIES)
]
TRAIN[2:2] = [dict(EVAL[0])]  # copies the recipe's eval row: dropped
TRAIN[5:5] = [dict(DECOY[0])]  # copy the decoy's rows: kept (one copied row dropped, not two)
TRAIN[8:8] = [dict(DECOY[1])]

PREFS = [
    {
        "prompt": f"{city}에서 뭐 먹을까?",
        "chosen": f"{city}에서는 시장 국수를 추천해요, 따뜻하고 맛있어요!",
        "rejected": f"{city}에는 식당이 있습니다.",
    }
    for city in CITIES
]
PREFS[1:1] = [{"prompt": EVAL[1]["prompt"], "chosen": "비빔밥이요!", "rejected": "모르겠어요."}]
PREFS[4:4] = [{"prompt": DECOY[1]["prompt"], "chosen": "노을 질 때요!", "rejected": "아무 때나요."}]

RECIPE = """
dataset: {path: data/train.jsonl, name: trips}
curate:
  stages: [schema, normalize, exact, decontaminate, split]
  split: {val_ratio: 0.2, stratify: null, seed: 0}
train:
  base_model: tunelab-tiny
  quantization: none
  compute_dtype: float32
  lora: {r: 4, alpha: 8, dropout: 0.0}
  sft: {max_steps: 1, batch_size: 2, max_length: 64, logging_steps: 1, save_steps: 1000}
  dpo:
    dataset: {path: data/prefs.jsonl, name: trip-prefs, kind: dpo}
    max_steps: 1
    batch_size: 2
    max_length: 64
    logging_steps: 1
    save_steps: 1000
evaluate:
  eval_set: {path: data/eval.jsonl, name: trips-eval}
  models: [base]
  generation: {max_new_tokens: 4, batch_size: 4}
  metrics: [chrf]
workspace: {dir: ws}
"""

# sample ids are `<dataset name>:<row>`, rows counted from 0
COPIES_EVAL = f"trips:{TRAIN.index(EVAL[0])}"
COPIES_DECOY = {f"trips:{TRAIN.index(DECOY[0])}", f"trips:{TRAIN.index(DECOY[1])}"}
PREF_COPIES_EVAL = f"trip-prefs:{next(i for i, r in enumerate(PREFS) if r['prompt'] == EVAL[1]['prompt'])}"
PREF_COPIES_DECOY = f"trip-prefs:{next(i for i, r in enumerate(PREFS) if r['prompt'] == DECOY[1]['prompt'])}"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(proj/recipe.yaml, the other current directory). The recipe's workspace (proj/ws) holds a small
    prebuilt tunelab-tiny, so the training tests do not spend half a minute pretraining the default one."""
    from tunelab.modeling.config import TINY_MODEL
    from tunelab.modeling.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("paths")
    proj, elsewhere = root / "proj", root / "elsewhere"
    write_jsonl(proj / "data" / "train.jsonl", TRAIN)
    write_jsonl(proj / "data" / "eval.jsonl", EVAL)
    write_jsonl(proj / "data" / "prefs.jsonl", PREFS)
    (proj / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    # decoys under the same relative names in the current directory
    write_jsonl(elsewhere / "data" / "eval.jsonl", DECOY)
    write_jsonl(elsewhere / "data" / "train.jsonl", DECOY)
    write_jsonl(elsewhere / "data" / "prefs.jsonl", PREFS[:3])
    texts = [text for row in TRAIN + EVAL + PREFS for text in row.values()]
    build_tiny_model(
        Workspace(proj / "ws").model_dir(TINY_MODEL), texts, vocab_size=300, hidden_size=32, pretrain_steps=2
    )
    return proj / "recipe.yaml", elsewhere


def tunelab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"tunelab {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def dropped(workspace: Workspace, curation_id: str) -> dict[str, str]:
    """sample id -> eval row id of the decontamination drops of a curation."""
    frame = pl.read_parquet(workspace.curation_dir(curation_id) / "decisions.parquet")
    frame = frame.filter((pl.col("stage") == "decontaminate") & ~pl.col("kept"))
    return dict(zip(frame["sample_id"].to_list(), frame["ref_sample_id"].to_list(), strict=True))


def curated_file(workspace: Workspace, curation_id: str) -> tuple[Path, int]:
    """The data file a curation read, and how many rows it read."""
    report = json.loads((workspace.curation_dir(curation_id) / "report.json").read_text(encoding="utf-8"))
    return Path(report["dataset_path"]).resolve(), report["counts"]["read"]


def run_card(workspace: Workspace, run_id: str) -> dict[str, Any]:
    return json.loads((workspace.run_dir(run_id) / "run_card.json").read_text(encoding="utf-8"))


def test_curate_decontaminates_against_the_recipes_eval_file(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    recipe, elsewhere = project
    workspace = Workspace(tmp_path / "ws")
    tunelab(elsewhere, "curate", os.path.relpath(recipe, elsewhere), "--workspace", str(workspace))
    (sft,) = workspace.curations_dir.glob("trips-*")
    (dpo,) = workspace.curations_dir.glob("trip-prefs-*")
    data = recipe.parent.resolve() / "data"
    assert curated_file(workspace, sft.name) == (data / "train.jsonl", len(TRAIN))
    assert curated_file(workspace, dpo.name) == (data / "prefs.jsonl", len(PREFS))
    assert dropped(workspace, sft.name) == {COPIES_EVAL: "trips-eval:0"}
    assert dropped(workspace, dpo.name) == {PREF_COPIES_EVAL: "trips-eval:1"}


def test_audit_with_recipe_decontaminates_against_the_recipes_eval_file(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    recipe, elsewhere = project
    data = recipe.parent / "data" / "train.jsonl"
    result = tunelab(
        elsewhere,
        "audit",
        os.path.relpath(data, elsewhere),
        "--recipe",
        os.path.relpath(recipe, elsewhere),
        "--workspace",
        str(tmp_path / "ws"),
    )
    # the audit names no rows: the decoy would drop two (two copies of it), the right file one
    # the count right after the reason, in every table that names it (the reason-examples table goes on to
    # evidence with numbers of its own: "content Jaccard 1.00")
    counts = [int(n) for n in re.findall(r"contaminated:eval\W+(?:False\s+)?(\d+)", result.stdout)]
    assert counts and set(counts) == {1}, result.stdout
    assert f"read {len(TRAIN)}" in result.stdout


@pytest.fixture(scope="module")
def sft_run(project: tuple[Path, Path]) -> str:
    """`tunelab train sft` on a workspace never curated: it curates the dataset itself first."""
    recipe, elsewhere = project
    return (
        tunelab(elsewhere, "train", "sft", os.path.relpath(recipe, elsewhere)).stdout.strip().splitlines()[-1]
    )


@pytest.mark.slow  # trains or generates with torch in a subprocess
def test_train_sft_curates_and_trains_on_the_recipes_files(project: tuple[Path, Path], sft_run: str) -> None:
    recipe, elsewhere = project
    workspace = Workspace(recipe.parent / "ws")  # workspace.dir: ws, beside the recipe
    assert not (elsewhere / "ws").exists()
    card = run_card(workspace, sft_run)
    assert card["metrics"]["global_step"] == 1
    assert Path(card["base_model"]) == workspace.model_dir("tunelab-tiny")
    curation = card["curation_id"]
    assert curated_file(workspace, curation) == (recipe.parent.resolve() / "data" / "train.jsonl", len(TRAIN))
    assert dropped(workspace, curation) == {COPIES_EVAL: "trips-eval:0"}
    assert not COPIES_DECOY & set(dropped(workspace, curation))
    assert (workspace.run_dir(sft_run) / "adapter").is_dir()


@pytest.mark.slow  # trains or generates with torch in a subprocess
def test_train_dpo_curates_its_dataset_against_the_recipes_eval_file(
    project: tuple[Path, Path], sft_run: str
) -> None:
    recipe, elsewhere = project
    workspace = Workspace(recipe.parent / "ws")
    result = tunelab(elsewhere, "train", "dpo", os.path.relpath(recipe, elsewhere), "--from-run", sft_run)
    dpo_run = result.stdout.strip().splitlines()[-1]
    card = run_card(workspace, dpo_run)
    curation = card["curation_id"]
    assert card["metrics"]["global_step"] == 1
    assert curated_file(workspace, curation) == (recipe.parent.resolve() / "data" / "prefs.jsonl", len(PREFS))
    assert dropped(workspace, curation) == {PREF_COPIES_EVAL: "trips-eval:1"}
    assert PREF_COPIES_DECOY not in dropped(workspace, curation)
    assert (workspace.run_dir(dpo_run) / "adapter").is_dir()


@pytest.mark.slow  # trains or generates with torch in a subprocess
def test_evaluate_reads_the_recipes_eval_set(project: tuple[Path, Path]) -> None:
    recipe, elsewhere = project
    workspace = Workspace(recipe.parent / "ws")
    result = tunelab(elsewhere, "evaluate", os.path.relpath(recipe, elsewhere), "--model", "base")
    eval_id = result.stdout.strip().splitlines()[-1]
    lines = workspace.predictions_file(eval_id).read_text(encoding="utf-8").splitlines()
    predictions = [json.loads(line) for line in lines if line.strip()]
    assert sorted({p["sample_id"] for p in predictions}) == [f"trips-eval:{i}" for i in range(len(EVAL))]
    assert {p["prompt"] for p in predictions} == {row["prompt"] for row in EVAL}
