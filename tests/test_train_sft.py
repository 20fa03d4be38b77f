"""Real SFT runs (trl + peft) on the tiny offline model, on CPU, logged to a real DuckDB warehouse."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.errors import UserError  # noqa: E402
from tunelab.modeling.loading import checkpointing_alias_ignored  # noqa: E402
from tunelab.recipe import Recipe, parse_recipe  # noqa: E402
from tunelab.warehouse import store  # noqa: E402
from tunelab.workspace import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # real trl training runs
CITIES = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "수원", "제주", "강릉"]
FOODS = ["김치찌개", "비빔밥", "떡볶이", "냉면"]
SYSTEM = "너는 밝고 친절한 테토야."


def persona_rows() -> list[dict[str, Any]]:
    """40 templated Korean persona rows: easy enough that a tiny model's loss must fall within 30 steps."""
    rows = []
    for city in CITIES:
        for food in FOODS:
            rows.append(
                {
                    "sample_id": f"persona:{len(rows)}",
                    "system": SYSTEM,
                    "prompt": f"{city}에서 {food} 맛집 알려줘",
                    "response": f"테토가 추천해요! {city}의 {food}은 정말 맛있어요~",
                    "label": "teto",
                }
            )
    return rows


def preference_rows() -> list[dict[str, Any]]:
    return [
        {
            "sample_id": f"prefs:{i}",
            "prompt": f"{city}에서 뭐 먹을까?",
            "chosen": f"테토가 추천해요! {city}의 비빔밥은 정말 맛있어요~",
            "rejected": f"{city}에는 식당이 있습니다.",
        }
        for i, city in enumerate(CITIES * 2)
    ]


def write_curation(workspace: Path, curation_id: str, rows: list[dict[str, Any]], val: int = 4) -> str:
    out = workspace / "curations" / curation_id
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows[:-val]).write_parquet(out / "train.parquet")
    pl.DataFrame(rows[-val:]).write_parquet(out / "val.parquet")
    return curation_id


def register_curation(workspace: Path, curation_id: str, dataset: str, kind: str) -> None:
    """The warehouse row curation would write, so "latest curation of dataset X" lookups find it."""
    from tunelab.warehouse import store

    store.ingest_curation(
        Workspace(workspace).warehouse,
        {"curation_id": curation_id, "dataset": dataset, "kind": kind, "created_at": None},
        pl.DataFrame({"sample_id": []}, schema={"sample_id": pl.Utf8}),
        pl.DataFrame(schema={"sample_id": pl.Utf8, "stage": pl.Utf8, "kept": pl.Boolean}),
        pl.DataFrame(),
    )


def build_test_model(root: Path) -> Path:
    from tunelab.modeling.tiny import build_tiny_model

    texts = [r[k] for r in persona_rows() for k in ("system", "prompt", "response")]
    texts += [r[k] for r in preference_rows() for k in ("prompt", "chosen", "rejected")]
    return build_tiny_model(root / "tiny", texts, vocab_size=600, hidden_size=64, pretrain_steps=60)


def make_recipe(base_model: str, quantization: str = "none", **sft: Any) -> Recipe:
    sft_settings = {
        "max_steps": 30,
        "learning_rate": 3e-3,
        "batch_size": 8,
        "max_length": 96,
        "logging_steps": 1,
        "save_steps": 1000,
        "warmup_ratio": 0.0,
        **sft,
    }
    return parse_recipe(
        {
            "dataset": {"path": "persona.jsonl", "name": "persona"},
            "train": {
                "base_model": base_model,
                "quantization": quantization,
                "compute_dtype": "float32",
                "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
                "sft": sft_settings,
                "dpo": {
                    "dataset": {"path": "prefs.jsonl", "name": "prefs", "kind": "dpo"},
                    "max_steps": 6,
                    "learning_rate": 1e-3,
                    "batch_size": 4,
                    "max_length": 96,
                    "logging_steps": 1,
                    "save_steps": 1000,
                },
            },
        }
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("model"))


def train_log(workspace: Path, run_id: str) -> pl.DataFrame:
    from tunelab.warehouse import store

    return store.query(
        Workspace(workspace).warehouse, "select * from train_log where run_id = ? order by step", [run_id]
    )


def assert_loss_falls(log: pl.DataFrame, margin: float) -> None:
    losses = log.filter(pl.col("loss").is_not_null()).sort("step")["loss"].to_list()
    assert len(losses) >= 20
    assert all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first - last > margin, (first, last)


def generate_reply(model: Any, tokenizer: Any, row: dict[str, Any]) -> list[int]:
    from tunelab.modeling.chat import generation_prompt

    prompt = generation_prompt(row, "sft", tokenizer)
    encoded = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    out = model.generate(**encoded, max_new_tokens=12, do_sample=False)
    return out[0, encoded.input_ids.shape[1] :].tolist()


def test_lora_sft_learns_logs_every_row_and_reloads(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunelab.evaluate.generate import trained_datasets
    from tunelab.modeling.resolve import load_for_generation
    from tunelab.train.sft import run_sft
    from tunelab.warehouse import store

    curation = write_curation(tmp_path, "cur-sft", persona_rows())
    recipe = make_recipe(str(tiny_model))
    import trl  # noqa: F401 - import-time warnings of the libraries themselves are not our calls

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_sft(recipe, tmp_path, curation_id=curation, show_progress=False)
    ours = [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
    assert ours == [], [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in ours]

    run = store.get_run(Workspace(tmp_path).warehouse, result.run_id)
    assert run["status"] == "finished" and run["curation_id"] == curation and run["kind"] == "sft"
    assert run["adapter_path"] == str(result.adapter_dir)
    log = train_log(tmp_path, result.run_id)
    # one row per training step (logging_steps=1), plus the final summary and eval rows
    train_steps = log.filter(pl.col("loss").is_not_null())["step"].to_list()
    assert train_steps == list(range(1, 31))
    assert log.filter(pl.col("eval_loss").is_not_null()).height >= 1
    assert log["learning_rate"].drop_nulls().len() == 30 and log["grad_norm"].drop_nulls().len() == 30
    assert_loss_falls(log, margin=0.5)
    card = json.loads((result.output_dir / "run_card.json").read_text())
    assert card["curation_id"] == curation and card["metrics"]["global_step"] == 30
    assert math.isfinite(card["metrics"]["eval_loss"])

    # the adapter reloads onto the base and changes what the model says
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    row = persona_rows()[0]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(result.adapter_dir)
    base_reply = generate_reply(base, tokenizer, row)
    with checkpointing_alias_ignored():  # peft 0.21's own FutureWarning, not ours
        tuned = PeftModel.from_pretrained(base, str(result.adapter_dir))
    tuned_reply = generate_reply(tuned, tokenizer, row)
    assert len(tuned_reply) > 0 and tuned_reply != base_reply

    # evaluation's loader resolves "sft" through the warehouse (curation of this recipe's dataset)
    register_curation(tmp_path, curation, "persona", "sft")
    model, tok, run_id = load_for_generation(
        "sft", recipe.train, Workspace(tmp_path), trained_datasets(recipe)
    )
    assert run_id == result.run_id and tok.padding_side == "left"
    # merged into the full-precision base for generation (one matmul per projection), same greedy reply
    assert not isinstance(model, PeftModel) and not any(
        "lora_" in name for name, _ in model.named_parameters()
    )
    with torch.no_grad():
        assert generate_reply(model, tok, row) == tuned_reply


def test_four_bit_sft_trains_and_logs(tiny_model: Path, tmp_path: Path) -> None:
    from tunelab.train.sft import run_sft

    curation = write_curation(tmp_path, "cur-4bit", persona_rows())
    result = run_sft(
        make_recipe(str(tiny_model), quantization="nf4"), tmp_path, curation, show_progress=False
    )
    log = train_log(tmp_path, result.run_id)
    assert_loss_falls(log, margin=0.3)
    card = json.loads((result.output_dir / "run_card.json").read_text())
    # every linear layer of the tiny Llama (2 layers x 7) was trained through a 4-bit base weight
    assert card["linear4bit_modules"] == 14
    config = json.loads((Path(tiny_model) / "config.json").read_text())
    assert "quantization_config" not in config  # the base on disk stays full precision
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(result.adapter_dir)).base_model_name_or_path == str(tiny_model)


def test_bad_model_path_fails_in_one_line_with_failed_row(tmp_path: Path) -> None:
    from tunelab.train.sft import run_sft
    from tunelab.warehouse import store

    curation = write_curation(tmp_path, "cur-bad", persona_rows())
    missing = tmp_path / "no-such-model"
    with pytest.raises(UserError) as caught:
        run_sft(make_recipe(str(missing)), tmp_path, curation_id=curation, show_progress=False)
    message = str(caught.value)
    assert "\n" not in message and "train.base_model" in message and str(missing) in message
    runs = store.query(Workspace(tmp_path).warehouse, "select status, error from runs")
    assert runs["status"].to_list() == ["failed"]
    assert "no-such-model" in runs["error"][0]


def test_cli_bad_model_path_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    curation = write_curation(tmp_path, "cur-cli", persona_rows())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "dataset: {path: persona.jsonl, name: persona}\n"
        "train: {base_model: ./missing-model, quantization: none}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "train", "sft", str(recipe), "--workspace", str(tmp_path),
         "--curation", curation],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "recipe.yaml: train.base_model: cannot load" in errors[0]
    assert "Traceback" not in done.stderr


def test_cli_train_prints_the_run_id_alone_on_stdout(tiny_model: Path, tmp_path: Path) -> None:
    """`RUN=$(tunelab train sft r.yaml)`: stdout is the run id; progress (step/total, loss) and the adapter go
    to stderr, with no third-party warning or hint among them."""
    curation = write_curation(tmp_path, "cur-cli-ok", persona_rows())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "dataset: {path: persona.jsonl, name: persona}\n"
        f"train: {{base_model: {tiny_model}, quantization: none, compute_dtype: float32,\n"
        "        lora: {r: 8, alpha: 16, dropout: 0.0},\n"
        "        sft: {max_steps: 4, batch_size: 8, max_length: 96, logging_steps: 1}}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "train", "sft", str(recipe), "-w", str(tmp_path / "ws"),
         "--curation", curation],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr  # the curation lives in tmp_path, not in ws
    assert "--curation: no curated data for 'cur-cli-ok'" in done.stderr and done.stdout == ""
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "train", "sft", str(recipe), "-w", str(tmp_path),
         "--curation", curation, "--note", "4 steps, r=8"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert done.stdout == run_id + "\n" and run_id.startswith("sft-")
    assert store.get_run(tmp_path / "tunelab.duckdb", run_id)["note"] == "4 steps, r=8"
    assert re.search(rf"^train {run_id} step  4/4 \(100%\)  \d+ s  loss \d+\.\d{{4}}$", done.stderr, re.M), (
        done.stderr
    )
    assert f"adapter: {tmp_path / 'runs' / run_id / 'adapter'}" in done.stderr
    noise = [line for line in done.stderr.splitlines() if re.search(r"Warning|warn|kernels|it/s", line)]
    assert noise == [], noise


RESUMABLE_RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train_sft import make_recipe
from tunelab.train.sft import run_sft
run_sft(make_recipe({model!r}, max_steps=120, save_steps=5), Path({workspace!r}), {curation!r}, show_progress=False)
"""


def test_killed_run_resumes_from_its_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    from tunelab.train.sft import run_sft
    from tunelab.warehouse import store

    curation = write_curation(tmp_path, "cur-resume", persona_rows())
    script = RESUMABLE_RUN.format(
        tests=str(Path(__file__).parent), model=str(tiny_model), workspace=str(tmp_path), curation=curation
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    checkpoints: list[Path] = []
    while time.monotonic() < deadline and child.poll() is None:
        # wait for the second checkpoint: the first one's logs are surely flushed by then
        checkpoints = list(tmp_path.glob("runs/*/checkpoints/checkpoint-10/trainer_state.json"))
        if checkpoints:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert checkpoints, "no checkpoint was written before the deadline"
    run_id = checkpoints[0].parents[2].name
    assert store.get_run(Workspace(tmp_path).warehouse, run_id)["status"] == "running"  # killed: never closed

    result = run_sft(make_recipe(str(tiny_model), max_steps=120, save_steps=5), tmp_path, resume=run_id,
                     show_progress=False)  # fmt: skip
    assert result.run_id == run_id
    assert result.metrics["resumed_from_step"] >= 10
    assert result.metrics["global_step"] == 120
    run = store.get_run(Workspace(tmp_path).warehouse, run_id)
    assert run["status"] == "finished" and run["error"] is None
    steps = train_log(tmp_path, run_id).filter(pl.col("loss").is_not_null())["step"].to_list()
    assert steps == list(range(1, 121))  # no gaps, nothing logged twice across the kill


def test_sft_curates_first_when_no_curation_exists_and_merges(tiny_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.recipe import load_recipe
    from tunelab.train.sft import run_sft
    from tunelab.warehouse import store

    source = tmp_path / "persona.jsonl"
    rows = persona_rows()
    lines = [json.dumps({"system": r["system"], "prompt": r["prompt"], "response": r["response"],
                         "label": r["label"]}, ensure_ascii=False) for r in rows]  # fmt: skip
    source.write_text("\n".join(lines + lines[:3]) + "\n", encoding="utf-8")  # 3 exact duplicates
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        "dataset: {path: persona.jsonl, name: persona}\n"
        "curate: {stages: [schema, normalize, exact, split], split: {val_ratio: 0.1, seed: 0}}\n"
        f"train: {{base_model: {tiny_model}, quantization: none, compute_dtype: float32,\n"
        "        lora: {r: 8, alpha: 16, dropout: 0.0},\n"
        "        sft: {max_steps: 8, learning_rate: 3.0e-3, batch_size: 8, max_length: 96, logging_steps: 2}}\n",
        encoding="utf-8",
    )
    recipe = load_recipe(recipe_file)
    result = run_sft(recipe, tmp_path / "ws", merge=True, show_progress=False)

    db = Workspace(tmp_path / "ws").warehouse
    curation_id = store.latest_curation(db, "persona")
    assert curation_id is not None and store.get_run(db, result.run_id)["curation_id"] == curation_id
    curation = store.get_curation(db, curation_id)
    assert curation["kept"] == len(rows)  # the duplicates were curated away before training
    card = json.loads((result.output_dir / "run_card.json").read_text())
    assert card["data_version"] == curation["data_version"] and card["train_rows"] + card["val_rows"] == len(
        rows
    )

    # the merged model alone generates what base + adapter generates
    assert result.merged_dir == result.output_dir / "merged"
    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    with checkpointing_alias_ignored():
        adapted = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model), str(result.adapter_dir)
        )
    row = rows[5]
    assert generate_reply(merged, tokenizer, row) == generate_reply(adapted, tokenizer, row)


def test_ctrl_c_marks_the_run_failed_and_keeps_its_logs(tiny_model: Path, tmp_path: Path) -> None:
    from tunelab.warehouse import store

    curation = write_curation(tmp_path, "cur-int", persona_rows())
    script = RESUMABLE_RUN.format(
        tests=str(Path(__file__).parent), model=str(tiny_model), workspace=str(tmp_path), curation=curation
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if list(tmp_path.glob("runs/*/checkpoints/checkpoint-5/trainer_state.json")):
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0, stderr[-2000:]
    runs = store.query(Workspace(tmp_path).warehouse, "select run_id, status, error from runs").to_dicts()
    assert (
        len(runs) == 1 and runs[0]["status"] == "failed" and runs[0]["error"].startswith("KeyboardInterrupt")
    )
    logged = train_log(tmp_path, runs[0]["run_id"]).filter(pl.col("loss").is_not_null())["step"].to_list()
    assert logged[:5] == [1, 2, 3, 4, 5]  # rows up to the interrupt were flushed, not lost
