"""What every page shares: where the warehouse is, Korean-capable fonts, cached read-only queries."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import queries
from tunelab.workspace import as_workspace

WAREHOUSE_ENV = "TUNELAB_WAREHOUSE"  # set by `tunelab dashboard` (dashboards/commands.py)

# Streamlit's Source Sans has no Hangul: name NanumGothic (Debian fonts-nanum) before the generic
# fallback, or Korean renders as boxes on machines whose default sans font lacks it.
CSS = """
<style>
html, body, .stApp, .stMarkdown, p, li, td, th, label, input, textarea, select, button {
  font-family: "Source Sans Pro", "Source Sans 3", "NanumGothic", "Nanum Gothic", "Noto Sans CJK KR", sans-serif;
}
code, pre, .stCode, textarea[aria-label="SQL"] {
  font-family: "Source Code Pro", "NanumGothicCoding", "NanumGothic", monospace;
}
.tl-text { white-space: pre-wrap; word-break: break-word; line-height: 1.5; }
.tl-box { border: 1px solid rgba(128,128,128,.35); border-radius: .4rem; padding: .5rem .7rem; margin-bottom: .4rem; }
.tl-box del { background: #ffd7d5; color: #82071e; text-decoration: line-through; }
.tl-box mark { background: #ccffd8; color: #055d20; }
.tl-rows { border-collapse: collapse; width: 100%; font-size: .9rem; }
.tl-rows th, .tl-rows td { border-bottom: 1px solid rgba(128,128,128,.25); padding: .3rem .4rem;
  vertical-align: top; text-align: left; }
.tl-rows td.tl-text { max-width: 60rem; }
.tl-score { color: #555; font-size: .85rem; }
.tl-flag { color: #9a3412; background: #ffedd5; border-radius: .3rem; padding: 0 .35rem; font-size: .85rem;
  display: inline-block; margin-bottom: .2rem; }
</style>
"""


def warehouse_path(argv: list[str] | None = None) -> Path:
    """`-- --warehouse FILE` from `streamlit run`, else $TUNELAB_WAREHOUSE, else the default workspace's."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--warehouse" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--warehouse="):
            return Path(arg.split("=", 1)[1])
    env = os.environ.get(WAREHOUSE_ENV)
    return Path(env) if env else as_workspace(None).warehouse


def page_start(title: str, caption: str | None = None) -> Path:
    """Fonts, the page title, and the warehouse path; stops the page with a message when there is none."""
    st.markdown(CSS, unsafe_allow_html=True)
    st.title(title)
    db = warehouse_path()
    if not db.is_file():
        st.error(f"No warehouse at `{db}`. Run `tunelab demo` (or `tunelab curate RECIPE`) first.")
        st.stop()
    if caption:
        st.caption(f"{caption} · warehouse `{db}`")
    return db


def _stamp(db: Path) -> tuple[int, ...]:
    """Changes whenever the file (or its write-ahead log) changes, so cached results follow new writes."""
    stamp: list[int] = []
    for path in (db, db.with_name(db.name + ".wal")):
        try:
            info = path.stat()
            stamp += [info.st_mtime_ns, info.st_size]
        except FileNotFoundError:
            stamp += [0, 0]
    return tuple(stamp)


@st.cache_data(show_spinner=False, max_entries=512)
def _cached_call(name: str, db: str, stamp: tuple[int, ...], args: tuple, kwargs: tuple) -> Any:
    return getattr(queries, name)(Path(db), *args, **dict(kwargs))


def q(fn: Callable[..., Any], db: Path, *args: Any, **kwargs: Any) -> Any:
    """Call a `queries` function, cached per warehouse state (reruns on widget clicks cost nothing)."""
    return _cached_call(fn.__name__, str(db), _stamp(db), args, tuple(sorted(kwargs.items())))


def esc(value: Any, limit: int | None = None) -> str:
    """Untrusted text for st.markdown, inert as Markdown and as HTML (see safetext)."""
    return safetext.text(value, limit)


def fmt_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def html_table(rows: list[dict[str, Any]], columns: list[str], text_columns: tuple[str, ...] = ()) -> str:
    """Rows as an HTML table that wraps long (Korean) texts instead of cutting them like a grid does."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if c in text_columns:
                cells.append(f'<td class="tl-text">{esc(value, 1500)}</td>')
            else:
                cells.append(f"<td>{esc(fmt_number(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="tl-rows"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def pager(key: str, total: int, page_size: int) -> int:
    """A page number input when there is more than one page; returns the row offset."""
    pages = max(1, -(-total // page_size))
    if pages == 1:
        return 0
    column = st.columns([1, 4])[0]
    page = column.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, value=1, step=1, key=key)
    return (int(page) - 1) * page_size


@st.cache_data(show_spinner=False, max_entries=64)
def _agreement(
    db: str, stamp: tuple[int, ...], eval_id: str
) -> tuple[dict[str, Any], pl.DataFrame, dict[str, Any]]:
    from tunelab.dashboards import agreement

    votes = queries.pair_votes(Path(db), eval_id)
    reviewers = votes.filter(pl.col("source") == "reviewer")
    return (
        agreement.krippendorff_alpha(reviewers),
        agreement.pairwise_agreement(votes),
        agreement.krippendorff_alpha(votes),
    )


def _interval(value: Any, low: Any, high: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def pair_results(db: Path, eval_id: str) -> bool:
    """Win rates per model pair (blind reviewers pooled, and each LLM judge) with Wilson intervals and n,
    then agreement: Krippendorff's alpha among reviewers, and Cohen's kappa for every two raters (reviewers
    and the judge). Returns whether there was anything to show."""
    rates = q(queries.pair_winrates, db, eval_id)
    if rates.height == 0:
        st.caption(
            "No blind reviews or pairwise judge verdicts for this evaluation yet (Predictions page → "
            "Blind A/B review, or `metrics: [judge]` with `mode: pairwise`)."
        )
        return False
    shown = rates.with_columns(
        pl.when(pl.col("source") == "judge").then(pl.lit("LLM judge")).otherwise(pl.lit("reviewers")).alias("by"),
        (pl.col("model_a") + " vs " + pl.col("model_b")).alias("pair"),
        (pl.col("wins_a").cast(pl.Utf8) + " / " + pl.col("ties").cast(pl.Utf8) + " / "
         + pl.col("wins_b").cast(pl.Utf8)).alias("wins / ties / losses"),
    ).select("by", "pair", "win_rate_a", "ci_low", "ci_high", "wins / ties / losses", "n", "prompts", "raters")  # fmt: skip
    st.markdown(
        "**Win rates** (first model of the pair over the second; ties count half; 95 % Wilson interval)"
    )
    st.dataframe(
        shown,
        hide_index=True,
        key=f"winrates_{eval_id}",
        column_config={
            "win_rate_a": st.column_config.NumberColumn("win rate", format="%.3f"),
            "ci_low": st.column_config.NumberColumn("95 % low", format="%.3f"),
            "ci_high": st.column_config.NumberColumn("95 % high", format="%.3f"),
        },
    )
    alpha, pairs, alpha_all = _agreement(str(db), _stamp(db), eval_id)
    lines = [
        f"Krippendorff's alpha among reviewers (nominal): {_interval(alpha['alpha'], alpha['ci_low'], alpha['ci_high'])}"
        f" · n = {alpha['n']} prompts rated by two or more of {alpha['raters']} reviewers"
    ]
    if alpha_all["raters"] > alpha["raters"]:
        lines.append(
            f"… with the judge as one more rater: {_interval(alpha_all['alpha'], alpha_all['ci_low'], alpha_all['ci_high'])}"
            f" · n = {alpha_all['n']}"
        )
    st.markdown("**Agreement**  \n" + "  \n".join(esc(line) for line in lines))
    if pairs.height:
        st.dataframe(
            pairs,
            hide_index=True,
            key=f"agreement_{eval_id}",
            column_config={
                "agreement": st.column_config.NumberColumn("agreement", format="%.2f"),
                "kappa": st.column_config.NumberColumn("Cohen's κ", format="%.2f"),
                "kappa_low": st.column_config.NumberColumn("95 % low", format="%.2f"),
                "kappa_high": st.column_config.NumberColumn("95 % high", format="%.2f"),
            },
        )
    else:
        st.caption("No two raters have rated the same prompt of the same pair yet: agreement needs overlap.")
    return True
