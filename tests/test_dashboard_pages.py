"""Each dashboard page run by Streamlit's AppTest against a known warehouse: widgets, numbers, the review write."""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_queries import CURATION, EVAL, KOREAN_NEAR_DUP, KOREAN_PROMPT, build_warehouse

from tunelab.dashboards import console, queries
from tunelab.warehouse import store

PAGES = Path(__file__).resolve().parents[1] / "tunelab" / "dashboards" / "views"
APP = PAGES.parent / "app.py"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = build_warehouse(tmp_path_factory.mktemp("wh") / "tunelab.duckdb")
    previous = os.environ.get("TUNELAB_WAREHOUSE")
    os.environ["TUNELAB_WAREHOUSE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TUNELAB_WAREHOUSE", None)
    else:
        os.environ["TUNELAB_WAREHOUSE"] = previous


def run_page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame_with(at: AppTest, *columns: str):
    """The first dataframe shown with these columns (plain st.dataframe elements carry no key in AppTest)."""
    for element in at.dataframe:
        value = element.value
        if all(c in value.columns for c in columns):
            return value
    raise AssertionError(f"no dataframe with columns {columns}")


def markdown_text(at: AppTest) -> str:
    """What the reader sees: dataset text goes out as character references (safetext), decoded here."""
    return html.unescape("\n".join(m.value for m in at.markdown))


def test_audit_page_numbers_reasons_duplicates_quarantine(db: Path) -> None:
    at = run_page("audit")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Read"] == "20" and metrics["Kept"] == "12" and metrics["Quarantined"] == "2"
    funnel = frame_with(at, "step", "rows", "dropped")
    assert list(funnel["step"]) == [
        "read",
        "parsed",
        "schema",
        "normalize",
        "length",
        "exact",
        "minhash",
        "balance",
        "split",
    ]
    assert list(funnel["rows"]) == [20, 18, 18, 18, 17, 15, 13, 12, 12]
    assert "funnel ends at" not in "".join(w.value for w in at.warning)

    reasons = at.dataframe(key="reasons_table").value
    assert dict(zip(reasons["reason"], reasons["n"], strict=True))["near_dup_minhash"] == 2
    at.selectbox(key="reason_pick").select(("minhash", "near_dup_minhash")).run()
    rows_html = next(
        html.unescape(m.value)
        for m in at.markdown
        if html.unescape(m.value).startswith('<table class="tl-rows"><thead><tr><th>sample_id')
    )
    assert "demo-persona:7" in rows_html and KOREAN_NEAR_DUP in rows_html and "jaccard 0.82" in rows_html
    assert "demo-persona:9" not in rows_html  # an exact_dup row is not a near_dup_minhash row

    assert not any(t.children for t in at.tabs[1:])  # closed tabs run no query

    at.session_state["tab"] = "Duplicates"
    at.run()
    at.selectbox(key="cluster").select("demo-persona:3").run()
    text = markdown_text(at)
    assert "similarity 0.820 (stage)" in text and "similarity 0.900 (stage)" in text
    assert "좋네요<mark>!</mark>" in text and "좋네요<del>.</del>" in text

    at.session_state["tab"] = "Lengths"
    lengths = frame_with(at.run(), "bin_start", "before")
    assert lengths["before"].sum() == 18 and lengths["after"].sum() == 12
    at.session_state["tab"] = "Labels"
    labels = frame_with(at.run(), "label", "before", "after")
    assert dict(zip(labels["label"], labels["after"], strict=True)) == {"friendly": 7, "teto": 5}


def test_audit_quarantine_tab_from_the_url(db: Path) -> None:
    at = AppTest.from_file(str(PAGES / "audit.py"), default_timeout=60)
    at.query_params["tab"] = "Quarantine"
    text = markdown_text(at.run())
    assert not at.exception
    assert "missing field: response" in text and "<td>20</td>" in text  # the error and its line number
    assert "persona.jsonl" in text and "빈 응답" in text


def test_runs_page_lineage_and_comparison(db: Path) -> None:
    at = run_page("runs")
    runs = frame_with(at, "run_id", "parent_run_id")
    assert list(runs["run_id"]) == ["dpo-0001", "sft-0001"]
    assert list(runs["parent_run_id"].fillna("")) == ["sft-0001", ""]
    assert set(runs["data_version"]) == {"dv-1a2b3c"}
    assert at.multiselect(key="curve_runs").value == ["dpo-0001", "sft-0001"]
    compare = frame_with(at, "metric", "base").set_index("metric")
    assert list(compare.columns) == ["base", "sft", "dpo"]
    assert compare.loc["rougeL", "dpo"] == pytest.approx(3.5 / 6)
    pairs = frame_with(at, "comparison", "p_value")
    assert list(pairs["comparison"]) == ["dpo − base", "dpo − sft", "sft − base"]
    assert list(pairs["p < 0.05"]) == ["yes", "no", "yes"]
    text = markdown_text(at)
    assert (
        "rougeL** · dpo − base: +0.2833 [+0.1000, +0.4500], p = 0.0040 · distinguishable from noise" in text
    )
    assert "dpo − sft: +0.0833 [-0.0500, +0.2000], p = 0.3100 · not distinguishable from noise" in text
    assert "n = 6 prompts" in html.unescape(" ".join(c.value for c in at.caption))


def test_predictions_page_side_by_side_and_regressions(db: Path) -> None:
    at = run_page("predictions")
    assert at.selectbox(key="metric").value == "rougeL"
    assert at.selectbox(key="model").value == "dpo"
    text = markdown_text(at)
    assert KOREAN_PROMPT in text and "서울의 인구는 약 천만 명입니다." in text  # prompt and reference
    assert "[base]" in text and "[sft]" in text and "[dpo]" in text
    assert "<b>rougeL 0.7 (+0.500)</b>" in text  # dpo on sample 0: 0.7 vs base 0.2

    at.toggle(key="regressions").set_value(True).run()
    assert "1 regression · dpo vs base on rougeL" in html.unescape("".join(c.value for c in at.caption))
    text = markdown_text(at)
    assert "**demo-persona-eval:2**" in text and "**demo-persona-eval:0**" not in text
    assert "Δ rougeL -0.200" in text


def test_rating_round_trips_into_reviews(db: Path) -> None:
    at = run_page("predictions")
    key = f"{EVAL}|dpo|demo-persona-eval:0"
    at.text_input(key="reviewer").input("민지").run()
    at.text_input(key=f"comment|{key}").input("존댓말이 자연스러워요").run()
    at.button(key=f"up|{key}").click().run()
    assert not at.exception
    assert [(s.icon, html.unescape(s.value)) for s in at.success] == [
        (":material/thumb_up:", "Review saved: dpo on demo-persona-eval:0")
    ]
    reviews = store.query(db, "SELECT eval_id, model, sample_id, rating, comment FROM reviews").to_dicts()
    assert reviews == [{"eval_id": EVAL, "model": "dpo", "sample_id": "demo-persona-eval:0", "rating": 1,
                        "comment": "존댓말이 자연스러워요"}]  # fmt: skip
    assert store.query(db, "SELECT reviewer FROM reviews")["reviewer"].to_list() == ["민지"]
    at.button(key=f"down|{EVAL}|base|demo-persona-eval:0").click().run()
    ratings = store.query(db, "SELECT model, rating, comment FROM reviews ORDER BY created_at").rows()
    assert ratings == [("dpo", 1, "존댓말이 자연스러워요"), ("base", -1, None)]
    assert any(
        ":material/thumb_up: 존댓말이 자연스러워요" in html.unescape(c.value) for c in at.caption
    )  # the page shows the saved review


def test_sql_page_examples_results_errors_and_csv(db: Path) -> None:
    at = run_page("sql")
    assert len([b for b in at.button if b.key and b.key.startswith("example_")]) >= 3
    assert at.dataframe[0].value.shape[0] > 0  # the first example ran on open
    at.text_area(key="sql_text").input(
        "SELECT label, count(*) AS n FROM samples GROUP BY label ORDER BY label"
    ).run()
    at.button(key="run_sql").click().run()
    result = frame_with(at, "label", "n")
    assert list(result["label"]) == ["friendly", "teto"] and list(result["n"]) == [9, 9]
    assert at.get("download_button")  # CSV of the result
    at.text_area(key="sql_text").input("DROP TABLE samples").run()
    at.button(key="run_sql").click().run()
    assert at.error and html.unescape(at.error[0].value).startswith("sql: refused DROP statement")
    assert store.query(db, "SELECT count(*) AS n FROM samples")["n"][0] == 18


def test_example_button_fills_and_runs_the_query(db: Path) -> None:
    at = run_page("sql")
    title, sql = console.example_queries()[1]
    # the page pins the example to the chosen curation and sample by id (no demo dataset name, no "newest")
    sql = queries.pin_example(sql, EVAL, CURATION, queries.example_sample(db, CURATION))
    assert "dataset = 'demo-persona'" not in sql and f"'{CURATION}'" in sql
    at.button(key="example_1").click().run()
    assert at.button(key="example_1").label == title
    assert at.text_area(key="sql_text").value == sql
    assert not at.error
    assert at.dataframe[0].value.equals(console.console_query(db, sql)[0].to_pandas())


def test_app_navigation_opens_audit_first(db: Path) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Audit"


def test_missing_warehouse_is_a_message_not_a_traceback(tmp_path: Path, db: Path) -> None:
    os.environ["TUNELAB_WAREHOUSE"] = str(tmp_path / "nope.duckdb")
    try:
        at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=60).run()
    finally:
        os.environ["TUNELAB_WAREHOUSE"] = str(db)
    assert not at.exception
    assert "No warehouse at" in at.error[0].value and "tunelab demo" in at.error[0].value


def test_every_page_explains_an_empty_warehouse(tmp_path: Path, db: Path) -> None:
    from tunelab.warehouse.connection import write_connection

    empty = tmp_path / "empty.duckdb"
    with write_connection(empty):  # the schema, no rows
        pass
    os.environ["TUNELAB_WAREHOUSE"] = str(empty)
    try:
        infos = {}
        for name in ("audit", "runs", "predictions", "sql"):
            at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60).run()
            assert not at.exception, (name, [e.value for e in at.exception])
            infos[name] = " ".join(i.value for i in at.info)
    finally:
        os.environ["TUNELAB_WAREHOUSE"] = str(db)
    assert "No curation in the warehouse yet" in infos["audit"]
    assert "No training run yet" in infos["runs"] and "No evaluation yet" in infos["runs"]
    assert "No evaluation yet" in infos["predictions"]
