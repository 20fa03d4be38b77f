"""Predictions: reference vs every model per prompt, per-sample scores, regressions, and 👍/👎 reviews."""

from pathlib import Path

import polars as pl
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import common, queries
from tunelab.dashboards.common import q
from tunelab.errors import UserError
from tunelab.warehouse import store

# 👍/👎 as Streamlit's bundled Material icons: emoji need a colour-emoji font many servers lack.
THUMB_UP, THUMB_DOWN = ":material/thumb_up:", ":material/thumb_down:"

db = common.page_start("Predictions", "Every model's answer to each prompt, scored; rate them to keep notes")

evals = q(queries.evals, db)
if evals.height == 0:
    st.info("No evaluation yet: run `tunelab evaluate RECIPE` (or `tunelab demo`).")
    st.stop()

by_id = {row["eval_id"]: row for row in evals.to_dicts()}
top = st.columns([3, 2, 2])
eval_id = top[0].selectbox(
    "Evaluation",
    list(by_id),
    key="eval",
    bind="query-params",
)
models = q(queries.eval_models, db, eval_id)
metrics = q(queries.eval_metrics_names, db, eval_id)
if not models:
    st.info("This evaluation has no predictions.")
    st.stop()
# ROUGE-L first when present: it is the headline metric of the before/after table
metric_index = next(
    (i for i, m in enumerate(metrics) if m.lower().replace("_", "").replace("-", "") == "rougel"),
    next((i for i, m in enumerate(metrics) if m.lower().startswith("rouge")), 0),
)
metric = top[1].selectbox(
    "Metric", metrics or ["(none)"], index=metric_index, key="metric", bind="query-params"
)
tuned = [m for m in models if m != queries.BASE_MODEL] or models
model = top[2].selectbox(
    "Model to sort / compare with base", tuned, index=len(tuned) - 1, key="model", bind="query-params"
)

st.sidebar.text_input(
    "Reviewer", value=store.default_reviewer(), key="reviewer", help="recorded with every rating you give"
)
filters = st.columns([2, 2, 2, 3, 1], vertical_alignment="bottom")
sort = filters[0].selectbox("Sort by", list(queries.PREDICTION_SORTS), key="sort")
labels = q(queries.eval_labels, db, eval_id)
label = filters[1].selectbox("Label", ["(all)", *labels], key="label")
regressions = filters[2].toggle(
    "Regressions only",
    key="regressions",
    bind="query-params",
    help=f"{safetext.text(model)} scored below base on {safetext.text(metric)}",
)
search = filters[3].text_input("Search prompt or sample id", key="search")
page_size = int(filters[4].number_input("Per page", 1, 50, 5, key="page_size"))


def save_review(
    warehouse: str, eval_id: str, model: str, sample_id: str, rating: int, comment_key: str
) -> None:
    """The dashboard's only write: a reviewer's rating through the warehouse API."""
    comment = (st.session_state.get(comment_key) or "").strip() or None
    reviewer = st.session_state.get("reviewer") or None
    try:
        store.add_review(Path(warehouse), eval_id, model, sample_id, rating, comment, reviewer=reviewer)
    except UserError as exc:
        st.session_state["review_error"] = str(exc)
        return
    st.session_state["review_saved"] = (
        rating,
        f"Review saved: {safetext.text(model)} on {safetext.text(sample_id)}",
    )


if "review_saved" in st.session_state:
    saved_rating, saved_message = st.session_state.pop("review_saved")
    st.success(saved_message, icon=THUMB_UP if saved_rating > 0 else THUMB_DOWN)
if "review_error" in st.session_state:
    st.error(safetext.text(st.session_state.pop("review_error")))

probe = q(
    queries.prediction_page, db, eval_id, metric, model, sort=sort, regressions_only=regressions,
    label=None if label == "(all)" else label, search=search or None, limit=1, offset=0,
)  # fmt: skip
total = int(probe["total"][0]) if probe.height else 0
word = ("regression" if regressions else "prompt") + ("" if total == 1 else "s")
st.caption(f"{total:,} {word} · {safetext.text(model)} vs base on {safetext.text(metric)}")
if total == 0:
    st.info("Nothing matches these filters.")
    st.stop()
offset = common.pager("prediction_page", total, page_size)
page = q(
    queries.prediction_page, db, eval_id, metric, model, sort=sort, regressions_only=regressions,
    label=None if label == "(all)" else label, search=search or None, limit=page_size, offset=offset,
)  # fmt: skip
sample_ids = page["sample_id"].to_list()
preds = q(queries.predictions_for, db, eval_id, sample_ids)
scores = q(queries.scores_for, db, eval_id, sample_ids)
reviews = q(queries.latest_reviews, db, eval_id, sample_ids)
pred_by = {(r["sample_id"], r["model"]): r for r in preds.to_dicts()}
review_by = {(r["sample_id"], r["model"]): r for r in reviews.to_dicts()}
scores_by: dict[tuple[str, str], list[dict]] = {}
for r in scores.to_dicts():
    scores_by.setdefault((r["sample_id"], r["model"]), []).append(r)
base_scores = {
    (r["sample_id"], r["metric"]): r["value"]
    for r in scores.filter(pl.col("model") == queries.BASE_MODEL).to_dicts()
}


def score_text(sample_id: str, model_name: str, metric_name: str, value: float | None) -> str:
    text = f"{metric_name} {common.fmt_number(value, 3)}"
    base = base_scores.get((sample_id, metric_name))
    if model_name != queries.BASE_MODEL and base is not None and value is not None:
        text += f" ({value - base:+.3f})"
    return safetext.text(text)


def score_lines(sample_id: str, model_name: str) -> tuple[str, str]:
    """The chosen metric (headline) and the other metrics; ROUGE precision/recall parts are left out."""
    headline, others = "", []
    for r in scores_by.get((sample_id, model_name), []):
        if r["metric"] == metric:
            headline = f"<b>{score_text(sample_id, model_name, r['metric'], r['value'])}</b>"
        elif not r["metric"].endswith(("_precision", "_recall")):
            others.append(score_text(sample_id, model_name, r["metric"], r["value"]))
    return headline or "no score", " · ".join(others)


for row in page.to_dicts():
    sid = row["sample_id"]
    delta = "" if row["delta"] is None else f" · Δ {metric} {row['delta']:+.3f}"
    with st.container(border=True):
        st.markdown(f"**{safetext.text(sid)}** · {safetext.text(row['label'] or '')}{delta}")
        st.markdown(
            f'<div class="tl-text"><b>Prompt</b><br>{safetext.text(row["prompt"], 3000)}</div>',
            unsafe_allow_html=True,
        )
        first = pred_by.get((sid, models[0]), {})
        columns = st.columns(1 + len(models))
        columns[0].markdown(
            f'<div class="tl-box"><div class="tl-score">reference</div>'
            f'<div class="tl-text">{safetext.text(first.get("reference"), 3000)}</div></div>',
            unsafe_allow_html=True,
        )
        for column, model_name in zip(columns[1:], models, strict=True):
            pred = pred_by.get((sid, model_name))
            with column:
                if pred is None:
                    st.caption(f"{safetext.text(model_name)}: no prediction")
                    continue
                headline, others = score_lines(sid, model_name)
                st.markdown(
                    f'<div class="tl-box"><div class="tl-score">{safetext.text(model_name)} · {headline}</div>'
                    f'<div class="tl-text">{safetext.text(pred["prediction"], 3000)}</div>'
                    f'<div class="tl-score">{others}</div></div>',
                    unsafe_allow_html=True,
                )
                review = review_by.get((sid, model_name))
                if review:
                    mark = THUMB_UP if review["rating"] > 0 else THUMB_DOWN
                    st.caption(f"{mark} {safetext.text(review['comment'] or '')}")
                key = f"{eval_id}|{model_name}|{sid}"
                comment_key = f"comment|{key}"
                st.text_input(
                    "Comment",
                    key=comment_key,
                    label_visibility="collapsed",
                    placeholder="comment",
                    max_chars=store.MAX_REVIEW_COMMENT_CHARS,
                )
                up, down = st.columns(2)
                up.button(
                    "good",
                    icon=THUMB_UP,
                    key=f"up|{key}",
                    on_click=save_review,
                    args=(str(db), eval_id, model_name, sid, 1, comment_key),
                )
                down.button(
                    "bad",
                    icon=THUMB_DOWN,
                    key=f"down|{key}",
                    on_click=save_review,
                    args=(str(db), eval_id, model_name, sid, -1, comment_key),
                )
