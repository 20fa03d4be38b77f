"""The Runs page on an evaluation an older tunelab stored with NaN deltas (models sharing no prompt, n = 0):
every such cell reads "—" with the reason, never "+nan" / "nan" (found by the new-user pass)."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_queries import build_warehouse

NOT_A_NUMBER = "n/a: stored as NaN (the models share no prompt, n = 0; re-score with `tunelab score`)"
PAGE = Path(__file__).resolve().parents[1] / "tunelab" / "dashboards" / "views" / "runs.py"


@pytest.fixture(scope="module")
def nan_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = build_warehouse(tmp_path_factory.mktemp("wh") / "tunelab.duckdb")
    # what `tunelab evaluate` wrote before it skipped models without shared prompts
    with duckdb.connect(str(path)) as con:
        con.execute(
            "UPDATE eval_deltas SET delta = 'NaN', ci_low = 'NaN', ci_high = 'NaN', p_value = 'NaN', n = 0, "
            "delta_pct = 'NaN', significant = false WHERE model = 'sft' AND baseline = 'base'"
        )
    previous = os.environ.get("TUNELAB_WAREHOUSE")
    os.environ["TUNELAB_WAREHOUSE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TUNELAB_WAREHOUSE", None)
    else:
        os.environ["TUNELAB_WAREHOUSE"] = previous


def test_nan_deltas_show_as_missing_with_the_reason(nan_db: Path) -> None:
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    lead = next(e.value for e in at.dataframe if "Δ vs base" in e.value.columns)
    row = lead[(lead["metric"] == "rougeL") & (lead["model"] == "sft")].iloc[0]
    assert (row["Δ vs base"], row["Δ 95 % interval"], row["p"], row["significant"], row["%"]) == ("—",) * 5
    assert row["source"].startswith("n/a: stored as NaN")
    # the untouched pair still reads as a number
    dpo = lead[(lead["metric"] == "rougeL") & (lead["model"] == "dpo")].iloc[0]
    assert dpo["Δ vs base"] == "+0.2833"
    # no number cell or sentence prints a NaN (the reason names it in words)
    shown = "\n".join(
        [html.unescape(m.value) for m in at.markdown] + [e.value.to_csv(na_rep="") for e in at.dataframe]
    )
    assert not re.search(r"[+-]?\bnan\b", shown.replace(NOT_A_NUMBER, ""), re.IGNORECASE), shown
    pairs = next(e.value for e in at.dataframe if "comparison" in e.value.columns)
    sft = pairs[pairs["comparison"] == "sft − base"].iloc[0]
    assert sft["p < 0.05"].startswith("n/a: stored as NaN") and sft["% (meaningful base only)"] == "—"
