"""Runs: training runs with their lineage, their curves, and the before/after comparison of models."""

import altair as alt
import polars as pl
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import common, queries
from tunelab.dashboards.common import q

db = common.page_start("Runs", "Training runs, their data lineage and curves; models compared against base")

runs = q(queries.runs, db)
if runs.height == 0:
    st.info("No training run yet: run `tunelab train sft RECIPE` (or `tunelab demo`).")
else:
    st.subheader("Lineage")
    st.dataframe(
        runs.select(
            "run_id", "kind", "status", "dataset", "curation_id", "data_version", "parent_run_id",
            "base_model", "base_revision", "started_at", "duration_s", "adapter_path", "error",
        ),
        hide_index=True,
        key="runs_table",
        column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f")},
    )  # fmt: skip
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
    picked = st.multiselect("Runs", run_ids, default=run_ids[:10], key="curve_runs")
    curves = q(queries.train_curves, db, picked) if picked else pl.DataFrame()
    if curves.height == 0:
        st.info("No logged steps for these runs yet.")
    else:
        curves = curves.with_columns(line=pl.col("run_id") + " · " + pl.col("series"))

        def line_chart(series: list[str], title: str) -> alt.Chart:
            data = curves.filter(pl.col("series").is_in(series)).to_pandas()
            return (
                alt.Chart(data, title=title)
                .mark_line(point=alt.OverlayMarkDef(size=18))
                .encode(
                    x=alt.X("step:Q"),
                    y=alt.Y("value:Q", scale=alt.Scale(zero=False)),
                    # run ids are long: legend below the plot, untruncated
                    color=alt.Color(
                        "line:N", title=None, legend=alt.Legend(orient="bottom", columns=1, labelLimit=0)
                    ),
                    tooltip=["run_id", "series", "step", alt.Tooltip("value:Q", format=".4f")],
                )
            )

        present = set(curves["series"].unique().to_list())
        left, right = st.columns(2)
        left.altair_chart(line_chart(["loss", "eval_loss"], "loss / eval loss"), width="stretch")
        rewards = [s for s in queries.CURVE_SERIES if s.startswith("rewards_") and s != "rewards_accuracies"]
        if present & set(rewards):
            right.altair_chart(
                line_chart(rewards, "DPO rewards (chosen / rejected / margin)"), width="stretch"
            )
            if "rewards_accuracies" in present:
                right.altair_chart(line_chart(["rewards_accuracies"], "DPO reward accuracy"), width="stretch")
        elif "learning_rate" in present:
            right.altair_chart(line_chart(["learning_rate"], "learning rate"), width="stretch")

st.subheader("Comparison")
evals = q(queries.evals, db)
if evals.height == 0:
    st.info("No evaluation yet: run `tunelab evaluate RECIPE`.")
    st.stop()
by_id = {row["eval_id"]: row for row in evals.to_dicts()}
eval_id = st.selectbox(
    "Evaluation",
    list(by_id),
    format_func=lambda e: f"{e} · {by_id[e]['eval_set'] or ''} · {by_id[e]['models'] or ''}",
    key="compare_eval",
)
compare = q(queries.comparison, db, eval_id)
if compare.height == 0:
    st.info("This evaluation has no corpus metrics.")
    st.stop()
models = queries.order_models(compare["model"].unique().to_list())
n_prompts = compare["n"].drop_nulls().max()
st.caption(
    f"n = {n_prompts} prompts · 95 % intervals · deltas with a paired test (* p < 0.05); a % change is shown "
    "only against a baseline of at least 10 % of the metric's range"
    if n_prompts
    else "this evaluation was stored without intervals (re-score it with `tunelab score` to get them)"
)
values = compare.pivot(on="model", index="metric", values="value").select("metric", *models)
number_columns = {m: st.column_config.NumberColumn(m, format="%.4f") for m in models}
st.dataframe(values, hide_index=True, key="compare_table", column_config=number_columns)
pairs = q(queries.deltas, db, eval_id)
if pairs.height:
    shown = pairs.with_columns(
        (pl.col("model") + " − " + pl.col("baseline")).alias("comparison"),
        pl.when(pl.col("significant")).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("p < 0.05"),
    ).select("metric", "comparison", "delta", "ci_low", "ci_high", "p_value", "p < 0.05", "delta_pct", "n")
    st.dataframe(
        shown,
        hide_index=True,
        key="delta_table",
        column_config={
            "delta": st.column_config.NumberColumn("delta", format="%+.4f"),
            "ci_low": st.column_config.NumberColumn("95 % low", format="%+.4f"),
            "ci_high": st.column_config.NumberColumn("95 % high", format="%+.4f"),
            "p_value": st.column_config.NumberColumn("p", format="%.4f"),
            "delta_pct": st.column_config.NumberColumn("% (meaningful base only)", format="%+.1f%%"),
        },
    )
    st.markdown(
        "  \n".join(
            f"**{safetext.text(r['metric'])}** · {safetext.text(r['model'])} − {safetext.text(r['baseline'])}: "
            f"{r['delta']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}], p = {r['p_value']:.4f} · "
            + ("distinguishable from noise" if r["significant"] else "not distinguishable from noise")
            for r in pairs.to_dicts()
        )
    )
# metrics live on different scales (BLEU 0-100, ROUGE 0-1): one panel per metric, own y axis; the rule
# is the 95 % interval
base = alt.Chart(compare.to_pandas()).encode(x=alt.X("model:N", sort=models, title=None))
bars = base.mark_bar().encode(
    y=alt.Y("value:Q", title=None),
    color=alt.Color("model:N", sort=models),
    tooltip=["metric", "model", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("ci_low:Q", format=".4f"),
             alt.Tooltip("ci_high:Q", format=".4f"), "n"],
)  # fmt: skip
errors = base.mark_rule(color="black").encode(y="ci_low:Q", y2="ci_high:Q")
chart = (
    alt.layer(bars, errors, data=compare.to_pandas())
    .properties(width=140, height=220)
    .facet(column=alt.Column("metric:N", title=None))
    .resolve_scale(y="independent")
)
st.altair_chart(chart)
