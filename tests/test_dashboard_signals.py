"""The Audit page's Signals tab and the Diff page, run by AppTest against two hand-ingested curations of one
small Korean file: what the signal stages measured, drill-down to rows by value, and the decisions that
changed between the two curations (with both reasons), texts shown as text."""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from tunelab.dashboards import queries
from tunelab.warehouse import store

PAGES = Path(__file__).resolve().parents[1] / "tunelab" / "dashboards" / "views"

HOSTILE = "![x](http://attacker.example/pixel.png) **굵게** <b>태그</b>"
LOOP = "아아아아아아아아아아아아아아아아아아아아"
TEXTS = [
    ("서울의 인구는 몇 명인가요?", "서울의 인구는 약 천만 명입니다."),
    ("김치찌개 끓이는 법을 알려주세요.", "돼지고기와 김치를 볶은 뒤 물을 붓고 끓입니다."),
    ("What is the capital of France?", "The capital of France is Paris."),  # 2: lang:en in A, kept in B
    ("연락처 알려줘", "제 번호는 <PII:phone> 입니다."),  # 3: masked in both
    ("기분이 어때?", "저는 AI 언어 모델이기 때문에 감정이 없습니다."),  # 4: kept in A, refusal in B
    ("노래 불러줘", LOOP + "<|endoftext|>"),  # 5: repetition in A, special tokens in B
    ("이상한 글", HOSTILE),  # 6: kept in both
    ("주말에 뭐 할까요?", "가까운 공원에 산책을 가 보세요."),  # 7
]
# repetition share of the response per row, Hangul share of prompt and response
REPETITION = [0.0, 0.05, 0.0, 0.0, 0.1, 0.95, 0.0, 0.02]
HANGUL = [(0.9, 0.9), (0.9, 0.9), (0.0, 0.0), (0.8, 0.7), (0.8, 0.6), (0.7, 0.9), (0.3, 0.2), (0.9, 0.9)]


def _samples(n: int) -> pl.DataFrame:
    rows = [{"sample_id": f"kochat:{i}", "source_row": i, "source_line": i + 1, "prompt": p, "response": r,
             "content_hash": f"h{i}"} for i, (p, r) in enumerate(TEXTS)]  # fmt: skip
    if n > len(TEXTS):  # B read one more line at the end
        rows.append({"sample_id": "kochat:8", "source_row": 8, "source_line": 9, "prompt": "새 질문",
                     "response": "새 답변입니다.", "content_hash": "h8"})  # fmt: skip
    return pl.DataFrame(rows)


def _decisions(drops: dict[int, tuple[str, str, str]], n: int) -> pl.DataFrame:
    rows = []
    for i, (stage, reason, evidence) in drops.items():
        rows.append({"sample_id": f"kochat:{i}", "stage": stage, "kept": False, "reason": reason,
                     "evidence": evidence})  # fmt: skip
    rows.append({"sample_id": "kochat:3", "stage": "pii", "kept": True, "reason": "pii:phone",
                 "evidence": "masked pii:phone x1 at response[6:19]"})  # fmt: skip
    rows += [{"sample_id": f"kochat:{i}", "stage": "final", "kept": True, "reason": None,
              "evidence": "split=train"} for i in range(n) if i not in drops]  # fmt: skip
    return pl.DataFrame(rows)


def _signals(n: int) -> pl.DataFrame:
    rows = []
    for i in range(n):
        prompt_ratio, response_ratio = HANGUL[i] if i < len(HANGUL) else (1.0, 1.0)
        rows += [
            {"sample_id": f"kochat:{i}", "stage": "language", "field": "prompt", "signal": "hangul_ratio",
             "value": prompt_ratio},
            {"sample_id": f"kochat:{i}", "stage": "language", "field": "response", "signal": "hangul_ratio",
             "value": response_ratio},
            {"sample_id": f"kochat:{i}", "stage": "quality", "field": "response", "signal": "repetition",
             "value": REPETITION[i] if i < len(REPETITION) else 0.0},
        ]  # fmt: skip
    rows.append({"sample_id": "kochat:3", "stage": "pii", "field": None, "signal": "pii_phone", "value": 1.0})
    return pl.DataFrame(rows)


DROPS_A = {
    2: ("language", "lang:en", "prompt en (0.98); response en (0.99)"),
    5: ("quality", "quality:repetition", "response: '아' x20"),
}
DROPS_B = {
    4: ("quality", "quality:refusal", "response: 'AI 언어 모델이기 때문에'"),
    5: ("quality", "quality:special_tokens", "response: <|endoftext|> at 20"),
}


def build(db: Path) -> Path:
    stages = ["schema", "normalize", "language", "pii", "quality", "split"]
    for cid, created, n, drops in (("sig-a", "2026-12-01T10:00:00", 8, DROPS_A),
                                   ("sig-b", "2026-12-01T11:00:00", 9, DROPS_B)):  # fmt: skip
        store.ingest_curation(
            db,
            {"curation_id": cid, "dataset": "kochat", "kind": "sft", "data_version": f"dv-{cid}",
             "recipe": {"curate": {"stages": stages}}, "created_at": created, "read": n,
             "kept": n - len(drops), "dropped": len(drops), "quarantined": 0, "report": {}},
            _samples(n), _decisions(drops, n), pl.DataFrame(), _signals(n),
        )  # fmt: skip
    return db


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = build(tmp_path_factory.mktemp("signals") / "tunelab.duckdb")
    previous = os.environ.get("TUNELAB_WAREHOUSE")
    os.environ["TUNELAB_WAREHOUSE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TUNELAB_WAREHOUSE", None)
    else:
        os.environ["TUNELAB_WAREHOUSE"] = previous


def frame_with(at: AppTest, *columns: str):
    """The first dataframe shown with these columns (plain st.dataframe elements carry no key in AppTest)."""
    for element in at.dataframe:
        if all(c in element.value.columns for c in columns):
            return element.value
    raise AssertionError(f"no dataframe with columns {columns}")


def rows_table(at: AppTest) -> str:
    """The rows table as the reader sees it (character references decoded)."""
    return next(
        html.unescape(m.value) for m in at.markdown if m.value.startswith('<table class="tl-rows">')
    )  # fmt: skip


def test_signal_queries(db: Path) -> None:
    overview = queries.signal_overview(db, "sig-b")
    assert overview.select("stage", "signal", "field", "rows").rows() == [
        ("language", "hangul_ratio", "prompt", 9),
        ("language", "hangul_ratio", "response", 9),
        ("pii", "pii_phone", None, 1),
        ("quality", "repetition", "response", 9),
    ]
    hist = queries.signal_histogram(db, "sig-a", "quality", "repetition", "response", bins=10)
    assert hist["kept"].sum() + hist["dropped"].sum() == 8
    last = hist.filter(pl.col("bin") == 9).row(0, named=True)
    assert (last["dropped"], last["kept"]) == (1, 0) and last["bin_end"] == pytest.approx(0.95)
    assert hist["bin_start"][0] == 0.0
    one = queries.signal_histogram(db, "sig-a", "pii", "pii_phone", None)  # one value: one bin
    assert one.select("bin", "kept", "dropped").rows() == [(0, 1, 0)]
    rows = queries.signal_rows(db, "sig-a", "quality", "repetition", "response", 0.5, 1.0)
    assert rows.select("sample_id", "outcome").rows() == [("kochat:5", "quality · quality:repetition")]
    assert LOOP in rows["text"][0] and rows["total"][0] == 1
    masked = queries.signal_rows(db, "sig-a", "pii", "pii_phone", None, 0.0, 10.0)
    assert masked.select("sample_id", "outcome").rows() == [("kochat:3", "kept")]


def test_signals_tab_distribution_and_drill_down(db: Path) -> None:
    at = AppTest.from_file(str(PAGES / "audit.py"), default_timeout=60)
    at.query_params["curation"] = "sig-a"
    at.query_params["tab"] = "Signals"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    overview = frame_with(at, "stage", "signal", "field", "mean")
    assert len(overview) == 4
    at.selectbox(key="signal_pick").select(("quality", "repetition", "response")).run()
    table = rows_table(at)
    assert table.index("kochat:5") < table.index("kochat:4")  # highest value first
    assert "quality · quality:repetition" in table and LOOP in table
    # drill down: only the rows at 0.5 and above
    at.slider(key="signal_range:quality:repetition:response").set_value((0.5, 0.95)).run()
    table = rows_table(at)
    assert "kochat:5" in table and "kochat:4" not in table and "kochat:0" not in table
    assert any("1 rows with repetition" in html.unescape(c.value) for c in at.caption)
    # untrusted text: no image, link or tag reaches the page as markup
    at.slider(key="signal_range:quality:repetition:response").set_value((0.0, 0.95)).run()
    raw = next(m.value for m in at.markdown if m.value.startswith('<table class="tl-rows">'))
    assert "![x](" not in raw and "<b>" not in raw and "**" not in raw
    assert HOSTILE in rows_table(at)


def test_signals_tab_without_signals(db: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    store.ingest_curation(
        empty,
        {"curation_id": "plain", "dataset": "kochat", "kind": "sft", "read": 1, "kept": 1, "dropped": 0,
         "quarantined": 0, "report": {}},
        _samples(8).head(1), _decisions({}, 1), pl.DataFrame(),
    )  # fmt: skip
    at = AppTest.from_file(str(PAGES / "audit.py"), default_timeout=60)
    at.query_params["tab"] = "Signals"
    os.environ["TUNELAB_WAREHOUSE"] = str(empty)
    try:
        at.run()
    finally:
        os.environ["TUNELAB_WAREHOUSE"] = str(db)
    assert not at.exception
    assert any("No signal was measured" in i.value for i in at.info)


def test_diff_page_counts_and_changed_rows(db: Path) -> None:
    at = AppTest.from_file(str(PAGES / "diff.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    # defaults: B = the newest, A = the previous curation of the same dataset
    assert (at.selectbox(key="a").value, at.selectbox(key="b").value) == ("sig-a", "sig-b")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Kept → dropped"] == "1" and metrics["Dropped → kept"] == "1"
    assert (
        metrics["Other reason"] == "1"
        and metrics["Added (only B)"] == "1"
        and metrics["Removed (only A)"] == "0"
    )
    reasons = frame_with(at, "stage", "reason", "A", "B")
    counts = {
        (s, r): (a, b)
        for s, r, a, b in zip(reasons["stage"], reasons["reason"], reasons["A"], reasons["B"], strict=True)
    }
    assert counts[("language", "lang:en")] == (1, 0) and counts[("quality", "quality:refusal")] == (0, 1)
    assert counts[("pii", "pii:phone")] == (1, 1)

    table = rows_table(at)  # the first change kind: kept → dropped
    assert "kochat:4" in table and "quality · quality:refusal" in table and "기분이 어때?" in table
    at.selectbox(key="change").select("reason_changed").run()
    table = rows_table(at)
    assert "kochat:5" in table
    assert "quality · quality:repetition" in table and "quality · quality:special_tokens" in table
    at.selectbox(key="change").select("dropped_to_kept").run()
    table = rows_table(at)
    assert "kochat:2" in table and "language · lang:en" in table and "The capital of France" in table


def test_diff_page_curations_from_the_url(db: Path) -> None:
    at = AppTest.from_file(str(PAGES / "diff.py"), default_timeout=60)
    at.query_params["a"] = "sig-b"
    at.query_params["b"] = "sig-a"  # the other way round: B read one row fewer
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Removed (only A)"] == "1" and metrics["Added (only B)"] == "0"
    assert metrics["Kept → dropped"] == "1"  # row 2: kept in sig-b, lang:en in sig-a
    at.selectbox(key="a").select("sig-a").run()
    assert any("Pick two different curations" in i.value for i in at.info)


def test_unbounded_signal_histogram_keeps_the_outlier_in_the_last_bin(tmp_path: Path) -> None:
    db = tmp_path / "ratios.duckdb"
    values = [float(v) for v in range(1, 101)] + [10_000.0]  # rejected/chosen length ratios, one outlier
    ids = [f"p:{i}" for i in range(len(values))]
    store.ingest_curation(
        db,
        {"curation_id": "ratios", "dataset": "p", "kind": "dpo", "read": len(ids), "kept": len(ids),
         "dropped": 0, "quarantined": 0, "report": {}},
        pl.DataFrame({"sample_id": ids}),
        pl.DataFrame({"sample_id": ids, "stage": ["final"] * len(ids), "kept": [True] * len(ids)}),
        pl.DataFrame(),
        pl.DataFrame({"sample_id": ids, "stage": "pairs", "field": None, "signal": "length_ratio", "value": values},
                     schema_overrides={"field": pl.String}),
    )  # fmt: skip
    hist = queries.signal_histogram(db, "ratios", "pairs", "length_ratio", None, bins=10)
    assert hist["kept"].sum() == 101 and hist.height == 10  # equal bins up to the 99th percentile (100.0)
    assert hist["bin_start"][0] == 1.0 and hist["bin_end"][0] == pytest.approx(10.9)
    last = hist.row(-1, named=True)
    assert last["bin_end"] == 10_000.0 and last["kept"] == 11  # 91..100 and the outlier
