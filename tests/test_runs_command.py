"""`tunelab runs`: key hyperparameters, the latest evaluation's headline with its interval, and the note."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.warehouse import store


def recipe(kind: str, lr: float, max_steps: int = -1) -> dict:
    trainer = {"learning_rate": lr, "epochs": 3.0, "max_steps": max_steps, "batch_size": 4, "grad_accum": 2}
    return {"train": {"lora": {"r": 8}, kind: {**trainer, "max_length": 512, "beta": 0.2}}}


def evaluation(db: Path, eval_id: str, created_at: datetime, model: str, run_id: str, rouge: float) -> None:
    predictions = pl.DataFrame(
        {"model": [model], "run_id": [run_id], "sample_id": ["s1"], "prediction": ["답"], "reference": ["답"]}
    )
    metrics = pl.DataFrame(
        {
            "model": [model, model],
            "metric": ["rougeL", "cosine"],
            "value": [rouge, 0.9],
            "ci_low": [rouge - 0.05, 0.85],
            "ci_high": [rouge + 0.05, 0.95],
            "n": [40, 40],
        }
    )
    store.ingest_eval(
        db, {"eval_id": eval_id, "eval_set": "held-out", "created_at": created_at}, predictions,
        pl.DataFrame(schema={"model": pl.Utf8, "sample_id": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64}),
        metrics,
    )  # fmt: skip


def test_runs_shows_hyperparameters_latest_eval_headline_and_note(tmp_path: Path) -> None:
    db = tmp_path / "tunelab.duckdb"
    store.start_run(
        db,
        {"run_id": "sft-1", "kind": "sft", "recipe": recipe("sft", 2e-4), "note": "persona v2, 짧은 답",
         "started_at": datetime(2026, 1, 1)},
    )  # fmt: skip
    store.start_run(
        db,
        {"run_id": "dpo-1", "kind": "dpo", "parent_run_id": "sft-1", "recipe": recipe("dpo", 5e-6, 30),
         "started_at": datetime(2026, 1, 2)},
    )  # fmt: skip
    # two evaluations of the SFT adapter: the later one is the headline, whatever its eval id sorts as
    evaluation(db, "eval-b", datetime(2026, 1, 3), "sft", "sft-1", 0.30)
    evaluation(db, "eval-a", datetime(2026, 1, 4), "sft-v2", "sft-1", 0.41)

    result = CliRunner().invoke(app, ["runs", "--warehouse", str(db), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["run_id"]: row for row in json.loads(result.stdout)}
    sft, dpo = rows["sft-1"], rows["dpo-1"]
    assert sft["hyperparameters"] == "lr=0.0002 epochs=3.0 batch=4x2 max_len=512 r=8"
    assert dpo["hyperparameters"] == "lr=0.000005 steps=30 batch=4x2 max_len=512 r=8 beta=0.2"
    assert sft["latest_eval"] == "rougeL 0.410 [0.360, 0.460] n=40" and sft["eval_id"] == "eval-a"
    assert sft["note"] == "persona v2, 짧은 답"
    assert dpo["latest_eval"] is None and dpo["note"] is None
