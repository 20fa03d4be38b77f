"""Every dashboard page against the warehouse `tunelab demo` produces (the session's `demo_workspace`).

Expected numbers come from the demo's own planted-defect list (tunelab/demo/planted.json) and its
eval set, not from the dashboard. The warehouse is copied first: the review test writes to it.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tunelab.warehouse import store

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[1] / "tunelab" / "demo"
VIEWS = DEMO.parent / "dashboards" / "views"
PLANTED = json.loads((DEMO / "planted.json").read_text(encoding="utf-8"))
FIRST_EVAL_PROMPT = json.loads((DEMO / "eval.jsonl").read_text(encoding="utf-8").splitlines()[0])[
    "instruction"
]


@pytest.fixture(scope="module")
def demo_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # TUNELAB_DEMO_WORKSPACE reuses a workspace an earlier `tunelab demo` left (saves its minutes)
    existing = os.environ.get("TUNELAB_DEMO_WORKSPACE")
    workspace = Path(existing) if existing else request.getfixturevalue("demo_workspace")
    db = tmp_path_factory.mktemp("demo-copy") / "tunelab.duckdb"
    shutil.copyfile(workspace / "tunelab.duckdb", db)
    previous = os.environ.get("TUNELAB_WAREHOUSE")
    os.environ["TUNELAB_WAREHOUSE"] = str(db)
    yield db
    if previous is None:
        os.environ.pop("TUNELAB_WAREHOUSE", None)
    else:
        os.environ["TUNELAB_WAREHOUSE"] = previous


def run_view(name: str, **query_params: str) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=120)
    for key, value in query_params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame_with(at: AppTest, *columns: str):
    return next(d.value for d in at.dataframe if all(c in d.value.columns for c in columns))


def markdown_text(at: AppTest) -> str:
    """What the reader sees: dataset text goes out as character references (safetext), decoded here."""
    return html.unescape("\n".join(m.value for m in at.markdown))


def test_audit_shows_the_planted_defects(demo_db: Path) -> None:
    sft = PLANTED["sft"]
    at = run_view("audit")
    assert at.selectbox(key="curation").value.startswith("demo-persona-")  # the instruction data, not DPO
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Read"] == str(sft["read"]) and metrics["Quarantined"] == str(len(sft["quarantined"]))
    funnel = frame_with(at, "step", "rows", "dropped")
    assert int(funnel["rows"].iloc[-1]) == int(metrics["Kept"])
    reasons = frame_with(at, "stage", "reason", "n")
    counts = {r: int(n) for r, n in zip(reasons["reason"], reasons["n"], strict=True)}
    for reason in ("exact_dup", "near_dup_minhash", "near_dup_semantic", "contaminated:eval"):
        assert counts.get(reason) == len(sft["drops"][reason]), reason

    pair = next(d for d in PLANTED["sft"]["defects"] if d["reason"] == "near_dup_minhash")
    at = run_view("audit", tab="Duplicates", cluster=pair["ref_sample_id"])
    assert at.selectbox(key="cluster").value == pair["ref_sample_id"]
    text = markdown_text(at)
    assert f"**{pair['sample_id']}** · near_dup_minhash" in text
    assert "<mark>" in text or "<del>" in text  # a near duplicate differs somewhere

    at = run_view("audit", tab="Quarantine")
    text = markdown_text(at)
    for item in sft["quarantined"]:
        assert f"<td>{item['line']}</td>" in text


def test_runs_show_sft_then_dpo_and_the_comparison(demo_db: Path) -> None:
    at = run_view("runs")
    runs = frame_with(at, "run_id", "kind", "parent_run_id")
    by_kind = {k: r for k, r in zip(runs["kind"], runs["run_id"], strict=True)}
    assert set(by_kind) == {"sft", "dpo"}
    dpo_parent = runs.loc[runs["kind"] == "dpo", "parent_run_id"].iloc[0]
    assert dpo_parent == by_kind["sft"]
    compare = frame_with(at, "metric", "base")
    assert {"base", "sft", "dpo"} <= set(compare.columns)
    assert "rougeL" in set(compare["metric"])


def test_predictions_and_a_review_on_demo_data(demo_db: Path) -> None:
    at = run_view("predictions")
    text = markdown_text(at)
    assert FIRST_EVAL_PROMPT in text  # eval-set order: the first line of eval.jsonl comes first
    eval_id = at.selectbox(key="eval").value
    sample_id = store.query(
        demo_db, "SELECT sample_id FROM predictions WHERE eval_id = ? ORDER BY rowid LIMIT 1", [eval_id]
    )["sample_id"][0]
    key = f"{eval_id}|dpo|{sample_id}"
    at.text_input(key=f"comment|{key}").input("테토 말투가 잘 살아 있어요").run()
    at.button(key=f"down|{key}").click().run()
    rows = store.query(demo_db, "SELECT model, sample_id, rating, comment FROM reviews").rows()
    assert rows == [("dpo", sample_id, -1, "테토 말투가 잘 살아 있어요")]


def test_every_readme_query_runs_in_the_console(demo_db: Path) -> None:
    from tunelab.dashboards import console

    for title, sql in console.example_queries():
        frame, _ = console.console_query(demo_db, sql)
        assert frame.width > 0, title
