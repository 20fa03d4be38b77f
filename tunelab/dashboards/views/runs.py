"""Runs: the comparison first (every metric by model with its interval, each delta against a baseline you
pick with its paired test, judge win rates and reviewer agreement), then training runs, lineage and curves.

The evaluation and the baseline are in the URL (`/runs?eval=eval-…&baseline=sft`), so a reload or a shared
link opens the same comparison.
"""

import math
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import common, queries
from tunelab.dashboards.common import q
from tunelab.evaluate import stats
from tunelab.evaluate.compare import SCALE

MISSING = "—"
# evaluations stored before models without shared prompts were skipped carry NaN deltas (n = 0): shown as
# MISSING with this reason, never as "+nan"
NOT_A_NUMBER = "n/a: stored as NaN (the models share no prompt, n = 0; re-score with `tunelab score`)"
# loss curves: one panel per run from this many runs on (overlaid lines of 5+ runs are unreadable)
SMALL_MULTIPLES_FROM = 4

db = common.page_start(
    "Runs", "Models compared with intervals and paired tests, judge and reviewers; training runs and curves"
)


@st.cache_data(show_spinner=False, max_entries=64)
def _computed_deltas(
    db_path: str, stamp: tuple[int, ...], eval_id: str, baseline: str
) -> dict[tuple[str, str], dict[str, Any]]:
    """(metric, model) -> model − baseline for every per-sample metric, computed here with the same paired
    bootstrap, approximate-randomization test and seed as `tunelab evaluate` (for the pairs it did not
    store; corpus BLEU/chrF need the texts and are left out)."""
    scores = queries.paired_scores(Path(db_path), eval_id, baseline)
    found = {}
    for (metric, model), group in scores.group_by("metric", "model"):
        est = stats.paired_difference(group["value"].to_list(), group["base_value"].to_list())
        base_value = float(group["base_value"].mean())
        meaningful = stats.relative_change_is_meaningful(base_value, SCALE.get(metric, 1.0))
        found[(metric, model)] = {
            "delta": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high, "p_value": est.p_value,
            "n": est.n, "significant": est.significant, "source": "computed here",
            "delta_pct": 100.0 * est.value / abs(base_value) if meaningful else None,
        }  # fmt: skip
    return found


def delta_against(
    stored: dict[tuple[str, str, str], dict[str, Any]],
    per_sample: set[str],
    eval_id: str,
    metric: str,
    model: str,
    baseline: str,
    values: dict[tuple[str, str], float | None],
) -> dict[str, Any] | None:
    """model − baseline on metric: the stored row, else the stored reverse pair negated, else computed."""
    row = stored.get((metric, model, baseline))
    if row is not None:
        return {**row, "source": "stored"}
    reverse = stored.get((metric, baseline, model))
    if reverse is not None and reverse["delta"] is not None:
        base_value = values.get((metric, baseline))
        meaningful = base_value is not None and stats.relative_change_is_meaningful(
            base_value, SCALE.get(metric, 1.0)
        )
        return {
            "delta": -reverse["delta"],
            "ci_low": None if reverse["ci_high"] is None else -reverse["ci_high"],
            "ci_high": None if reverse["ci_low"] is None else -reverse["ci_low"],
            "p_value": reverse["p_value"], "n": reverse["n"], "significant": reverse["significant"],
            "delta_pct": 100.0 * -reverse["delta"] / abs(base_value) if meaningful else None,
            "source": "stored (reversed)",
        }  # fmt: skip
    if metric in per_sample:
        return _computed_deltas(str(db), common._stamp(db), eval_id, baseline).get((metric, model))
    return None


def number(value: float | None) -> bool:
    """A value to print: neither missing nor NaN."""
    return value is not None and not math.isnan(value)


def signed(value: float | None, digits: int = 4) -> str:
    return f"{value:+.{digits}f}" if number(value) else MISSING


def plain(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if number(value) else MISSING


def comparison_section() -> None:
    evals = q(queries.evals, db)
    if evals.height == 0:
        st.info("No evaluation yet: run `tunelab evaluate RECIPE` (or `tunelab score PREDICTIONS`).")
        return
    by_id = {row["eval_id"]: row for row in evals.to_dicts()}
    pick = st.columns([3, 2])
    eval_id = pick[0].selectbox(
        "Evaluation", list(by_id), key="eval", bind="query-params", help="newest first; kept in the URL"
    )
    compare = q(queries.comparison, db, eval_id)
    if compare.height == 0:
        st.info("This evaluation has no corpus metrics.")
        return
    models = queries.order_models(compare["model"].unique().to_list())
    baseline = pick[1].selectbox(
        "Baseline",
        models,
        index=models.index(queries.BASE_MODEL) if queries.BASE_MODEL in models else 0,
        key="baseline",
        bind="query-params",
        help="every delta below is a model minus this one (e.g. dpo against sft); kept in the URL",
    )
    info = by_id[eval_id]
    n_prompts = compare["n"].drop_nulls().max()
    st.caption(
        f"{safetext.text(info['eval_set'] or '')} · {safetext.text(info['created_at'])} · "
        + (
            f"n = {n_prompts} prompts · 95 % intervals · deltas with a paired test (* p < 0.05); a % change "
            "is shown only against a baseline of at least 10 % of the metric's range"
            if n_prompts
            else "this evaluation was stored without intervals (re-score it with `tunelab score` to get them)"
        )
    )

    values = {(r["metric"], r["model"]): r["value"] for r in compare.to_dicts()}
    stored = {(r["metric"], r["model"], r["baseline"]): r for r in q(queries.deltas, db, eval_id).to_dicts()}
    per_sample = set(q(queries.per_sample_metrics, db, eval_id))
    lead, lines = [], []
    for r in compare.to_dicts():
        if r["model"] == baseline:
            continue
        d = delta_against(stored, per_sample, eval_id, r["metric"], r["model"], baseline, values)
        d = d or {}
        lead.append({
            "metric": r["metric"], "model": r["model"],
            "value": plain(r["value"]),
            "95 % interval": MISSING if r["ci_low"] is None else f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
            f"Δ vs {baseline}": signed(d.get("delta")),
            "Δ 95 % interval": f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" if number(d.get("ci_low")) else MISSING,
            "p": plain(d.get("p_value")),
            "significant": ("yes" if d["significant"] else "no") if number(d.get("p_value")) else MISSING,
            "%": f"{d['delta_pct']:+.1f} %" if number(d.get("delta_pct")) else MISSING,
            "n": MISSING if (d.get("n") or r["n"]) is None else str(d.get("n") or r["n"]),
            "source": NOT_A_NUMBER if d and not number(d.get("delta")) else d.get("source", MISSING),
        })  # fmt: skip
        if d.get("source") == "computed here" and number(d.get("p_value")):
            lines.append((r["metric"], r["model"], baseline, d))
    st.markdown(f"**Each model against {safetext.text(baseline)}**")
    st.dataframe(pl.DataFrame(lead), hide_index=True, key="lead_table")
    st.caption(
        "— : not computed (a corpus BLEU/chrF pair `tunelab evaluate` did not store, or no per-sample "
        "scores), or stored as NaN by an older tunelab (source says so). source: stored by evaluate/score, reversed from the stored opposite pair, or computed here "
        "with the same paired bootstrap and test."
    )

    pairs = q(queries.deltas, db, eval_id)
    significance = [
        (r["metric"], r["model"], r["baseline"], r)
        for r in pairs.to_dicts()
        if number(r["p_value"]) and number(r["delta"])
    ] + lines

    def in_words(rows: list) -> str:
        return "  \n".join(
            f"**{safetext.text(metric)}** · {safetext.text(model)} − {safetext.text(base)}: "
            f"{d['delta']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], p = {d['p_value']:.4f} · "
            + ("distinguishable from noise" if d["significant"] else "not distinguishable from noise")
            for metric, model, base, d in rows
        )

    # the distinguishable deltas are the news; the rest are one click away (16 metrics x 3 pairs is a wall)
    distinguishable = [row for row in significance if row[3]["significant"]]
    if distinguishable:
        st.markdown(in_words(distinguishable))
    elif significance:
        st.markdown("No delta is distinguishable from noise (p < 0.05).")
    if len(distinguishable) < len(significance):
        with st.expander(
            f"Every delta in words ({len(significance) - len(distinguishable)} not distinguishable from noise)"
        ):
            st.markdown(in_words(significance))

    # metrics live on different scales (BLEU 0-100, ROUGE 0-1): one small panel per metric with its own
    # y axis, wrapped four to a row so 16 metrics don't run off the page; the rule is the 95 % interval
    data = compare.to_pandas()
    base = alt.Chart(data).encode(x=alt.X("model:N", sort=models, title=None, axis=alt.Axis(labelAngle=-30)))
    points = base.mark_point(filled=True, size=70).encode(
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", sort=models, legend=None),
        tooltip=["metric", "model", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("ci_low:Q", format=".4f"),
                 alt.Tooltip("ci_high:Q", format=".4f"), "n"],
    )  # fmt: skip
    errors = base.mark_rule(strokeWidth=2).encode(
        y="ci_low:Q", y2="ci_high:Q", color=alt.Color("model:N", sort=models, legend=None)
    )
    chart = (
        alt.layer(errors, points, data=data)
        .properties(width=150, height=150)
        .facet(facet=alt.Facet("metric:N", title=None), columns=4)
        .resolve_scale(y="independent")
    )
    st.altair_chart(chart)

    with st.expander("Values by model, and every comparison `tunelab evaluate` stored"):
        wide = compare.pivot(on="model", index="metric", values="value").select("metric", *models)
        st.dataframe(
            wide,
            hide_index=True,
            key="compare_table",
            column_config={m: st.column_config.NumberColumn(m, format="%.4f") for m in models},
        )
        if pairs.height:
            shown = pairs.with_columns(
                (pl.col("model") + " − " + pl.col("baseline")).alias("comparison"),
                pl.when(pl.col("delta").is_nan() | pl.col("p_value").is_nan())
                .then(pl.lit(NOT_A_NUMBER))
                .when(pl.col("significant"))
                .then(pl.lit("yes"))
                .otherwise(pl.lit("no"))
                .alias("p < 0.05"),
                pl.col("delta_pct")
                .fill_nan(None)
                .map_elements(lambda v: f"{v:+.1f} %", return_dtype=pl.Utf8, skip_nulls=True)
                .fill_null(MISSING)
                .alias("% (meaningful base only)"),
            ).select(
                "metric", "comparison", "delta", "ci_low", "ci_high", "p_value", "p < 0.05",
                "% (meaningful base only)", "n",
            ).with_columns(pl.col("delta", "ci_low", "ci_high", "p_value").fill_nan(None))  # fmt: skip
            st.dataframe(
                shown,
                hide_index=True,
                key="delta_table",
                column_config={
                    "delta": st.column_config.NumberColumn("delta", format="%+.4f"),
                    "ci_low": st.column_config.NumberColumn("95 % low", format="%+.4f"),
                    "ci_high": st.column_config.NumberColumn("95 % high", format="%+.4f"),
                    "p_value": st.column_config.NumberColumn("p", format="%.4f"),
                },
            )

    st.subheader("Judge and reviewers")
    common.pair_results(db, eval_id)


def curve_chart(curves: pl.DataFrame, series: list[str], title: str, per_run: bool, log_steps: bool) -> Any:
    data = curves.filter(pl.col("series").is_in(series))
    if log_steps:
        data = data.filter(pl.col("step") > 0)  # log scale: step 0 has no place
    frame = data.to_pandas()
    x = alt.X("step:Q", scale=alt.Scale(type="log" if log_steps else "linear"))
    tooltip = ["run_id", "series", "step", alt.Tooltip("value:Q", format=".4f")]
    if per_run:
        # small multiples: one panel per run, series coloured, a shared y so runs compare at a glance
        return (
            alt.Chart(frame)
            .mark_line(point=alt.OverlayMarkDef(size=10))
            .encode(
                x=x,
                y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=None),
                color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
                tooltip=tooltip,
            )
            .properties(width=220, height=140)
            .facet(facet=alt.Facet("run_id:N", title=None), columns=3, title=title)
            # each run's own steps fill its panel (a 20-step DPO run next to a 2,000-step SFT run)
            .resolve_scale(x="independent")
        )
    return (
        alt.Chart(frame, title=title)
        .mark_line(point=alt.OverlayMarkDef(size=14))
        .encode(
            x=x,
            y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=None),
            color=alt.Color("run_id:N", title="run", legend=alt.Legend(orient="right", labelLimit=260)),
            strokeDash=alt.StrokeDash("series:N", title=None, legend=alt.Legend(orient="right")),
            tooltip=tooltip,
        )
        .properties(height=300)
    )


def runs_section() -> None:
    runs = q(queries.runs, db)
    if runs.height == 0:
        st.info("No training run yet: run `tunelab train sft RECIPE` (or `tunelab demo`).")
        return
    st.subheader("Lineage")
    columns = [
        "run_id", "kind", "status", "dataset", "curation_id", "data_version", "parent_run_id",
        "base_model", "base_revision", "started_at", "duration_s", "adapter_path", "error",
    ]  # fmt: skip
    if "note" in runs.columns:
        columns.insert(3, "note")
    st.dataframe(
        runs.select(columns),
        hide_index=True,
        key="runs_table",
        column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f")},
    )
    st.markdown(
        " · ".join(
            f"{safetext.text(r['run_id'])} ({safetext.text(r['kind'])}, {safetext.text(r['status'])}) ← "
            + (f"{safetext.text(r['parent_run_id'])} ← " if r["parent_run_id"] else "")
            + f"{safetext.text(r['curation_id'] or '?')} ({safetext.text(r['data_version'] or 'no version')}) "
            + f"on {safetext.text(r['base_model'] or '?')}"
            for r in runs.head(5).to_dicts()
        )
    )

    st.subheader("Curves")
    run_ids = runs["run_id"].to_list()
    controls = st.columns([4, 2, 1], vertical_alignment="bottom")
    picked = controls[0].multiselect("Runs", run_ids, default=run_ids[:10], key="curve_runs")
    layout = controls[1].radio(
        "Layout",
        ["one panel per run", "overlaid"],
        index=0 if len(picked) >= SMALL_MULTIPLES_FROM else 1,
        key="curve_layout",
        horizontal=True,
    )
    log_steps = controls[2].toggle("log steps", key="curve_log")
    curves = q(queries.train_curves, db, picked) if picked else pl.DataFrame()
    if curves.height == 0:
        st.info("No logged steps for these runs yet.")
        return
    per_run = layout == "one panel per run"
    present = set(curves["series"].unique().to_list())
    st.altair_chart(curve_chart(curves, ["loss", "eval_loss"], "loss / eval loss", per_run, log_steps))
    rewards = [s for s in queries.CURVE_SERIES if s.startswith("rewards_") and s != "rewards_accuracies"]
    if present & set(rewards):
        # only DPO runs log rewards (UNPIVOT leaves out the NULLs), so these panels are the DPO runs'
        st.altair_chart(
            curve_chart(curves, rewards, "DPO rewards (chosen / rejected / margin)", per_run, log_steps)
        )
        if "rewards_accuracies" in present:
            st.altair_chart(
                curve_chart(curves, ["rewards_accuracies"], "DPO reward accuracy", per_run, log_steps)
            )
    elif "learning_rate" in present:
        st.altair_chart(curve_chart(curves, ["learning_rate"], "learning rate", per_run, log_steps))


st.subheader("Comparison")
comparison_section()
runs_section()
