"""The dashboard's SQL against a small warehouse written through the real warehouse API.

`build_warehouse` is shared by the other dashboard test modules (AppTest pages, browser).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tunelab.dashboards import console, queries
from tunelab.dashboards.diffview import compare_texts, highlight_diff
from tunelab.errors import UserError
from tunelab.warehouse import store

CURATION = "cur-persona-1"
EVAL = "eval-persona-1"
# Known texts the page tests and the browser test look for.
KOREAN_PROMPT = "서울의 인구는 몇 명인가요?"
KOREAN_REPRESENTATIVE = "오늘 날씨가 정말 좋네요. 산책하러 갈까요?"
KOREAN_NEAR_DUP = "오늘 날씨가 정말 좋네요! 산책하러 가실래요?"

PROMPTS = [
    (KOREAN_PROMPT, "서울의 인구는 약 천만 명입니다.", "friendly"),
    ("김치찌개 끓이는 법을 알려주세요.", "돼지고기와 김치를 볶은 뒤 물을 붓고 끓입니다.", "friendly"),
    ("파이썬에서 리스트를 정렬하려면?", "sorted() 함수나 list.sort() 메서드를 쓰세요.", "teto"),
    ("주말에 뭐 하면 좋을까요?", "가까운 공원에 산책을 가 보세요.", "teto"),
    ("한국의 수도는 어디인가요?", "한국의 수도는 서울입니다.", "friendly"),
    ("커피와 차 중 무엇이 더 건강한가요?", "둘 다 적당히 마시면 괜찮습니다.", "teto"),
]


def _samples() -> pl.DataFrame:
    """20 rows read, 2 quarantined, 18 samples; 6 get dropped by 4 stages, 12 kept."""
    rows = []
    for i in range(18):
        prompt, response, label = PROMPTS[i % len(PROMPTS)]
        rows.append({"sample_id": f"demo-persona:{i}", "source_row": i, "source_line": i + 1,
                     "label": label, "prompt": f"{prompt} ({i})", "response": response})  # fmt: skip
    rows[3]["prompt"], rows[3]["response"] = KOREAN_REPRESENTATIVE, "네, 좋아요."
    rows[7]["prompt"], rows[7]["response"] = KOREAN_NEAR_DUP, "네, 좋아요."
    rows[8]["prompt"], rows[8]["response"] = KOREAN_REPRESENTATIVE + " 같이", "네, 좋아요."
    rows[5]["response"] = "네"  # too short
    rows[9]["prompt"], rows[9]["response"] = rows[0]["prompt"], rows[0]["response"]  # exact duplicates of 0
    rows[10]["prompt"], rows[10]["response"] = rows[0]["prompt"], rows[0]["response"]
    return pl.DataFrame(rows)


def _decisions() -> pl.DataFrame:
    drops = [
        ("demo-persona:5", "length", "too_short:response_chars<5", None, 1.0, "response has 1 chars"),
        ("demo-persona:9", "exact", "exact_dup", "demo-persona:0", 1.0, None),
        ("demo-persona:10", "exact", "exact_dup", "demo-persona:0", 1.0, None),
        ("demo-persona:7", "minhash", "near_dup_minhash", "demo-persona:3", 0.82, "jaccard 0.82"),
        ("demo-persona:8", "minhash", "near_dup_minhash", "demo-persona:3", 0.9, "jaccard 0.90"),
        ("demo-persona:11", "balance", "overflow:label=teto", None, None, "label teto over its cap"),
    ]
    rows = [dict(zip(("sample_id", "stage", "reason", "ref_sample_id", "score", "evidence"), d, strict=True))
            | {"kept": False} for d in drops]  # fmt: skip
    dropped = {d[0] for d in drops}
    rows += [{"sample_id": f"demo-persona:{i}", "stage": "final", "kept": True, "reason": None,
              "ref_sample_id": None, "score": None, "evidence": None}
             for i in range(18) if f"demo-persona:{i}" not in dropped]  # fmt: skip
    return pl.DataFrame(rows)


# the comparison as `tunelab evaluate` stores it: each model vs base, and DPO vs its parent SFT
DELTAS = [
    {"model": "sft", "baseline": "base", "metric": "rougeL", "delta": 1.2 / 6, "ci_low": 0.05, "ci_high": 0.35,
     "p_value": 0.012, "n": 6, "delta_pct": 100 * 1.2 / 1.8, "significant": True, "method": "test", "seed": 1},
    {"model": "dpo", "baseline": "base", "metric": "rougeL", "delta": 1.7 / 6, "ci_low": 0.1, "ci_high": 0.45,
     "p_value": 0.004, "n": 6, "delta_pct": 100 * 1.7 / 1.8, "significant": True, "method": "test", "seed": 1},
    {"model": "dpo", "baseline": "sft", "metric": "rougeL", "delta": 0.5 / 6, "ci_low": -0.05, "ci_high": 0.2,
     "p_value": 0.31, "n": 6, "delta_pct": None, "significant": False, "method": "test", "seed": 1},
]  # fmt: skip


def _train_rows(kind: str) -> list[dict]:
    rows = []
    for step in range(1, 21):
        row = {
            "step": step,
            "epoch": step / 20,
            "loss": 2.5 / step**0.5,
            "learning_rate": 2e-4 * (1 - step / 21),
        }
        if step % 5 == 0:
            row["eval_loss"] = 2.6 / step**0.5
        if kind == "dpo":
            row |= {"rewards_chosen": 0.05 * step, "rewards_rejected": -0.03 * step,
                    "rewards_margins": 0.08 * step, "rewards_accuracies": min(1.0, 0.5 + step / 40)}  # fmt: skip
        rows.append(row)
    return rows


# Per-sample rougeL by model; dpo is worse than base on sample 2 (the one regression for dpo).
ROUGE = {
    "base": [0.2, 0.3, 0.5, 0.1, 0.4, 0.3],
    "sft": [0.6, 0.5, 0.4, 0.3, 0.7, 0.5],
    "dpo": [0.7, 0.6, 0.3, 0.5, 0.8, 0.6],
}


def build_warehouse(db: Path) -> Path:
    """A small, fully known warehouse written through the store API (the way the pipeline writes it)."""
    recipe = {"dataset": {"name": "demo-persona"},
              "curate": {"stages": ["schema", "normalize", "length", "exact", "minhash", "balance", "split"]}}  # fmt: skip
    quarantine = pl.DataFrame({"dataset": ["demo-persona"] * 2, "source_file": ["persona.jsonl"] * 2,
                               "source_line": [19, 20], "source_row": [18, 19],
                               "error": ["invalid JSON: Expecting ',' delimiter", "missing field: response"],
                               "raw": ['{"prompt": "안녕하세요" "response"', '{"prompt": "빈 응답"}']})  # fmt: skip
    store.ingest_curation(
        db,
        {"curation_id": CURATION, "dataset": "demo-persona", "kind": "sft", "data_version": "dv-1a2b3c",
         "recipe": recipe, "created_at": "2026-11-22T04:00:00", "read": 20, "kept": 12, "dropped": 6,
         "quarantined": 2, "report": {}},
        _samples(), _decisions(), quarantine,
    )  # fmt: skip
    store.start_run(db, {"run_id": "sft-0001", "kind": "sft", "curation_id": CURATION, "base_model": "tiny-llama",
                         "started_at": "2026-11-22T04:05:00"})  # fmt: skip
    store.log_train(db, "sft-0001", _train_rows("sft"))
    store.finish_run(
        db, "sft-0001", "finished", metrics={"train_loss": 0.6}, adapter_path="runs/sft-0001/adapter"
    )
    store.start_run(db, {"run_id": "dpo-0001", "kind": "dpo", "curation_id": CURATION, "parent_run_id": "sft-0001",
                         "base_model": "tiny-llama", "started_at": "2026-11-22T04:10:00"})  # fmt: skip
    store.log_train(db, "dpo-0001", _train_rows("dpo"))
    store.finish_run(db, "dpo-0001", "finished")

    preds, scores = [], []
    for model, run_id in (("base", None), ("sft", "sft-0001"), ("dpo", "dpo-0001")):
        for i, (prompt, reference, label) in enumerate(PROMPTS):
            sid = f"demo-persona-eval:{i}"
            preds.append({"model": model, "run_id": run_id, "sample_id": sid, "prompt": prompt,
                          "reference": reference, "prediction": f"[{model}] {reference[: 6 + 3 * len(model)]}",
                          "label": label, "latency_s": 0.1})  # fmt: skip
            scores.append({"model": model, "sample_id": sid, "metric": "rougeL", "value": ROUGE[model][i],
                           "signature": "rougeL|tok:kiwi"})  # fmt: skip
            scores.append({"model": model, "sample_id": sid, "metric": "chrf", "value": 100 * ROUGE[model][i] + 5,
                           "signature": "chrF2"})  # fmt: skip
    metrics = [{"model": m, "metric": "rougeL", "value": sum(v) / len(v), "signature": "rougeL|tok:kiwi",
                "ci_low": min(v), "ci_high": max(v), "n": len(v), "method": "bootstrap", "seed": 1}
               for m, v in ROUGE.items()]  # fmt: skip
    metrics += [{"model": m, "metric": "chrf", "value": 100 * sum(v) / len(v) + 5, "signature": "chrF2"}
                for m, v in ROUGE.items()]  # fmt: skip
    store.ingest_eval(
        db,
        {"eval_id": EVAL, "eval_set": "demo-persona-eval", "curation_id": CURATION,
         "created_at": "2026-11-22T04:20:00", "params": json.dumps({"max_new_tokens": 64})},
        pl.DataFrame(preds), pl.DataFrame(scores), pl.DataFrame(metrics),
        deltas=pl.DataFrame(DELTAS),
    )  # fmt: skip
    return db


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("wh") / "tunelab.duckdb")


def test_funnel_ends_at_kept_and_follows_recipe_order(db: Path) -> None:
    curation = store.get_curation(db, CURATION)
    funnel = queries.funnel(curation, queries.stage_drops(db, CURATION))
    steps = ["read", "parsed", "schema", "normalize", "length", "exact", "minhash", "balance", "split"]
    assert funnel["step"].to_list() == steps
    assert funnel["rows"].to_list() == [20, 18, 18, 18, 17, 15, 13, 12, 12]
    assert funnel["dropped"].to_list() == [0, 2, 0, 0, 1, 2, 2, 1, 0]
    # a stage missing from the stored recipe still shows, after the recipe's stages
    unnamed = queries.funnel({**curation, "recipe": None}, queries.stage_drops(db, CURATION))
    assert unnamed["step"].to_list() == ["read", "parsed", "length", "exact", "minhash", "balance"]
    assert unnamed["rows"][-1] == 12


def test_drop_reasons_and_click_through_rows(db: Path) -> None:
    reasons = queries.drop_reasons(db, CURATION)
    counts = {(r["stage"], r["reason"]): r["n"] for r in reasons.to_dicts()}
    assert counts == {("exact", "exact_dup"): 2, ("minhash", "near_dup_minhash"): 2, ("length", "too_short:response_chars<5"): 1,
                      ("balance", "overflow:label=teto"): 1}  # fmt: skip
    rows = queries.rows_for_reason(db, CURATION, "minhash", "near_dup_minhash")
    assert rows["sample_id"].to_list() == ["demo-persona:7", "demo-persona:8"]
    assert rows["total"].to_list() == [2, 2]
    assert rows["text"][0] == KOREAN_NEAR_DUP + "\n네, 좋아요."
    page = queries.rows_for_reason(db, CURATION, "exact", "exact_dup", limit=1, offset=1)
    assert page["sample_id"].to_list() == ["demo-persona:10"] and page["total"][0] == 2


def test_length_histogram_counts_before_and_after(db: Path) -> None:
    hist = queries.length_histogram(db, CURATION, bins=10)
    assert hist["before"].sum() == 18
    assert hist["after"].sum() == 12
    assert hist["bin_end"][-1] is None  # the last bin is open-ended
    starts = hist["bin_start"].to_list()
    assert starts == sorted(starts)


def test_duplicate_clusters_and_members(db: Path) -> None:
    assert queries.duplicate_reasons(db, CURATION)["reason"].to_list() == ["exact_dup", "near_dup_minhash"]
    clusters = queries.duplicate_clusters(db, CURATION, ["exact_dup", "near_dup_minhash"])
    assert clusters["representative"].to_list() == ["demo-persona:0", "demo-persona:3"]
    assert clusters["members"].to_list() == [2, 2]
    assert clusters["representative_text"][1] == KOREAN_REPRESENTATIVE + "\n네, 좋아요."
    members = queries.cluster_members(db, CURATION, "demo-persona:3")
    assert members["sample_id"].to_list() == ["demo-persona:8", "demo-persona:7"]  # by score, highest first
    assert members["score"].to_list() == [0.9, 0.82]


def test_label_balance_and_quarantine(db: Path) -> None:
    balance = {r["label"]: (r["before"], r["after"]) for r in queries.label_balance(db, CURATION).to_dicts()}
    # friendly: rows 0,1,4,6,7,10,12,13,16 ; teto: 2,3,5,8,9,11,14,15,17 ; dropped 5,7,8,9,10,11
    assert balance == {"friendly": (9, 7), "teto": (9, 5)}
    quarantine = queries.quarantine_rows(db, CURATION)
    assert quarantine["source_line"].to_list() == [19, 20]
    assert quarantine["error"][1] == "missing field: response"


def test_runs_curves_and_comparison(db: Path) -> None:
    runs = queries.runs(db)
    assert runs["run_id"].to_list() == ["dpo-0001", "sft-0001"]
    assert runs.filter(pl.col("run_id") == "dpo-0001")["parent_run_id"][0] == "sft-0001"
    assert runs["data_version"].to_list() == ["dv-1a2b3c", "dv-1a2b3c"]
    curves = queries.train_curves(db, ["sft-0001", "dpo-0001"])
    sft_loss = curves.filter((pl.col("run_id") == "sft-0001") & (pl.col("series") == "loss"))
    assert sft_loss["step"].to_list() == list(range(1, 21))
    assert sft_loss["value"][3] == pytest.approx(2.5 / 2)
    assert curves.filter(pl.col("series") == "eval_loss").height == 8
    assert (
        curves.filter((pl.col("run_id") == "sft-0001") & pl.col("series").str.starts_with("rewards")).height
        == 0
    )
    assert (
        curves.filter((pl.col("run_id") == "dpo-0001") & (pl.col("series") == "rewards_margins")).height == 20
    )
    thinned = queries.train_curves(db, ["sft-0001"], max_points=5)
    # every 4th step, the last one, and every step that carries an eval loss
    assert thinned.filter(pl.col("series") == "loss")["step"].to_list() == [1, 5, 9, 10, 13, 15, 17, 20]
    compare = queries.comparison(db, EVAL)
    dpo = compare.filter((pl.col("model") == "dpo") & (pl.col("metric") == "rougeL")).to_dicts()[0]
    base = sum(ROUGE["base"]) / 6
    assert dpo["value"] == pytest.approx(sum(ROUGE["dpo"]) / 6)
    assert dpo["delta_pct"] == pytest.approx(100 * (dpo["value"] - base) / base)
    assert compare.schema["value"] == pl.Float64


def test_prediction_page_sorts_filters_and_finds_regressions(db: Path) -> None:
    assert queries.eval_models(db, EVAL) == ["base", "sft", "dpo"]
    assert queries.eval_metrics_names(db, EVAL) == ["chrf", "rougeL"]
    page = queries.prediction_page(db, EVAL, "rougeL", "dpo", sort="delta vs base ↑ (worst first)", limit=3)
    assert page["sample_id"][0] == "demo-persona-eval:2"
    assert page["delta"][0] == pytest.approx(0.3 - 0.5)
    assert page["total"][0] == 6
    regressions = queries.prediction_page(db, EVAL, "rougeL", "dpo", regressions_only=True)
    assert regressions["sample_id"].to_list() == ["demo-persona-eval:2"]
    assert queries.prediction_page(db, EVAL, "rougeL", "sft", regressions_only=True)[
        "sample_id"
    ].to_list() == ["demo-persona-eval:2"]
    by_label = queries.prediction_page(db, EVAL, "rougeL", "dpo", label="teto", limit=10)
    assert sorted(by_label["sample_id"].to_list()) == [
        "demo-persona-eval:2",
        "demo-persona-eval:3",
        "demo-persona-eval:5",
    ]
    found = queries.prediction_page(db, EVAL, "rougeL", "dpo", search="김치찌개")
    assert found["sample_id"].to_list() == ["demo-persona-eval:1"]
    best = queries.prediction_page(db, EVAL, "rougeL", "dpo", sort="score ↓", limit=1)
    assert best["sample_id"][0] == "demo-persona-eval:4"
    preds = queries.predictions_for(db, EVAL, ["demo-persona-eval:0"])
    assert sorted(preds["model"].to_list()) == ["base", "dpo", "sft"]
    assert set(preds["prompt"]) == {KOREAN_PROMPT}


def test_console_is_read_only_and_limited(db: Path) -> None:
    frame, truncated = console.console_query(db, "SELECT sample_id FROM samples;", limit=5)
    assert frame.height == 5 and truncated
    frame, truncated = console.console_query(db, "-- count\nSELECT count(*) AS n FROM samples")
    assert frame["n"][0] == 18 and not truncated
    frame, _ = console.console_query(db, "SELECT count(*) AS n FROM samples -- a trailing note")
    assert frame["n"][0] == 18
    frame, _ = console.console_query(db, "DESCRIBE reviews")
    assert "rating" in frame["column_name"].to_list()
    with pytest.raises(UserError, match="refused DELETE statement"):
        console.console_query(db, "DELETE FROM samples")
    with pytest.raises(UserError, match="refused CREATE"):
        console.console_query(db, "CREATE TEMP TABLE t AS SELECT 1")
    with pytest.raises(Exception, match="(?i)external|disabled|permission"):
        console.console_query(db, "SELECT * FROM read_csv('/etc/passwd')")
    for _, sql in console.example_queries():
        console.console_query(db, sql)  # every example one click away must run


def test_csv_keeps_korean_and_flattens_lists(db: Path) -> None:
    frame, _ = console.console_query(db, "SELECT 'ㄱ나다' AS t, ['a', 'b'] AS l")
    assert console.to_csv(frame).splitlines() == ["t,l", 'ㄱ나다,"[""a"", ""b""]"']


def test_example_queries_are_read_from_sql_blocks(tmp_path: Path) -> None:
    readme = tmp_path / "warehouse.md"
    readme.write_text(
        "# Warehouse\n## Drop reasons\n```sql drop_reasons\nSELECT 1;\n```\n```sql\n-- Runs\nSELECT 2;\n```\n"
        "```python\nprint(3)\n```\n### Lineage\n```sql\nSELECT 4\n```\n"
    )
    assert console.example_queries(readme) == [
        ("Drop reasons", "SELECT 1;"),
        ("Drop reasons: Runs", "-- Runs\nSELECT 2;"),
        ("Lineage", "SELECT 4"),
    ]
    assert console.example_queries(tmp_path / "missing.md") == list(console.BUILTIN_EXAMPLES)


def test_the_warehouse_readme_examples_are_offered() -> None:
    readme = Path(__file__).resolve().parents[1] / "docs" / "warehouse.md"
    if not readme.is_file():
        pytest.skip("docs/warehouse.md not written yet")
    examples = console.example_queries()
    assert len(examples) == readme.read_text(encoding="utf-8").count("```sql")
    assert all(sql.strip() and title for title, sql in examples)


def test_diff_marks_only_the_changed_characters() -> None:
    old, new = highlight_diff(KOREAN_REPRESENTATIVE, KOREAN_NEAR_DUP)
    # texts go out as character references (safetext); only our own <del>/<mark> tags are markup
    assert old == "오늘 날씨가 정말 좋네요<del>&#46;</del> 산책하러 <del>갈까</del>요&#63;"
    assert new == "오늘 날씨가 정말 좋네요<mark>&#33;</mark> 산책하러 <mark>가실래</mark>요&#63;"
    assert compare_texts("같은 글", "같은 글") == ("같은 글", "같은 글", 1.0)
    assert compare_texts("abcd", "abxd")[2] == pytest.approx(0.75)
    old, new = highlight_diff("<b>x</b>", "<b>y</b>")
    assert "<b>" not in old and "&#60;b&#62;" in new  # texts are escaped, never injected as HTML
