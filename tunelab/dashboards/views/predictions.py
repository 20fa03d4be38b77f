"""Predictions: reference vs every model per prompt, per-sample scores, regressions against any baseline,
👍/👎 reviews, and a blind A/B mode (two answers, sides shuffled, model names hidden until rated)."""

from pathlib import Path

import polars as pl
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import agreement, common, queries
from tunelab.dashboards.common import q
from tunelab.errors import UserError
from tunelab.evaluate.metrics import degenerate_reason
from tunelab.warehouse import store

# 👍/👎 as Streamlit's bundled Material icons: emoji need a colour-emoji font many servers lack.
THUMB_UP, THUMB_DOWN = ":material/thumb_up:", ":material/thumb_down:"
SIDE_BY_SIDE, BLIND = "Side by side", "Blind A/B review"
EMPTY_ANSWER = "(empty answer)"
DEGENERATE_LABELS = {
    "empty": "empty answer",
    "special_tokens_only": "special tokens only",
    "repeated_token": "one token repeated",
}

db = common.page_start("Predictions", "Every model's answer to each prompt, scored; rate them to keep notes")

evals = q(queries.evals, db)
if evals.height == 0:
    st.info("No evaluation yet: run `tunelab evaluate RECIPE` (or `tunelab demo`).")
    st.stop()

by_id = {row["eval_id"]: row for row in evals.to_dicts()}
head = st.columns([3, 3], vertical_alignment="bottom")
eval_id = head[0].selectbox(
    "Evaluation",
    list(by_id),
    key="eval",
    bind="query-params",
)
view = head[1].radio(
    "View",
    [SIDE_BY_SIDE, BLIND],
    key="view",
    horizontal=True,
    bind="query-params",
    label_visibility="collapsed",
)
models = q(queries.eval_models, db, eval_id)
metrics = q(queries.eval_metrics_names, db, eval_id)
if not models:
    st.info("This evaluation has no predictions.")
    st.stop()
st.sidebar.text_input(
    "Reviewer", value=store.default_reviewer(), key="reviewer", help="recorded with every rating you give"
)


def reviewer_name() -> str:
    return (st.session_state.get("reviewer") or "").strip() or store.default_reviewer()


def answer_html(text: str | None, limit: int = 3000) -> str:
    """An answer as inert text; an empty one is a visible marker, a degenerate one is flagged."""
    reason = degenerate_reason(text)
    flag = (
        f'<div class="tl-flag">degenerate: {safetext.text(DEGENERATE_LABELS.get(reason, reason))}'
        " (scored 0 on every metric)</div>"
        if reason
        else ""
    )
    body = f"<i>{EMPTY_ANSWER}</i>" if not (text or "").strip() else safetext.text(text, limit)
    return f'{flag}<div class="tl-text">{body}</div>'


def save_pair(
    warehouse: str, eval_id: str, sample_id: str, left: str, right: str, choice: str, comment_key: str
) -> None:
    """A blind choice (A = left, B = right, or tie) through the warehouse API; names revealed after."""
    winner = {"A": left, "B": right}.get(choice, store.TIE)
    comment = (st.session_state.get(comment_key) or "").strip() or None
    try:
        store.add_pair_review(
            Path(warehouse), eval_id, sample_id, left, right, winner, comment, reviewer=reviewer_name()
        )
    except UserError as exc:
        st.session_state["review_error"] = str(exc)
        return
    chosen = "a tie" if winner == store.TIE else f"{choice} ({safetext.text(winner)})"
    st.session_state["pair_saved"] = (
        f"Saved for {safetext.text(sample_id)}: A was {safetext.text(left)}, B was {safetext.text(right)}; "
        f"you chose {chosen}"
    )


def skip_pair(skip_key: str, sample_id: str) -> None:
    st.session_state.setdefault(skip_key, []).append(sample_id)


def blind_review() -> None:
    """One prompt at a time: the two answers on seeded sides, no names, no scores; A / tie / B + comment."""
    if len(models) < 2:
        st.info("Blind review needs an evaluation with two or more models.")
        return
    pick = st.columns(2)
    first = pick[0].selectbox("Compare", models, index=len(models) - 1, key="pair_1", bind="query-params")
    others = [m for m in models if m != first]
    second = pick[1].selectbox("with", others, index=len(others) - 1, key="pair_2", bind="query-params")
    reviewer = reviewer_name()
    if "pair_saved" in st.session_state:
        st.success(st.session_state.pop("pair_saved"), icon=":material/visibility:")
    if "review_error" in st.session_state:
        st.error(safetext.text(st.session_state.pop("review_error")))
    skip_key = f"blind_skipped|{eval_id}|{'|'.join(sorted((first, second)))}|{reviewer}"
    skipped = st.session_state.get(skip_key, [])
    queue = q(queries.blind_queue, db, eval_id, first, second, reviewer, limit=len(skipped) + 1)
    done = q(queries.pair_review_count, db, eval_id, first, second, reviewer)
    total = int(queue["both"][0]) if queue.height else done
    st.progress(
        done / total if total else 1.0,
        text=f"{safetext.text(reviewer)} rated {done:,} of {total:,} prompts both models answered",
    )
    waiting = [s for s in queue["sample_id"].to_list() if s not in skipped]
    if not waiting and skipped:  # every unrated prompt was skipped: start over with them
        st.session_state[skip_key] = []
        waiting = queue["sample_id"].to_list()
    if not waiting:
        st.info("You have rated every prompt of this pair. Results are below and on the Runs page.")
        return
    sid = waiting[0]
    left, right = agreement.blind_sides(reviewer, eval_id, sid, first, second)
    rows = {r["model"]: r for r in q(queries.predictions_for, db, eval_id, [sid]).to_dicts()}
    prompt_row = rows[left]
    with st.container(border=True):
        st.markdown(
            f'<div class="tl-text"><b>Prompt</b> · {safetext.text(sid)}<br>'
            f"{safetext.text(prompt_row['prompt'], 3000)}</div>",
            unsafe_allow_html=True,
        )
        with st.expander("Reference answer"):
            st.markdown(
                f'<div class="tl-text">{safetext.text(prompt_row["reference"], 3000)}</div>',
                unsafe_allow_html=True,
            )
        sides = st.columns(2)
        for column, name, model_name in zip(sides, ("A", "B"), (left, right), strict=True):
            column.markdown(
                f'<div class="tl-box"><div class="tl-score">Answer {name}</div>'
                f"{answer_html(rows[model_name]['prediction'])}</div>",
                unsafe_allow_html=True,
            )
        key = f"{eval_id}|{sid}|{left}|{right}"
        comment_key = f"blind_comment|{key}"
        st.text_input(
            "Comment (optional)", key=comment_key, placeholder="why", max_chars=store.MAX_REVIEW_COMMENT_CHARS
        )
        buttons = st.columns(4)
        for column, choice, label in zip(
            buttons[:3], ("A", "tie", "B"), ("A is better", "Tie", "B is better"), strict=True
        ):
            column.button(
                label,
                key=f"blind_{choice}",
                on_click=save_pair,
                args=(str(db), eval_id, sid, left, right, choice, comment_key),
                width="stretch",
            )
        buttons[3].button("Skip", key="blind_skip", on_click=skip_pair, args=(skip_key, sid), width="stretch")


def review_results() -> None:
    """Win rates per pair (reviewers, judge) with intervals, and agreement; this reveals model names."""
    common.pair_results(db, eval_id)


if view == BLIND:
    blind_review()
    with st.expander("Results so far: win rates and agreement (shows model names)"):
        review_results()
    st.stop()
# ROUGE-L first when present: it is the headline metric of the before/after table
metric_index = next(
    (i for i, m in enumerate(metrics) if m.lower().replace("_", "").replace("-", "") == "rougel"),
    next((i for i, m in enumerate(metrics) if m.lower().startswith("rouge")), 0),
)
top = st.columns([2, 2, 2])
metric = top[0].selectbox(
    "Metric", metrics or ["(none)"], index=metric_index, key="metric", bind="query-params"
)
baseline = top[1].selectbox(
    "Baseline",
    models,
    index=models.index(queries.BASE_MODEL) if queries.BASE_MODEL in models else 0,
    key="baseline",
    bind="query-params",
    help="deltas, sorting by delta and regressions are against this model (e.g. dpo against sft)",
)
tuned = [m for m in models if m != baseline] or models
model = top[2].selectbox(
    "Model to sort / compare", tuned, index=len(tuned) - 1, key="model", bind="query-params"
)

filters = st.columns([2, 2, 2, 3, 1], vertical_alignment="bottom")
sort = filters[0].selectbox(
    "Sort by",
    list(queries.PREDICTION_SORTS),
    key="sort",
    format_func=lambda s: s.replace("vs base", f"vs {baseline}"),
)
labels = q(queries.eval_labels, db, eval_id)
label = filters[1].selectbox("Label", ["(all)", *labels], key="label")
regressions = filters[2].toggle(
    "Regressions only",
    key="regressions",
    bind="query-params",
    help=f"{safetext.text(model)} scored below {safetext.text(baseline)} on {safetext.text(metric)}",
)
search = filters[3].text_input("Search prompt or sample id", key="search")
page_size = int(filters[4].number_input("Per page", 1, 50, 5, key="page_size"))


def save_review(
    warehouse: str, eval_id: str, model: str, sample_id: str, rating: int, comment_key: str
) -> None:
    """A reviewer's 👍/👎 on one answer, through the warehouse API."""
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
    baseline=baseline,
)  # fmt: skip
total = int(probe["total"][0]) if probe.height else 0
word = ("regression" if regressions else "prompt") + ("" if total == 1 else "s")
st.caption(
    f"{total:,} {word} · {safetext.text(model)} vs {safetext.text(baseline)} on {safetext.text(metric)}"
)
if total == 0:
    st.info("Nothing matches these filters.")
    st.stop()
offset = common.pager("prediction_page", total, page_size)
page = q(
    queries.prediction_page, db, eval_id, metric, model, sort=sort, regressions_only=regressions,
    label=None if label == "(all)" else label, search=search or None, limit=page_size, offset=offset,
    baseline=baseline,
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
    (r["sample_id"], r["metric"]): r["value"] for r in scores.filter(pl.col("model") == baseline).to_dicts()
}


def score_text(sample_id: str, model_name: str, metric_name: str, value: float | None) -> str:
    text = f"{metric_name} {common.fmt_number(value, 3)}"
    base = base_scores.get((sample_id, metric_name))
    if model_name != baseline and base is not None and value is not None:
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
                    f"{answer_html(pred['prediction'])}"
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
