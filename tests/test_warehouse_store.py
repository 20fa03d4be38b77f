"""The store API other components call: what goes in comes out, ids are refused or replaced explicitly."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from tunelab.errors import UserError
from tunelab.warehouse import store


def curation(curation_id: str = "cur-1", **extra: object) -> dict:
    return {"curation_id": curation_id, "dataset": "demo-raft", "kind": "raft", "read": 3, "kept": 2,
            "dropped": 1, "quarantined": 0, "data_version": "dv1", **extra}  # fmt: skip


def raft_samples(answer_of_0: str = "서울") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": ["demo-raft:0", "demo-raft:1", "demo-raft:2"],
            "source_row": [0, 1, 2],
            "question": ["수도는?", "인구는?", "수도는?"],
            "answer": [answer_of_0, "천만", "서울"],
            "context": [["문서 A", "문서 B"], ["문서 C"], None],
            "field_types": ['{"question":"str"}'] * 3,
            "content_hash": ["a1", "b2", "a1"],
        },
        schema_overrides={"context": pl.List(pl.Utf8)},
    )


def raft_decisions() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": ["demo-raft:0", "demo-raft:1", "demo-raft:2"],
            "stage": ["final", "final", "exact"],
            "kept": [True, True, False],
            "reason": [None, None, "exact_dup"],
            "ref_sample_id": [None, None, "demo-raft:0"],
            "score": [None, None, 1.0],
            "evidence": ["split=train", "split=val", None],
        }
    )


def test_curation_round_trip_keeps_text_lists_and_nulls(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    store.ingest_curation(db, curation(recipe={"curate": {"stages": ["exact"]}}), raft_samples(),
                          raft_decisions(), pl.DataFrame())  # fmt: skip
    rows = store.query(db, "SELECT * FROM samples ORDER BY sample_id").to_dicts()
    assert [r["context"] for r in rows] == [["문서 A", "문서 B"], ["문서 C"], None]
    assert rows[0]["answer"] == "서울" and rows[0]["prompt"] is None and rows[0]["curation_id"] == "cur-1"
    assert rows[1]["source_row"] == 1 and rows[1]["content_hash"] == "b2"
    cur = store.get_curation(db, "cur-1")
    assert json.loads(cur["recipe"]) == {"curate": {"stages": ["exact"]}}
    assert (cur["read"], cur["kept"], cur["dropped"]) == (3, 2, 1)
    dataset = store.query(db, "SELECT * FROM datasets").to_dicts()
    assert dataset == [dataset[0] | {"name": "demo-raft", "kind": "raft", "last_curation_id": "cur-1"}]
    drops = store.query(db, "SELECT stage, reason, n, pct FROM v_drop_reasons").rows()
    assert drops == [("exact", "exact_dup", 1, pytest.approx(100 / 3))]


def test_reingest_is_refused_unless_replace(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    store.ingest_curation(db, curation(), raft_samples(), raft_decisions(), pl.DataFrame())
    with pytest.raises(UserError, match="curation 'cur-1' is already in the warehouse"):
        store.ingest_curation(db, curation(), raft_samples(), raft_decisions(), pl.DataFrame())
    store.ingest_curation(
        db, curation(), raft_samples("부산"), raft_decisions(), pl.DataFrame(), replace=True
    )
    answers = store.query(db, "SELECT answer FROM samples WHERE sample_id = 'demo-raft:0'")[
        "answer"
    ].to_list()
    assert answers == ["부산"]
    assert store.query(db, "SELECT count(*) AS n FROM decisions")["n"][0] == 3


def test_two_curations_of_one_dataset_keep_their_own_rows(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    store.ingest_curation(db, curation("cur-1", created_at="2026-11-22T01:00:00Z"), raft_samples(),
                          raft_decisions(), pl.DataFrame())  # fmt: skip
    store.ingest_curation(db, curation("cur-2", created_at="2026-11-22T02:00:00Z"), raft_samples("부산"),
                          raft_decisions(), pl.DataFrame())  # fmt: skip
    frame = store.query(
        db, "SELECT curation_id, answer FROM samples WHERE sample_id = 'demo-raft:0' ORDER BY curation_id"
    )
    assert frame.rows() == [("cur-1", "서울"), ("cur-2", "부산")]
    assert store.latest_curation(db, "demo-raft") == "cur-2"
    assert store.latest_curation(db, "other") is None


def test_failed_ingest_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    bad = raft_decisions().drop("kept")
    with pytest.raises(ValueError, match="lacks required columns \\['kept'\\]"):
        store.ingest_curation(db, curation(), raft_samples(), bad, pl.DataFrame())
    assert (
        store.query(db, "SELECT (SELECT count(*) FROM curations) + (SELECT count(*) FROM samples) AS n")["n"][
            0
        ]
        == 0
    )
    wrong_id = raft_decisions().with_columns(curation_id=pl.lit("other"))
    with pytest.raises(ValueError, match="curation_id != 'cur-1'"):
        store.ingest_curation(db, curation(), raft_samples(), wrong_id, pl.DataFrame())


def test_run_lifecycle_and_train_log(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    store.start_run(db, {"run_id": "r1", "kind": "sft", "curation_id": "cur-1", "recipe": {"train": {"x": 1}},
                         "base_model": "tiny", "output_dir": tmp_path / "out", "started_at": None})  # fmt: skip
    run = store.get_run(db, "r1")
    assert (
        run["status"] == "running" and run["finished_at"] is None and isinstance(run["started_at"], datetime)
    )
    assert run["recipe"] == '{"train": {"x": 1}}' and run["output_dir"] == str(tmp_path / "out")
    with pytest.raises(UserError, match="run 'r1' is already in the warehouse"):
        store.start_run(db, {"run_id": "r1", "kind": "sft"})
    store.log_train(db, "r1", [
        {"step": 5, "epoch": 0.5, "loss": 2.5, "learning_rate": 1e-3, "mean_token_accuracy": 0.4},
        {"step": 10, "epoch": 1.0, "loss": 2.0, "eval_loss": float("nan"), "extra": {"num_tokens": 100}},
    ])  # fmt: skip
    log = store.query(
        db, "SELECT step, loss, eval_loss, learning_rate, extra FROM train_log ORDER BY step"
    ).rows()
    assert log == [
        (5, 2.5, None, 1e-3, '{"mean_token_accuracy": 0.4}'),
        (10, 2.0, None, None, '{"num_tokens": 100}'),
    ]
    store.finish_run(db, "r1", "finished", metrics={"train_loss": 2.0}, adapter_path="out/adapter")
    run = store.get_run(db, "r1")
    assert run["status"] == "finished" and run["adapter_path"] == "out/adapter"
    assert json.loads(run["metrics"]) == {"train_loss": 2.0} and run["finished_at"] >= run["started_at"]
    with pytest.raises(ValueError, match="status must be"):
        store.finish_run(db, "r1", "done")
    with pytest.raises(ValueError, match="never started"):
        store.log_train(db, "nope", [{"step": 1}])
    with pytest.raises(ValueError, match="unknown keys \\['learning_rate'\\]"):
        store.start_run(db, {"run_id": "r2", "kind": "sft", "learning_rate": 1})


def test_failed_run_keeps_its_error(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    store.start_run(db, {"run_id": "r1", "kind": "dpo", "parent_run_id": "r0"})
    store.finish_run(db, "r1", "failed", error="KeyboardInterrupt")
    run = store.get_run(db, "r1")
    assert (run["status"], run["error"], run["parent_run_id"]) == ("failed", "KeyboardInterrupt", "r0")


def test_resumed_run_is_running_again_until_finished(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    store.start_run(db, {"run_id": "r1", "kind": "sft"})
    store.finish_run(db, "r1", "failed", error="KeyboardInterrupt")
    store.reopen_run(db, "r1")
    run = store.get_run(db, "r1")
    assert (run["status"], run["error"], run["finished_at"]) == ("running", None, None)
    store.finish_run(db, "r1", "finished")
    assert store.get_run(db, "r1")["status"] == "finished"
    with pytest.raises(ValueError, match="never started"):
        store.reopen_run(db, "nope")


def eval_frames(eval_id: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    predictions = pl.DataFrame({"model": ["base", "sft"], "run_id": [None, "r1"], "sample_id": ["s:0", "s:0"],
                                "prediction": ["a", "b"], "gen_params": [{"max_new_tokens": 8}] * 2})  # fmt: skip
    scores = pl.DataFrame({"model": ["base", "sft"], "sample_id": ["s:0", "s:0"], "metric": ["rougeL"] * 2,
                           "value": [0.25, 0.5], "signature": ["kiwi"] * 2})  # fmt: skip
    metrics = pl.DataFrame({"model": ["base", "sft", "sft"], "metric": ["rougeL", "rougeL", "bleu"],
                            "value": [0.25, 0.5, 12.0], "signature": ["kiwi", "kiwi", "BLEU|ko-mecab"]})  # fmt: skip
    if eval_id:
        predictions = predictions.with_columns(eval_id=pl.lit(eval_id))
    return predictions, scores, metrics


def test_eval_ingest_compare_view_and_reviews(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    ev = {
        "eval_id": "e1",
        "eval_set": "demo-eval",
        "params": {"seed": 0},
        "created_at": datetime(2026, 11, 22),
    }
    store.ingest_eval(db, ev, *eval_frames("e1"))
    compare = store.query(db, "SELECT model, metric, value, base_value, delta_abs, delta_pct FROM v_run_compare "
                              "ORDER BY metric, model").rows()  # fmt: skip
    assert compare == [
        ("sft", "bleu", 12.0, None, None, None),
        ("base", "rougeL", 0.25, 0.25, 0.0, 0.0),
        ("sft", "rougeL", 0.5, 0.25, 0.25, 100.0),
    ]
    assert (
        store.query(db, "SELECT gen_params FROM predictions LIMIT 1")["gen_params"][0]
        == '{"max_new_tokens": 8}'
    )
    with pytest.raises(UserError, match="eval 'e1' is already"):
        store.ingest_eval(db, ev, *eval_frames())
    with pytest.raises(ValueError, match="eval_id != 'e2'"):
        store.ingest_eval(db, ev | {"eval_id": "e2"}, *eval_frames("e1"))
    store.add_review(db, "e1", "sft", "s:0", 1, "좋아요", reviewer="민지")
    store.add_review(db, "e1", "sft", "s:0", -1, None)
    with pytest.raises(UserError, match="rating must be"):
        store.add_review(db, "e1", "sft", "s:0", 5, None)
    # a review names a prediction that exists, and its comment is a comment, not a document
    with pytest.raises(UserError, match="no prediction of model 'sft' for sample 's:9' in evaluation 'e1'"):
        store.add_review(db, "e1", "sft", "s:9", 1, None)
    with pytest.raises(UserError, match="no prediction of model 'sft' for sample 's:0' in evaluation 'nope'"):
        store.add_review(db, "nope", "sft", "s:0", 1, None)
    with pytest.raises(UserError, match="at most 2,000"):
        store.add_review(db, "e1", "sft", "s:0", 1, "가" * 2_000_000)
    reviewers = store.query(db, "SELECT reviewer FROM reviews ORDER BY created_at")["reviewer"].to_list()
    assert reviewers[0] == "민지" and reviewers[1] == store.default_reviewer() and reviewers[1]
    # replacing the eval keeps people's reviews
    store.ingest_eval(db, ev, *eval_frames(), replace=True)
    assert store.query(db, "SELECT count(*) AS n FROM predictions")["n"][0] == 2
    assert store.query(db, "SELECT sum(rating) AS s, count(*) AS n FROM reviews").row(0) == (0, 2)


def test_query_takes_positional_and_named_params(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    store.start_run(db, {"run_id": "r1", "kind": "sft"})
    assert store.query(db, "SELECT run_id FROM runs WHERE kind = ?", ["sft"])["run_id"].to_list() == ["r1"]
    assert store.query(db, "SELECT run_id FROM runs WHERE kind = $k", {"k": "dpo"}).height == 0
    # literal decimals come back as DuckDB DECIMAL; stored metric values are DOUBLE
    assert store.query(db, "SELECT 0.71 AS x")["x"].dtype.is_decimal()
