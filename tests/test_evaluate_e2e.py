"""run_evaluate end to end: a tiny local Llama, base vs a quickly trained LoRA adapter, real warehouse."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.recipe import parse_recipe  # noqa: E402
from tunelab.workspace import Workspace  # noqa: E402

CITIES = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "수원"]
FOODS = ["김치찌개", "비빔밥", "떡볶이"]


def persona_rows() -> list[dict[str, Any]]:
    rows = []
    for city in CITIES:
        for food in FOODS:
            egen = len(rows) % 2 == 0
            rows.append(
                {
                    "sample_id": f"persona:{len(rows)}",
                    "prompt": f"{city}에서 {food} 맛집 알려줘",
                    "response": f"괜찮아요~ {city}의 {food}은 천천히 드셔도 좋아요"
                    if egen
                    else f"{city} {food}. 바로 가. 줄 서지 마.",
                    "label": "egen" if egen else "teto",
                }
            )
    return rows


def recipe_data(base_model: str) -> dict[str, Any]:
    return {
        "dataset": {"path": "persona.jsonl", "name": "persona"},
        "train": {
            "base_model": base_model,
            "quantization": "none",
            "compute_dtype": "float32",
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "sft": {
                "max_steps": 25,
                "learning_rate": 3e-3,
                "batch_size": 8,
                "max_length": 96,
                "logging_steps": 5,
                "save_steps": 1000,
                "warmup_ratio": 0.0,
            },
        },
        "evaluate": {
            "models": ["base", "sft"],
            "generation": {"max_new_tokens": 12, "batch_size": 3},
            "embedding_model": "use-v3",
        },
    }


def make_recipe(base_model: str) -> Any:
    return parse_recipe(recipe_data(base_model))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, str]:
    from tunelab.modeling.tiny import build_tiny_model
    from tunelab.train.sft import run_sft
    from tunelab.warehouse import store

    root = tmp_path_factory.mktemp("e2e")
    rows = persona_rows()
    model_dir = build_tiny_model(
        root / "tiny",
        [r[k] for r in rows for k in ("prompt", "response")],
        vocab_size=600,
        hidden_size=64,
        pretrain_steps=60,
    )
    workspace = root / "ws"
    curation = workspace / "curations" / "cur-e2e"
    curation.mkdir(parents=True)
    pl.DataFrame(rows[:-6]).write_parquet(curation / "train.parquet")
    pl.DataFrame(rows[-6:]).write_parquet(curation / "val.parquet")
    # the curation row `tunelab curate` would write, so "the latest curation of dataset persona" resolves
    store.ingest_curation(
        Workspace(workspace).warehouse,
        {"curation_id": "cur-e2e", "dataset": "persona", "kind": "sft", "created_at": None},
        pl.DataFrame({"sample_id": []}, schema={"sample_id": pl.Utf8}),
        pl.DataFrame(schema={"sample_id": pl.Utf8, "stage": pl.Utf8, "kept": pl.Boolean}),
        pl.DataFrame(),
    )
    recipe = make_recipe(str(model_dir))
    result = run_sft(recipe, workspace, curation_id="cur-e2e", show_progress=False)
    return recipe, workspace, result.run_id


def test_run_evaluate_base_vs_sft_stores_everything_and_rescoring_reproduces_it(
    trained: tuple[Any, Path, str],
) -> None:
    from tunelab.evaluate.runner import run_evaluate, score_file
    from tunelab.warehouse.store import query

    recipe, workspace, sft_run = trained
    db = Workspace(workspace).warehouse
    result = run_evaluate(recipe, workspace, show_progress=False)

    preds = query(
        db, "SELECT * FROM predictions WHERE eval_id = ? ORDER BY model, sample_id", [result.eval_id]
    )
    assert preds.height == 2 * 6
    assert preds.filter(pl.col("model") == "sft")["run_id"].unique().to_list() == [sft_run]
    assert preds.filter(pl.col("model") == "base")["run_id"].is_null().all()
    assert preds["reference"].to_list()[:6] == [
        r["response"] for r in sorted(persona_rows()[-6:], key=lambda r: r["sample_id"])
    ]
    assert (preds["latency_s"] > 0).all() and '"max_new_tokens": 12' in preds["gen_params"][0]
    base, sft = (preds.filter(pl.col("model") == m)["prediction"].to_list() for m in ("base", "sft"))
    assert base != sft  # the adapter changed what the model says

    evals = query(db, "SELECT eval_set, curation_id FROM evals WHERE eval_id = ?", [result.eval_id])
    assert evals.row(0) == ("persona:val", "cur-e2e")
    metrics = query(db, "SELECT model, metric, value FROM eval_metrics WHERE eval_id = ?", [result.eval_id])
    names = set(metrics["metric"])
    assert {
        "rouge1",
        "rouge2",
        "rougeL",
        "bleu",
        "bleu_corpus",
        "chrf",
        "chrf_corpus",
        "cosine",
        "label_acc",
    } <= names
    # scores are the per-sample ones, averaged: corpus rouge1 equals the mean of stored per-sample rows
    per_sample = query(
        db,
        "SELECT avg(value) AS v FROM scores WHERE eval_id = ? AND model = 'sft' AND metric = 'rouge1'",
        [result.eval_id],
    )["v"][0]
    corpus = metrics.filter((pl.col("model") == "sft") & (pl.col("metric") == "rouge1"))["value"][0]
    assert corpus == pytest.approx(per_sample)
    comparison = result.comparison
    assert set(comparison.estimates["model"]) == {"base", "sft"}
    assert set(zip(comparison.deltas["model"], comparison.deltas["baseline"], strict=True)) == {
        ("sft", "base")
    }
    rouge1 = comparison.estimates.filter(pl.col("metric") == "rouge1").to_dicts()
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] == result.predictions["sample_id"].n_unique()
               for r in rouge1)  # fmt: skip
    stored = query(db, "SELECT ci_low, ci_high, n FROM eval_metrics WHERE eval_id = ? AND metric = 'rouge1'",
                   [result.eval_id])  # fmt: skip
    assert stored["n"].to_list() == [r["n"] for r in rouge1]
    assert query(db, "SELECT count(*) AS k FROM eval_deltas WHERE eval_id = ?", [result.eval_id])["k"][0] > 0

    again = score_file(result.predictions_path, workspace)
    for table_name in ("scores", "eval_metrics"):
        sql = f"SELECT * EXCLUDE (eval_id) FROM {table_name} WHERE eval_id = ? ORDER BY ALL"
        assert query(db, sql, [again.eval_id]).equals(query(db, sql, [result.eval_id])), table_name


def test_evaluate_cli_with_model_option(trained: tuple[Any, Path, str], tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from tunelab.cli import app
    from tunelab.warehouse.store import query

    recipe, workspace, sft_run = trained
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(recipe_data(recipe.train.base_model), allow_unicode=True), encoding="utf-8"
    )
    result = CliRunner().invoke(
        app, ["evaluate", str(path), "--workspace", str(workspace), "--model", sft_run]
    )
    assert result.exit_code == 0, result.output
    eval_id = result.stdout.strip().splitlines()[-1]
    models = query(
        Workspace(workspace).warehouse,
        "SELECT DISTINCT model, run_id FROM predictions WHERE eval_id = ?",
        [eval_id],
    )
    assert models.rows() == [(sft_run, sft_run)]
    assert "evaluation " + eval_id in result.stdout  # table mode: the table, then the id on the last line

    as_json = CliRunner().invoke(
        app, ["evaluate", str(path), "-w", str(workspace), "--model", "sft", "--format", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)  # one JSON document, nothing else on stdout
    assert document["models"] == ["sft"] and document["eval_set"] == "persona:val"
    assert document["curation_id"] == "cur-e2e" and Path(document["predictions_path"]).is_file()
    assert {row["metric"] for row in document["metrics"]} >= {"rouge1", "chrf_corpus", "cosine"}
    assert all(row["model"] == "sft" for row in document["metrics"]) and document["deltas"] == []
    missing = CliRunner().invoke(
        app, ["evaluate", str(path), "--workspace", str(workspace), "--model", "no-such-run"]
    )
    assert missing.exit_code != 0 and "no-such-run" in str(missing.exception)


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(trained: tuple[Any, Path, str]) -> None:
    from tunelab.evaluate.config import GenerationSettings
    from tunelab.evaluate.generate import generate_texts, render_prompts, trained_datasets
    from tunelab.modeling.resolve import load_for_generation

    recipe, workspace, sft_run = trained
    model, tokenizer, _ = load_for_generation(
        sft_run, recipe.train, Workspace(workspace), trained_datasets(recipe)
    )
    rows = [
        {"prompt": "서울에서 김치찌개 맛집 알려줘"},
        {"prompt": "수원"},
        {"prompt": "대전에서 비빔밥 맛집 좀 알려줄래 정말 궁금해"},
    ]
    prompts = render_prompts(rows, "sft", tokenizer, None)
    assert prompts[0].endswith(
        "<|assistant|>\n"
    )  # rendered by the model's chat template, generation prompt on
    batched, latencies = generate_texts(
        model, tokenizer, prompts, GenerationSettings(max_new_tokens=10, batch_size=3)
    )
    single, _ = generate_texts(model, tokenizer, prompts, GenerationSettings(max_new_tokens=10, batch_size=1))
    assert batched == single
    assert any(text for text in batched) and len(latencies) == 3

    # sampling follows the recipe and its seed: same seed, same texts; the knobs reach generate()
    sampling = GenerationSettings(
        max_new_tokens=10, batch_size=3, do_sample=True, temperature=1.5, top_p=0.95, seed=7
    )
    first, _ = generate_texts(model, tokenizer, prompts, sampling)
    again, _ = generate_texts(model, tokenizer, prompts, sampling)
    assert first == again
    other_seeds = [
        generate_texts(model, tokenizer, prompts, sampling.model_copy(update={"seed": s}))[0] for s in (8, 9)
    ]
    assert any(texts != first for texts in other_seeds)


def test_missing_runs_fail_fast_when_asked_for_and_are_skipped_from_defaults(
    trained: tuple[Any, Path, str],
) -> None:
    from tunelab.errors import UserError
    from tunelab.evaluate.runner import run_evaluate

    recipe, workspace, _ = trained
    with pytest.raises(UserError, match="no finished dpo run for dataset 'persona'"):
        run_evaluate(recipe, workspace, models=["base", "dpo"], show_progress=False)
    data = recipe_data(recipe.train.base_model)
    del data["evaluate"]["models"]  # default [base, sft, dpo]; no DPO was trained here
    result = run_evaluate(parse_recipe(data), workspace, show_progress=False)
    assert sorted(set(result.predictions["model"])) == ["base", "sft"]
