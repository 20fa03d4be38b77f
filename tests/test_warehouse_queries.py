"""The example queries of docs/warehouse.md, run against a warehouse filled through the store API with
rows shaped like the demo's (models base/sft/dpo, ids like 'demo-persona:12'), asserting the exact rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from tunelab.warehouse import store

README = Path(__file__).resolve().parents[1] / "docs" / "warehouse.md"

N_SAMPLES = 260  # ids match the demo's planted defects where docs/warehouse.md names one
DROPS = {  # sample index -> (stage, reason, ref index, score, evidence)
    3: ("exact", "exact_dup", 1, 1.0, "same content_hash"),
    7: ("minhash", "near_dup_minhash", 2, 0.91, "jaccard=0.91 vs demo-persona:2"),
    8: ("length", "too_long:response_tokens>2048", None, 2304.0, "response has 2304 tokens"),
    12: ("semantic", "near_dup_semantic", 5, 0.953, "cosine=0.953 vs demo-persona:5"),
    20: ("minhash", "near_dup_minhash", 19, 0.88, "jaccard=0.88 vs demo-persona:19"),
    246: ("minhash", "near_dup_minhash", 139, 0.8198, "jaccard=0.8198 vs demo-persona:139"),
}
READ = N_SAMPLES + 1  # one quarantined line
VAL = [i for i in range(N_SAMPLES) if i % 3 == 1 and i not in DROPS]
MODELS = {"base": None, "sft": "run-sft-1", "dpo": "run-dpo-1"}


def sid(i: int) -> str:
    return f"demo-persona:{i}"


def prompt(i: int) -> str:
    return f"질문 {i % 7}: 테토 성격을 설명해 줘" if i not in (3,) else prompt(1)


def response(i: int) -> str:
    return f"답변 {i}: 테토는 솔직하고 활발합니다" if i != 3 else response(1)


def rouge(model: str, i: int) -> float:
    """Deterministic per-sample ROUGE-L with a spread, so the dpo-sft ranking is non-trivial."""
    base = {"base": 0.20, "sft": 0.50, "dpo": 0.55}[model]
    wobble = ((i * 37) % 11) / 50 if model == "dpo" else ((i * 13) % 7) / 50
    return round(base + wobble - 0.1, 4)


def fill_demo_warehouse(db: Path) -> None:
    samples = pl.DataFrame(
        {
            "sample_id": [sid(i) for i in range(N_SAMPLES)],
            "dataset": ["demo-persona"] * N_SAMPLES,
            "source_row": list(range(N_SAMPLES)),
            "source_line": [i + 1 for i in range(N_SAMPLES)],
            "label": ["teto" if i % 2 else "egen" for i in range(N_SAMPLES)],
            "content_hash": [f"h{i if i != 3 else 1}" for i in range(N_SAMPLES)],
            "system": [None] * N_SAMPLES,
            "prompt": [prompt(i) for i in range(N_SAMPLES)],
            "response": [response(i) for i in range(N_SAMPLES)],
            "field_types": ['{"prompt":"str","response":"str"}'] * N_SAMPLES,
        }
    )
    rows = []
    for i in range(N_SAMPLES):
        if i == 2:  # a normalize annotation: kept, not a drop
            rows.append((sid(i), "normalize", True, "normalized:nfc", None, None, "NFC changed 1 char"))
        if i in DROPS:
            stage, reason, ref, score, evidence = DROPS[i]
            rows.append((sid(i), stage, False, reason, None if ref is None else sid(ref), score, evidence))
        else:
            rows.append((sid(i), "final", True, None, None, None, f"split={'val' if i in VAL else 'train'}"))
    decisions = pl.DataFrame(
        rows,
        schema=["sample_id", "stage", "kept", "reason", "ref_sample_id", "score", "evidence"],
        orient="row",
    )
    quarantine = pl.DataFrame(
        {
            "dataset": ["demo-persona"],
            "source_file": ["persona.jsonl"],
            "source_line": [42],
            "source_row": [41],
            "error": ["persona.jsonl:42: invalid JSON"],
            "raw": ['{"instruction": '],
        }
    )
    store.ingest_curation(
        db,
        {
            "curation_id": "cur-persona-1",
            "dataset": "demo-persona",
            "dataset_path": "/demo/persona.jsonl",
            "kind": "sft",
            "data_version": "dv-persona-aaaa",
            "recipe": {"dataset": {"name": "demo-persona"}, "curate": {"stages": ["exact", "minhash"]}},
            "created_at": "2026-11-22T04:00:00+00:00",
            "read": READ,
            "kept": N_SAMPLES - len(DROPS),
            "dropped": len(DROPS),
            "quarantined": 1,
            "report": {"read": READ},
            "out_dir": "ws/curations/cur-persona-1",
        },
        samples,
        decisions,
        quarantine,
    )
    prefs = pl.DataFrame(
        {
            "sample_id": [f"demo-prefs:{i}" for i in range(4)],
            "prompt": [f"p{i}" for i in range(4)],
            "chosen": ["good"] * 4,
            "rejected": ["bad"] * 4,
        }
    )
    prefs_decisions = pl.DataFrame(
        {
            "sample_id": prefs["sample_id"],
            "stage": ["final"] * 4,
            "kept": [True] * 4,
            "reason": [None] * 4,
            "ref_sample_id": [None] * 4,
            "score": [None] * 4,
            "evidence": ["split=train"] * 4,
        }
    )
    store.ingest_curation(
        db,
        {
            "curation_id": "cur-prefs-1",
            "dataset": "demo-prefs",
            "kind": "dpo",
            "data_version": "dv-prefs-bbbb",
            "created_at": "2026-11-22T04:01:00+00:00",
            "read": 4,
            "kept": 4,
            "dropped": 0,
            "quarantined": 0,
        },
        prefs,
        prefs_decisions,
        pl.DataFrame(),
    )
    store.start_run(
        db,
        {"run_id": "run-sft-1", "kind": "sft", "curation_id": "cur-persona-1", "base_model": "tiny-llama",
         "recipe": {"train": {"sft": {"epochs": 1}}}, "started_at": "2026-11-22T04:02:00+00:00"},
    )  # fmt: skip
    store.log_train(
        db, "run-sft-1", [{"step": s, "epoch": s / 5, "loss": 3.0 - 0.4 * s} for s in range(1, 6)]
    )
    store.finish_run(db, "run-sft-1", "finished", adapter_path="ws/runs/run-sft-1/adapter")
    store.start_run(
        db,
        {"run_id": "run-dpo-1", "kind": "dpo", "curation_id": "cur-prefs-1", "parent_run_id": "run-sft-1",
         "base_model": "tiny-llama", "started_at": "2026-11-22T04:03:00+00:00"},
    )  # fmt: skip
    store.log_train(db, "run-dpo-1", [{"step": 1, "loss": 0.69, "rewards_margins": 0.01}])
    store.finish_run(db, "run-dpo-1", "finished", adapter_path="ws/runs/run-dpo-1/adapter")

    predictions, scores, metrics = [], [], []
    for model, run_id in MODELS.items():
        for i in VAL:
            predictions.append((model, run_id, sid(i), prompt(i), response(i), f"{model} answer {i}", 0.1))
            scores.append((model, sid(i), "rougeL", rouge(model, i), "rougeL|tok=kiwi"))
            scores.append((model, sid(i), "bleu", 10 * rouge(model, i), "BLEU|tok:ko-mecab"))
        mean = sum(rouge(model, i) for i in VAL) / len(VAL)
        metrics.append((model, "rougeL", mean, "rougeL|tok=kiwi"))
        metrics.append((model, "bleu", 10 * mean, "BLEU|tok:ko-mecab"))
    store.ingest_eval(
        db,
        {"eval_id": "eval-1", "eval_set": "cur-persona-1:val", "curation_id": "cur-persona-1",
         "created_at": "2026-11-22T04:04:00+00:00", "params": {"max_new_tokens": 64}},
        pl.DataFrame(predictions, schema=["model", "run_id", "sample_id", "prompt", "reference", "prediction",
                                          "latency_s"], orient="row"),
        pl.DataFrame(scores, schema=["model", "sample_id", "metric", "value", "signature"], orient="row"),
        pl.DataFrame(metrics, schema=["model", "metric", "value", "signature"], orient="row"),
    )  # fmt: skip


def readme_queries() -> dict[str, str]:
    """Every ```sql block of docs/warehouse.md that carries a name (```sql drop_reasons), by name."""
    text = README.read_text(encoding="utf-8")
    return dict(re.findall(r"```sql (\w+)\n(.*?)```", text, flags=re.S))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("wh") / "tunelab.duckdb"
    fill_demo_warehouse(db)
    return db


@pytest.fixture(scope="module")
def queries() -> dict[str, str]:
    return readme_queries()


def test_readme_has_every_query(queries: dict[str, str]) -> None:
    assert set(queries) >= {"drop_reasons", "why_dropped", "compare_rouge", "worst_dpo_vs_sft", "run_lineage",
                            "sample_lineage", "all_duplicates"}  # fmt: skip


def test_drop_reasons_per_stage(demo_db: Path, queries: dict[str, str]) -> None:
    rows = store.query(demo_db, queries["drop_reasons"]).rows()
    assert rows == [
        ("minhash", "near_dup_minhash", 3, round(100 * 3 / READ, 1)),
        ("exact", "exact_dup", 1, round(100 / READ, 1)),
        ("length", "too_long:response_tokens>2048", 1, round(100 / READ, 1)),
        ("semantic", "near_dup_semantic", 1, round(100 / READ, 1)),
    ]


def test_why_sample_was_dropped_with_both_texts(demo_db: Path, queries: dict[str, str]) -> None:
    rows = store.query(demo_db, queries["why_dropped"]).to_dicts()
    assert len(rows) == 1
    row = rows[0]
    assert row["sample_id"] == "demo-persona:246" and row["duplicate_of"] == "demo-persona:139"
    assert (row["stage"], row["reason"], row["score"]) == ("minhash", "near_dup_minhash", 0.8198)
    assert row["prompt"] == prompt(246) and row["duplicate_prompt"] == prompt(139)
    assert row["response"] == response(246) and row["duplicate_response"] == response(139)


def test_all_duplicates_most_similar_first(demo_db: Path, queries: dict[str, str]) -> None:
    rows = (
        store.query(demo_db, queries["all_duplicates"])
        .select("sample_id", "similarity", "duplicate_of")
        .rows()
    )
    assert rows == [
        ("demo-persona:3", 1.0, "demo-persona:1"),
        ("demo-persona:12", 0.953, "demo-persona:5"),
        ("demo-persona:7", 0.91, "demo-persona:2"),
        ("demo-persona:20", 0.88, "demo-persona:19"),
        ("demo-persona:246", 0.82, "demo-persona:139"),
    ]


def test_runs_compared_by_rouge_l(demo_db: Path, queries: dict[str, str]) -> None:
    frame = store.query(demo_db, queries["compare_rouge"])
    means = {m: sum(rouge(m, i) for i in VAL) / len(VAL) for m in MODELS}
    assert frame["model"].to_list() == ["dpo", "sft", "base"]
    for row in frame.to_dicts():
        assert row["rougeL"] == pytest.approx(round(means[row["model"]], 4))
        assert row["delta_vs_base"] == pytest.approx(round(means[row["model"]] - means["base"], 4))
        expected_pct = 100 * (means[row["model"]] - means["base"]) / means["base"]
        assert row["delta_pct"] == pytest.approx(round(expected_pct, 1))


def test_ten_worst_dpo_predictions_vs_sft(demo_db: Path, queries: dict[str, str]) -> None:
    frame = store.query(demo_db, queries["worst_dpo_vs_sft"])
    expected = sorted(VAL, key=lambda i: (rouge("dpo", i) - rouge("sft", i), sid(i)))[:10]
    assert len(VAL) > 10 and frame.height == 10
    assert frame["sample_id"].to_list() == [sid(i) for i in expected]
    first = frame.row(0, named=True)
    i = expected[0]
    assert first["dpo_minus_sft"] == pytest.approx(round(rouge("dpo", i) - rouge("sft", i), 4))
    assert first["sft_prediction"] == f"sft answer {i}" and first["dpo_prediction"] == f"dpo answer {i}"
    assert first["reference"] == response(i)


def test_curation_and_data_version_of_each_run(demo_db: Path, queries: dict[str, str]) -> None:
    rows = store.query(demo_db, queries["run_lineage"]).rows()
    assert rows == [
        ("run-sft-1", "sft", "finished", None, "demo-persona", "cur-persona-1", "dv-persona-aaaa", "tiny-llama",
         pytest.approx(1.0)),
        ("run-dpo-1", "dpo", "finished", "run-sft-1", "demo-prefs", "cur-prefs-1", "dv-prefs-bbbb", "tiny-llama",
         pytest.approx(0.69)),
    ]  # fmt: skip


def test_one_sample_lineage(demo_db: Path, queries: dict[str, str]) -> None:
    frame = store.query(demo_db, queries["sample_lineage"])
    # demo-persona:1 is in val: it fed the SFT run directly and the DPO run through its parent
    assert frame.select("run_id", "via_parent_run", "model").rows() == [
        ("run-dpo-1", "run-sft-1", "dpo"),
        ("run-sft-1", None, "sft"),
    ]
    assert set(frame["data_version"]) == {"dv-persona-aaaa"} and set(frame["evidence"]) == {"split=val"}
    assert frame["rougeL"].to_list() == [pytest.approx(rouge("dpo", 1)), pytest.approx(rouge("sft", 1))]


def test_a_dropped_sample_fed_no_run(demo_db: Path) -> None:
    frame = store.query(demo_db, "SELECT * FROM v_lineage WHERE sample_id = 'demo-persona:246'")
    assert frame.select("kept", "reason", "ref_sample_id", "data_version", "run_id", "model").rows() == [
        (False, "near_dup_minhash", "demo-persona:139", "dv-persona-aaaa", None, None)
    ]


def test_queries_run_through_tunelab_sql(demo_db: Path, queries: dict[str, str]) -> None:
    """The same text goes through the user-SQL path (parser pre-check + locked read-only connection)."""
    from tunelab.warehouse.usersql import run_user_sql

    for name, sql in queries.items():
        assert run_user_sql(demo_db, sql).height > 0, name


@pytest.mark.slow
def test_every_readme_query_returns_rows_on_the_real_demo(
    demo_workspace: Path, queries: dict[str, str]
) -> None:
    """The issue's "done when": after `tunelab demo`, each README query runs through `tunelab sql`."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name, sql in queries.items():
        out = subprocess.run(
            [sys.executable, "-m", "tunelab.cli", "sql", sql, "--workspace", str(demo_workspace), "--format", "json"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, (name, out.stderr)
        assert json.loads(out.stdout), f"README query {name} returned no rows on the demo warehouse"
