"""Every SQL the dashboard runs. All aggregation happens here, in DuckDB, with LIMITs: pages receive
small frames (a histogram, a page of rows), never a whole table, so they stay fast on a million samples.

Each function takes the warehouse path and returns a Polars frame through `store.query` (a fresh
read-only connection with external access disabled).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.warehouse import store

# The text of a sample whatever its kind (sft, dpo, raft, text): concat_ws skips the NULL fields.
CONTENT_SQL = (
    "concat_ws(chr(10), {a}system, {a}prompt, {a}response, {a}chosen, {a}rejected, {a}instruction, "
    "{a}question, {a}answer, {a}cot, {a}text)"
)
TEXT_FIELDS = (
    "system",
    "prompt",
    "response",
    "chosen",
    "rejected",
    "instruction",
    "question",
    "answer",
    "cot",
    "text",
)
CONTENT_LENGTH_SQL = " + ".join(f"coalesce(length({f}), 0)" for f in TEXT_FIELDS)
# Stages that annotate rather than filter; they are not steps of the funnel.
NON_FUNNEL_STAGES = ("final",)
# The model every other model is compared with.
BASE_MODEL = "base"
DEFAULT_LIMIT = 50


def content(alias: str = "") -> str:
    return CONTENT_SQL.format(a=f"{alias}." if alias else "")


def run(db: Path, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
    return store.query(db, sql, params)


# ---------------------------------------------------------------- audit


def curations(db: Path, limit: int = 500) -> pl.DataFrame:
    return run(
        db,
        """SELECT curation_id, dataset, kind, data_version, created_at, "read", kept, dropped, quarantined, recipe
           FROM curations ORDER BY created_at DESC NULLS LAST, curation_id LIMIT $limit""",
        {"limit": limit},
    )


def recipe_stages(recipe_json: str | None) -> list[str]:
    """The stage order the curation ran with, from the recipe it stored (empty when unknown)."""
    try:
        recipe = json.loads(recipe_json or "{}")
    except json.JSONDecodeError:
        return []
    curate = recipe.get("curate") if isinstance(recipe, dict) else None
    stages = curate.get("stages") if isinstance(curate, dict) else None
    return [str(s) for s in stages] if isinstance(stages, list) else []


def stage_drops(db: Path, curation_id: str) -> pl.DataFrame:
    """Rows each stage saw a decision for and dropped, in the order the stages first wrote decisions."""
    return run(
        db,
        """SELECT stage, count(*) FILTER (WHERE NOT kept) AS dropped, count(*) AS decided, min(rowid) AS first_row
           FROM decisions WHERE curation_id = $cid GROUP BY stage ORDER BY first_row""",
        {"cid": curation_id},
    )


def funnel(curation: dict[str, Any], drops: pl.DataFrame) -> pl.DataFrame:
    """Rows remaining after each step: read → parsed (minus quarantine) → each stage's survivors.

    A sample dropped once is never seen by a later stage, so subtracting each stage's drops in order
    gives the survivors; the last step must equal the curation's `kept`.
    """
    order = recipe_stages(curation.get("recipe"))
    seen = [s for s in drops["stage"].to_list() if s not in NON_FUNNEL_STAGES]
    # every stage the recipe ran, even one that dropped nothing, then any stage it did not name
    stages = order + [s for s in seen if s not in order]
    dropped_by = dict(zip(drops["stage"].to_list(), drops["dropped"].to_list(), strict=True))
    read = int(curation.get("read") or 0)
    quarantined = int(curation.get("quarantined") or 0)
    rows = [("read", read, 0), ("parsed", read - quarantined, quarantined)]
    remaining = read - quarantined
    for stage in stages:
        remaining -= int(dropped_by.get(stage, 0))
        rows.append((stage, remaining, int(dropped_by.get(stage, 0))))
    return pl.DataFrame(rows, schema={"step": pl.Utf8, "rows": pl.Int64, "dropped": pl.Int64}, orient="row")


def drop_reasons(db: Path, curation_id: str) -> pl.DataFrame:
    return run(
        db,
        "SELECT stage, reason, n, pct FROM v_drop_reasons WHERE curation_id = $cid ORDER BY n DESC, stage, reason",
        {"cid": curation_id},
    )


def rows_for_reason(
    db: Path, curation_id: str, stage: str, reason: str | None, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> pl.DataFrame:
    """One page of the samples a stage dropped for `reason`, with their text; `total` repeats the count.

    The page is cut from `decisions` first (in the order they were written, which is source order) and
    only its rows are joined to `samples`: sorting every dropped row's text would cost a full join.
    """
    return run(
        db,
        f"""WITH page AS (
                SELECT sample_id, score, ref_sample_id, evidence, rowid AS written, count(*) OVER () AS total
                FROM decisions
                WHERE curation_id = $cid AND stage = $stage AND NOT kept AND reason IS NOT DISTINCT FROM $reason
                ORDER BY rowid LIMIT $limit OFFSET $offset
            )
            SELECT page.sample_id, s.source_line, s.label, page.score, page.ref_sample_id, page.evidence,
                   {content("s")} AS text, page.total
            FROM page LEFT JOIN samples s ON s.curation_id = $cid AND s.sample_id = page.sample_id
            ORDER BY page.written""",
        {"cid": curation_id, "stage": stage, "reason": reason, "limit": limit, "offset": offset},
    )


def length_histogram(db: Path, curation_id: str, bins: int = 30) -> pl.DataFrame:
    """Character-length histogram of every parsed sample (before) and of the kept ones (after).

    Bins are equal-width up to the 99th percentile; the last bin is open-ended so one huge outlier
    does not squash every other bar into the first one. Lengths are summed per field rather than
    measured on the concatenated text: the same numbers less the separators, at a third of the cost.
    """
    return run(
        db,
        f"""WITH dropped AS (
                SELECT DISTINCT sample_id FROM decisions WHERE curation_id = $cid AND NOT kept
            ), lens AS (
                SELECT {CONTENT_LENGTH_SQL} AS chars, s.sample_id NOT IN (SELECT sample_id FROM dropped) AS kept
                FROM samples s WHERE s.curation_id = $cid
            ), width AS (
                SELECT greatest(ceil(coalesce(quantile_cont(chars, 0.99), 1) / $bins), 1)::BIGINT AS w FROM lens
            ), binned AS (
                SELECT least(chars // w, $bins - 1) AS bin, w, kept FROM lens, width
            )
            SELECT (bin * any_value(w))::BIGINT AS bin_start,
                   CASE WHEN bin = $bins - 1 THEN NULL ELSE ((bin + 1) * any_value(w))::BIGINT END AS bin_end,
                   count(*) AS before, count(*) FILTER (WHERE kept) AS after
            FROM binned GROUP BY bin ORDER BY bin""",
        {"cid": curation_id, "bins": bins},
    )


def duplicate_reasons(db: Path, curation_id: str) -> pl.DataFrame:
    """Reasons whose drops point at a representative sample (exact_dup, near_dup_*, ...)."""
    return run(
        db,
        """SELECT reason, count(*) AS n FROM decisions
           WHERE curation_id = $cid AND NOT kept AND ref_sample_id IS NOT NULL
           GROUP BY reason ORDER BY n DESC, reason""",
        {"cid": curation_id},
    )


def duplicate_clusters(
    db: Path, curation_id: str, reasons: list[str], limit: int = DEFAULT_LIMIT, offset: int = 0
) -> pl.DataFrame:
    """Clusters by representative, largest first: members, score range, the representative's text."""
    return run(
        db,
        f"""WITH c AS (
                SELECT ref_sample_id AS representative, count(*) AS members, min(score) AS min_score,
                       max(score) AS max_score, string_agg(DISTINCT reason, ', ') AS reasons,
                       count(*) OVER () AS total
                FROM decisions
                WHERE curation_id = $cid AND NOT kept AND ref_sample_id IS NOT NULL
                  AND list_contains($reasons, reason)
                GROUP BY ref_sample_id
                ORDER BY members DESC, representative LIMIT $limit OFFSET $offset
            )
            SELECT c.representative, c.members, c.min_score, c.max_score, c.reasons,
                   {content("s")} AS representative_text, c.total
            FROM c LEFT JOIN samples s ON s.curation_id = $cid AND s.sample_id = c.representative
            ORDER BY members DESC, representative""",
        {"cid": curation_id, "reasons": reasons, "limit": limit, "offset": offset},
    )


def cluster_members(
    db: Path, curation_id: str, representative: str, limit: int = DEFAULT_LIMIT
) -> pl.DataFrame:
    return run(
        db,
        f"""WITH m AS (
                SELECT sample_id, stage, reason, score, evidence FROM decisions
                WHERE curation_id = $cid AND NOT kept AND ref_sample_id = $rep
                ORDER BY score DESC NULLS LAST, sample_id LIMIT $limit
            )
            SELECT m.*, {content("s")} AS text
            FROM m LEFT JOIN samples s ON s.curation_id = $cid AND s.sample_id = m.sample_id
            ORDER BY m.score DESC NULLS LAST, m.sample_id""",
        {"cid": curation_id, "rep": representative, "limit": limit},
    )


def label_balance(db: Path, curation_id: str, limit: int = 100) -> pl.DataFrame:
    return run(
        db,
        """WITH dropped AS (SELECT DISTINCT sample_id FROM decisions WHERE curation_id = $cid AND NOT kept)
           SELECT coalesce(label, '(none)') AS label, count(*) AS before,
                  count(*) FILTER (WHERE sample_id NOT IN (SELECT sample_id FROM dropped)) AS after
           FROM samples WHERE curation_id = $cid GROUP BY ALL ORDER BY before DESC, label LIMIT $limit""",
        {"cid": curation_id, "limit": limit},
    )


def quarantine_rows(db: Path, curation_id: str, limit: int = DEFAULT_LIMIT, offset: int = 0) -> pl.DataFrame:
    return run(
        db,
        """SELECT source_file, source_line, error, raw, count(*) OVER () AS total
           FROM quarantine WHERE curation_id = $cid
           ORDER BY source_file, source_line LIMIT $limit OFFSET $offset""",
        {"cid": curation_id, "limit": limit, "offset": offset},
    )


# ---------------------------------------------------------------- signals (the Audit page's Signals tab)

# a signal is named by its stage, its name and the field it measured (NULL: the whole row)
_SIGNAL_WHERE = (
    "curation_id = $cid AND stage = $stage AND signal = $signal AND field IS NOT DISTINCT FROM $field "
    "AND value IS NOT NULL"
)


def signal_overview(db: Path, curation_id: str) -> pl.DataFrame:
    """Every signal a curation's stages measured: stage, signal, field, rows measured, min / mean / max."""
    return run(
        db,
        """SELECT stage, signal, field, count(value) AS rows, min(value) AS min, avg(value) AS mean,
                  max(value) AS max
           FROM signals WHERE curation_id = $cid GROUP BY ALL ORDER BY stage, signal, field NULLS FIRST""",
        {"cid": curation_id},
    )


def signal_histogram(
    db: Path, curation_id: str, stage: str, signal: str, field: str | None, bins: int = 30
) -> pl.DataFrame:
    """Equal-width histogram of one signal: rows per bin, and how many of them the curation dropped (at any
    stage) or kept. Shares (max <= 1) are binned between their min and max; an unbounded signal (a length
    ratio, a count) up to its 99th percentile, the last bin holding everything above (its end is the max),
    so one outlier does not squash every other bar into the first. One value everywhere: a single bin."""
    return run(
        db,
        f"""WITH v AS (
                SELECT sample_id, value FROM signals WHERE {_SIGNAL_WHERE}
            ), r AS (
                SELECT min(value) AS lo,
                       CASE WHEN max(value) <= 1 THEN max(value)
                            ELSE greatest(quantile_cont(value, 0.99), min(value)) END AS hi,
                       max(value) AS top
                FROM v
            ), dropped AS (
                SELECT DISTINCT sample_id FROM decisions WHERE curation_id = $cid AND NOT kept
            ), b AS (
                SELECT CASE WHEN r.hi > r.lo
                            THEN least(floor((v.value - r.lo) / (r.hi - r.lo) * $bins), $bins - 1)
                            ELSE 0 END::BIGINT AS bin,
                       r.lo, r.hi, r.top, v.sample_id IN (SELECT sample_id FROM dropped) AS is_dropped
                FROM v, r
            )
            SELECT bin,
                   CAST(any_value(lo) + bin * (any_value(hi) - any_value(lo)) / $bins AS DOUBLE) AS bin_start,
                   CAST(CASE WHEN bin = $bins - 1 OR any_value(hi) <= any_value(lo) THEN any_value(top)
                             ELSE any_value(lo) + (bin + 1) * (any_value(hi) - any_value(lo)) / $bins
                             END AS DOUBLE) AS bin_end,
                   count(*) FILTER (WHERE NOT is_dropped) AS kept,
                   count(*) FILTER (WHERE is_dropped) AS dropped
            FROM b GROUP BY bin ORDER BY bin""",
        {"cid": curation_id, "stage": stage, "signal": signal, "field": field, "bins": bins},
    )


def signal_rows(
    db: Path,
    curation_id: str,
    stage: str,
    signal: str,
    field: str | None,
    low: float,
    high: float,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> pl.DataFrame:
    """One page of the rows whose signal lies in [low, high], highest value first: the value, what the
    curation did with the row (the dropping stage and reason, or kept) and its text; `total` repeats the count."""
    return run(
        db,
        f"""WITH page AS (
                SELECT sample_id, value, count(*) OVER () AS total FROM signals
                WHERE {_SIGNAL_WHERE} AND value BETWEEN $low AND $high
                ORDER BY value DESC, sample_id LIMIT $limit OFFSET $offset
            ), fate AS (
                SELECT sample_id, arg_min(stage || ' · ' || coalesce(reason, ''), rowid) AS outcome,
                       arg_min(evidence, rowid) AS evidence
                FROM decisions
                WHERE curation_id = $cid AND NOT kept AND list_contains((SELECT list(sample_id) FROM page), sample_id)
                GROUP BY sample_id
            )
            SELECT page.sample_id, page.value, coalesce(fate.outcome, 'kept') AS outcome, fate.evidence,
                   {store.SAMPLE_TEXT_SQL} AS text, page.total
            FROM page LEFT JOIN fate USING (sample_id)
                 LEFT JOIN samples s ON s.curation_id = $cid AND s.sample_id = page.sample_id
            ORDER BY page.value DESC, page.sample_id""",
        {"cid": curation_id, "stage": stage, "signal": signal, "field": field, "low": low, "high": high,
         "limit": limit, "offset": offset},
    )  # fmt: skip


# ---------------------------------------------------------------- diff (two curations; tunelab/curate/diff.py)


def diff_outcomes(db: Path, curation_id: str) -> pl.DataFrame:
    """One row per sample read with what the curation did with it (store.curation_outcomes, shared with
    `tunelab diff`)."""
    return store.curation_outcomes(db, curation_id)


def diff_reason_counts(db: Path, curation_id: str) -> pl.DataFrame:
    return store.curation_reason_counts(db, curation_id)


def diff_texts(db: Path, curation_id: str, sample_ids: list[str]) -> pl.DataFrame:
    """(sample_id, text) of some samples, every text field (conversation turns included) joined."""
    return store.sample_texts(db, curation_id, sample_ids)


# ---------------------------------------------------------------- runs


def runs(db: Path, limit: int = 500) -> pl.DataFrame:
    return run(
        db,
        """SELECT r.run_id, r.kind, r.status, r.curation_id, c.dataset, c.data_version, r.parent_run_id,
                  r.base_model, r.base_revision, r.started_at, r.finished_at,
                  CAST(epoch(r.finished_at) - epoch(r.started_at) AS DOUBLE) AS duration_s,
                  r.adapter_path, r.error, r.metrics, r.note
           FROM runs r LEFT JOIN curations c USING (curation_id)
           ORDER BY r.started_at DESC NULLS LAST, r.run_id LIMIT $limit""",
        {"limit": limit},
    )


CURVE_SERIES = (
    "loss", "eval_loss", "rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies",
    "learning_rate", "grad_norm",
)  # fmt: skip


def train_curves(db: Path, run_ids: list[str], max_points: int = 1000) -> pl.DataFrame:
    """Long-format curves (run_id, step, series, value), thinned in DuckDB to about max_points per run."""
    columns = ", ".join(CURVE_SERIES)
    return run(
        db,
        f"""WITH t AS (
                SELECT run_id, step, {columns},
                       row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
                       count(*) OVER (PARTITION BY run_id) AS n
                FROM train_log WHERE list_contains($runs, run_id)
            ), thin AS (
                SELECT * FROM t WHERE (i - 1) % greatest(n // $points, 1) = 0 OR i = n
                   OR eval_loss IS NOT NULL
            )
            SELECT run_id, step, series, CAST(value AS DOUBLE) AS value
            FROM (UNPIVOT (SELECT run_id, step, {columns} FROM thin) ON {columns} INTO NAME series VALUE value)
            ORDER BY run_id, series, step""",
        {"runs": run_ids, "points": max_points},
    )


def evals(db: Path, limit: int = 200) -> pl.DataFrame:
    return run(
        db,
        """SELECT e.eval_id, e.eval_set, e.curation_id, e.created_at,
                  (SELECT string_agg(DISTINCT m.model, ', ') FROM eval_metrics m WHERE m.eval_id = e.eval_id) AS models
           FROM evals e ORDER BY e.created_at DESC NULLS LAST, e.eval_id LIMIT $limit""",
        {"limit": limit},
    )


def comparison(db: Path, eval_id: str) -> pl.DataFrame:
    """Metric by model with its 95 % interval (null for evaluations stored before intervals existed)."""
    return run(
        db,
        """SELECT metric, model, CAST(value AS DOUBLE) AS value, CAST(ci_low AS DOUBLE) AS ci_low,
                  CAST(ci_high AS DOUBLE) AS ci_high, n, CAST(base_value AS DOUBLE) AS base_value,
                  CAST(delta_abs AS DOUBLE) AS delta_abs, CAST(delta_pct AS DOUBLE) AS delta_pct
           FROM v_run_compare WHERE eval_id = $eid
           ORDER BY metric, model <> 'base', model""",
        {"eid": eval_id},
    )


def deltas(db: Path, eval_id: str) -> pl.DataFrame:
    """Every compared pair (model vs its baseline) per metric: the delta, its interval and p-value."""
    return run(
        db,
        """SELECT metric, model, baseline, CAST(delta AS DOUBLE) AS delta, CAST(ci_low AS DOUBLE) AS ci_low,
                  CAST(ci_high AS DOUBLE) AS ci_high, CAST(p_value AS DOUBLE) AS p_value, n, significant,
                  CAST(delta_pct AS DOUBLE) AS delta_pct
           FROM eval_deltas WHERE eval_id = $eid ORDER BY metric, model, baseline""",
        {"eid": eval_id},
    )


# ---------------------------------------------------------------- predictions


def eval_models(db: Path, eval_id: str) -> list[str]:
    frame = run(db, "SELECT DISTINCT model FROM predictions WHERE eval_id = $eid", {"eid": eval_id})
    return order_models(frame["model"].to_list())


def order_models(models: list[str]) -> list[str]:
    """base first, then sft, dpo, then the rest alphabetically: the order the columns are read in."""
    rank = {"base": 0, "sft": 1, "dpo": 2}
    return sorted(models, key=lambda m: (rank.get(m, 3), m))


def eval_metrics_names(db: Path, eval_id: str) -> list[str]:
    frame = run(
        db,
        """SELECT metric FROM (SELECT DISTINCT metric FROM eval_metrics WHERE eval_id = $eid
                              UNION SELECT DISTINCT metric FROM scores WHERE eval_id = $eid) ORDER BY metric""",
        {"eid": eval_id},
    )
    return frame["metric"].to_list()


def eval_labels(db: Path, eval_id: str, limit: int = 200) -> list[str]:
    frame = run(
        db,
        """SELECT DISTINCT label FROM predictions WHERE eval_id = $eid AND label IS NOT NULL
           ORDER BY label LIMIT $limit""",
        {"eid": eval_id, "limit": limit},
    )
    return frame["label"].to_list()


PREDICTION_SORTS = {
    "eval set order": "first_row, sample_id",
    "score ↑": "value ASC NULLS LAST, sample_id",
    "score ↓": "value DESC NULLS LAST, sample_id",
    "delta vs base ↑ (worst first)": "delta ASC NULLS LAST, sample_id",
    "delta vs base ↓ (best first)": "delta DESC NULLS LAST, sample_id",
}


def prediction_page(
    db: Path,
    eval_id: str,
    metric: str,
    model: str,
    sort: str = "eval set order",
    regressions_only: bool = False,
    label: str | None = None,
    search: str | None = None,
    limit: int = 10,
    offset: int = 0,
    baseline: str = BASE_MODEL,
) -> pl.DataFrame:
    """One page of prompts: the chosen model's score on `metric`, the baseline's score (base unless
    another model is named) and the delta, plus `total`.

    A regression is a prompt where `model` scored strictly below the baseline on `metric`.
    """
    order = PREDICTION_SORTS[sort]  # a whitelist: user input never reaches the SQL text
    return run(
        db,
        f"""WITH ids AS (
                SELECT sample_id, any_value(label) AS label, any_value(prompt) AS prompt, min(rowid) AS first_row
                FROM predictions WHERE eval_id = $eid GROUP BY sample_id
            ), m AS (
                SELECT sample_id,
                       max(value) FILTER (WHERE model = $model) AS value,
                       max(value) FILTER (WHERE model = $base) AS base_value
                FROM scores WHERE eval_id = $eid AND metric = $metric GROUP BY sample_id
            )
            SELECT ids.sample_id, ids.label, ids.prompt, CAST(m.value AS DOUBLE) AS value,
                   CAST(m.base_value AS DOUBLE) AS base_value, CAST(m.value - m.base_value AS DOUBLE) AS delta,
                   count(*) OVER () AS total
            FROM ids LEFT JOIN m USING (sample_id)
            WHERE (NOT $regressions OR m.value < m.base_value)
              AND ($label IS NULL OR ids.label = $label)
              AND ($search IS NULL OR ids.prompt ILIKE '%' || $search || '%' OR ids.sample_id = $search)
            ORDER BY {order} LIMIT $limit OFFSET $offset""",
        {
            "eid": eval_id, "metric": metric, "model": model, "base": baseline,
            "regressions": regressions_only, "label": label, "search": search or None,
            "limit": limit, "offset": offset,
        },
    )  # fmt: skip


def predictions_for(db: Path, eval_id: str, sample_ids: list[str]) -> pl.DataFrame:
    return run(
        db,
        """SELECT sample_id, model, run_id, prompt, reference, prediction, label, latency_s
           FROM predictions WHERE eval_id = $eid AND list_contains($ids, sample_id)""",
        {"eid": eval_id, "ids": sample_ids},
    )


def scores_for(db: Path, eval_id: str, sample_ids: list[str]) -> pl.DataFrame:
    return run(
        db,
        """SELECT sample_id, model, metric, CAST(value AS DOUBLE) AS value
           FROM scores WHERE eval_id = $eid AND list_contains($ids, sample_id) ORDER BY metric""",
        {"eid": eval_id, "ids": sample_ids},
    )


def latest_reviews(db: Path, eval_id: str, sample_ids: list[str]) -> pl.DataFrame:
    return run(
        db,
        """SELECT sample_id, model, rating, comment, created_at FROM reviews
           WHERE eval_id = $eid AND list_contains($ids, sample_id)
           QUALIFY row_number() OVER (PARTITION BY model, sample_id ORDER BY created_at DESC) = 1""",
        {"eid": eval_id, "ids": sample_ids},
    )


def paired_scores(db: Path, eval_id: str, baseline: str) -> pl.DataFrame:
    """Every other model's per-sample score next to `baseline`'s, per metric, on the prompts both were
    scored on (the input of a paired test), in one query."""
    return run(
        db,
        """SELECT t.metric, t.model, t.sample_id, CAST(t.value AS DOUBLE) AS value,
                  CAST(b.value AS DOUBLE) AS base_value
           FROM scores t JOIN scores b ON b.eval_id = t.eval_id AND b.sample_id = t.sample_id AND b.metric = t.metric
           WHERE t.eval_id = $eid AND b.model = $baseline AND t.model <> $baseline
             AND t.value IS NOT NULL AND b.value IS NOT NULL
           ORDER BY t.metric, t.model, t.sample_id""",
        {"eid": eval_id, "baseline": baseline},
    )


def per_sample_metrics(db: Path, eval_id: str) -> list[str]:
    """Metrics with per-sample scores (a paired test can be run on them; corpus BLEU/chrF have none)."""
    frame = run(
        db, "SELECT DISTINCT metric FROM scores WHERE eval_id = $eid ORDER BY metric", {"eid": eval_id}
    )
    return frame["metric"].to_list()


# ---------------------------------------------------------------- blind pair reviews


def pair_votes(db: Path, eval_id: str) -> pl.DataFrame:
    """Every rater's latest verdict per prompt and model pair (reviewers and the LLM judge), v_pair_votes."""
    return run(
        db,
        """SELECT sample_id, model_a, model_b, source, rater, winner, left_model, created_at
           FROM v_pair_votes WHERE eval_id = $eid ORDER BY model_a, model_b, sample_id, rater""",
        {"eid": eval_id},
    )


def pair_winrates(db: Path, eval_id: str) -> pl.DataFrame:
    """Win rate of model_a over model_b per source with its Wilson interval and n (v_pair_winrates)."""
    return run(
        db,
        """SELECT source, model_a, model_b, n, prompts, raters, wins_a, wins_b, ties, win_rate_a, ci_low, ci_high
           FROM v_pair_winrates WHERE eval_id = $eid ORDER BY source DESC, model_a, model_b""",
        {"eid": eval_id},
    )


def blind_queue(
    db: Path, eval_id: str, model_x: str, model_y: str, reviewer: str, limit: int = 20
) -> pl.DataFrame:
    """Prompts both models answered that `reviewer` has not rated for this pair yet, in eval set order;
    `remaining` and `both` (prompts both answered) repeat on every row."""
    model_a, model_b = sorted((model_x, model_y))
    return run(
        db,
        """WITH both_answered AS (
                SELECT sample_id, min(rowid) AS first_row FROM predictions
                WHERE eval_id = $eid AND model IN ($a, $b) GROUP BY sample_id HAVING count(DISTINCT model) = 2
            ), rated AS (
                SELECT DISTINCT sample_id FROM pair_reviews
                WHERE eval_id = $eid AND model_a = $a AND model_b = $b AND coalesce(reviewer, 'unknown') = $reviewer
            )
            SELECT sample_id, count(*) OVER () AS remaining, (SELECT count(*) FROM both_answered) AS both
            FROM both_answered WHERE sample_id NOT IN (SELECT sample_id FROM rated)
            ORDER BY first_row, sample_id LIMIT $limit""",
        {"eid": eval_id, "a": model_a, "b": model_b, "reviewer": reviewer, "limit": limit},
    )


def pair_review_count(db: Path, eval_id: str, model_x: str, model_y: str, reviewer: str) -> int:
    model_a, model_b = sorted((model_x, model_y))
    frame = run(
        db,
        """SELECT count(DISTINCT sample_id) AS n FROM pair_reviews
           WHERE eval_id = $eid AND model_a = $a AND model_b = $b AND coalesce(reviewer, 'unknown') = $reviewer""",
        {"eid": eval_id, "a": model_a, "b": model_b, "reviewer": reviewer},
    )
    return int(frame["n"][0]) if frame.height else 0


# ---------------------------------------------------------------- thresholds (near-duplicate candidates, marks)


def threshold_drops(db: Path, curation_id: str, stage: str) -> pl.DataFrame:
    """Every pair the stage acted on: the dropped row, the kept row it matched, and the stage's similarity."""
    return run(
        db,
        """SELECT sample_id, ref_sample_id, score AS similarity FROM decisions
           WHERE curation_id = $cid AND stage = $stage AND NOT kept AND ref_sample_id IS NOT NULL
             AND score IS NOT NULL
           ORDER BY rowid""",
        {"cid": curation_id, "stage": stage},
    )


def stage_input_samples(
    db: Path, curation_id: str, earlier_stages: list[str], limit: int, seed: int = 0
) -> pl.DataFrame:
    """The samples that reached a stage (none of `earlier_stages` dropped them; no oversampled copies),
    all of them up to `limit`, else a seeded sample of `limit`; `reached` repeats how many there were."""
    return run(
        db,
        """WITH gone AS (
                SELECT DISTINCT sample_id FROM decisions
                WHERE curation_id = $cid AND NOT kept AND list_contains($earlier, stage)
            ), reached AS (
                SELECT * EXCLUDE (curation_id), count(*) OVER () AS reached FROM samples
                WHERE curation_id = $cid AND sample_id NOT IN (SELECT sample_id FROM gone)
                  AND NOT contains(sample_id, '#dup')
            )
            SELECT * FROM reached ORDER BY hash(sample_id, $seed) LIMIT $limit""",
        {"cid": curation_id, "earlier": earlier_stages, "limit": limit, "seed": seed},
    ).sort("source_row", "sample_id")


def pair_texts(db: Path, curation_id: str, sample_ids: list[str]) -> pl.DataFrame:
    """(sample_id, source_line, text) of the given samples: every text field joined by newlines."""
    return run(
        db,
        f"""SELECT sample_id, source_line, {content("s")} AS text FROM samples s
            WHERE s.curation_id = $cid AND list_contains($ids, s.sample_id)""",
        {"cid": curation_id, "ids": sample_ids},
    )


def threshold_marks(db: Path, curation_id: str, stage: str) -> pl.DataFrame:
    return store.threshold_marks(db, curation_id, stage)


def threshold_precision(db: Path, curation_id: str, stage: str) -> pl.DataFrame:
    return store.threshold_precision(db, curation_id, stage)


# ---------------------------------------------------------------- SQL page examples

# "the newest evaluation / curation" subqueries of docs/warehouse.md (one level of nested parentheses),
# and sample-id literals such as 'demo-persona:246' (a letter in the prefix, so '04:00' is not one)
_LATEST_EVAL = re.compile(r"\(\s*SELECT\s+eval_id\s+FROM\s+evals\b(?:[^()]|\([^()]*\))*?LIMIT\s+1\s*\)", re.I)
_LATEST_CURATION = re.compile(
    r"\(\s*SELECT\s+curation_id\s+FROM\s+curations\b(?:[^()]|\([^()]*\))*?LIMIT\s+1\s*\)", re.I
)
_SAMPLE_LITERAL = re.compile(r"'[\w.-]*[A-Za-z][\w.-]*:\d+'")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pin_example(sql: str, eval_id: str | None, curation_id: str | None, sample_id: str | None) -> str:
    """An example query pinned to one evaluation, curation and sample by id, instead of "the newest one"
    or the demo's names, so it shows the rows of what the page has chosen (after a `tunelab score` too)."""
    if eval_id:
        sql = _LATEST_EVAL.sub(f"(SELECT {_literal(eval_id)} AS eval_id)", sql)
    if curation_id:
        sql = _LATEST_CURATION.sub(f"(SELECT {_literal(curation_id)} AS curation_id)", sql)
    if sample_id:
        sql = _SAMPLE_LITERAL.sub(_literal(sample_id), sql)
    return sql


def example_sample(db: Path, curation_id: str) -> str | None:
    """A sample worth asking about: the most similar duplicate the curation dropped, else its first sample."""
    frame = run(
        db,
        """SELECT sample_id FROM (
               SELECT sample_id, 0 AS rank, score FROM decisions
               WHERE curation_id = $cid AND NOT kept AND ref_sample_id IS NOT NULL
               UNION ALL
               SELECT sample_id, 1 AS rank, NULL AS score FROM (
                   SELECT sample_id FROM samples WHERE curation_id = $cid ORDER BY source_row NULLS LAST LIMIT 1)
           ) ORDER BY rank, score DESC NULLS LAST, sample_id LIMIT 1""",
        {"cid": curation_id},
    )
    return frame["sample_id"][0] if frame.height else None
