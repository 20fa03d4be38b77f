"""The before/after table people take away: every metric by model with a 95 % interval, and every delta
(each model vs the base, and each stage vs its parent: DPO vs SFT) with its interval and a paired p-value.

A relative % is shown only against a base of at least 10 % of the metric's range. The same numbers are
stored in the warehouse (`eval_metrics` intervals, `eval_deltas`) and queryable as `v_run_compare`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from tunelab.evaluate import stats

# what the table shows (precision/recall and per-sample means stay in eval_metrics for queries)
TABLE_METRICS = (
    "exact_match", "token_f1", "rouge1", "rouge2", "rougeL", "bleu_corpus", "chrf_corpus", "cosine", "label_acc",
    "korean_answer_rate",
)  # fmt: skip
TABLE_LABELS = {
    "bleu_corpus": "BLEU (corpus)",
    "chrf_corpus": "chrF (corpus)",
    "bleu": "BLEU (mean of sentences)",
    "chrf": "chrF (mean of sentences)",
    "label_acc": "persona acc",
    "judge": "LLM judge (rubric 1–10)",
    "korean_answer_rate": "Korean answers",
    "exact_match": "exact match (answer)",
    "token_f1": "token F1 (answer)",
}


# the range of each metric: a % change is shown only against a base of at least 10 % of it
SCALE = {"bleu": 100.0, "chrf": 100.0, "bleu_corpus": 100.0, "chrf_corpus": 100.0}
# corpus metrics and the sacrebleu metric whose statistics they sum
CORPUS_METRICS = {"bleu_corpus": "bleu", "chrf_corpus": "chrf"}
# each training stage is also compared with the stage it started from
PARENT = {"sft": "base", "dpo": "sft"}
ESTIMATE_COLUMNS = {
    "model": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "n": pl.Int64, "method": pl.Utf8, "seed": pl.Int64,
}  # fmt: skip
DELTA_COLUMNS = {
    "model": pl.Utf8, "baseline": pl.Utf8, "metric": pl.Utf8, "delta": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "p_value": pl.Float64, "n": pl.Int64, "delta_pct": pl.Float64,
    "significant": pl.Boolean, "method": pl.Utf8, "seed": pl.Int64,
}  # fmt: skip


def baseline_model(models: list[str]) -> str:
    return "base" if "base" in models else models[0]


def comparisons(models: list[str]) -> list[tuple[str, str]]:
    """(model, baseline) pairs: every model against the base, and each stage against its parent."""
    base = baseline_model(models)
    pairs = [(m, base) for m in models if m != base]
    pairs += [(m, PARENT[m]) for m in models if m in PARENT and PARENT[m] in models and PARENT[m] != base]
    return pairs


@dataclass
class Comparison:
    """Every model's value with its interval, and every delta with its interval and p-value."""

    estimates: pl.DataFrame  # ESTIMATE_COLUMNS
    deltas: pl.DataFrame  # DELTA_COLUMNS

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.estimates["model"].to_list()))


def _corpus_metric(name: str, tokenize: str) -> Any:
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(tokenize=tokenize) if name == "bleu" else CHRF()


def compare_models(
    predictions: pl.DataFrame,
    scores: pl.DataFrame,
    metric_names: tuple[str, ...] = TABLE_METRICS,
    bleu_tokenize: str = "13a",
    n_resamples: int = stats.N_RESAMPLES,
    seed: int = stats.SEED,
) -> Comparison:
    """Intervals and paired tests for the table's metrics.

    `scores` holds per-sample values (model, sample_id, metric, value); corpus BLEU/chrF are recomputed
    from `predictions` (model, sample_id, reference, prediction) with sacrebleu's own statistics. Deltas
    are computed on the prompts both models answered.
    """
    models = list(dict.fromkeys(predictions["model"].to_list()))
    estimates: list[dict[str, Any]] = []
    deltas: list[dict[str, Any]] = []
    per_sample = {
        (model, metric): dict(zip(group["sample_id"].to_list(), group["value"].to_list(), strict=True))
        for (model, metric), group in scores.group_by("model", "metric", maintain_order=True)
    }
    texts = {
        model: dict(zip(group["sample_id"].to_list(), zip(group["reference"].fill_null("").to_list(),
                                                          group["prediction"].fill_null("").to_list(), strict=True), strict=True))
        for (model,), group in predictions.group_by("model", maintain_order=True)
    }  # fmt: skip
    pairs = comparisons(models)
    for metric in metric_names:
        if metric in CORPUS_METRICS:
            kind = CORPUS_METRICS[metric]
            if not any((m, kind) in per_sample for m in models):
                continue  # the metric was not asked for
            metric_obj = _corpus_metric(kind, bleu_tokenize)
            stats_of: dict[str, list] = {}
            for model in models:
                ids = list(texts[model])
                refs, hyps = [texts[model][i][0] for i in ids], [texts[model][i][1] for i in ids]
                stats_of[model] = metric_obj._extract_corpus_statistics(hyps, [refs])
                est = stats.corpus_interval(metric_obj, stats_of[model], n_resamples, seed)
                estimates.append(_estimate_row(model, metric, est, seed))
            for model, baseline in pairs:
                shared = [i for i in texts[baseline] if i in texts[model]]
                if not shared:
                    _no_shared_prompts(model, baseline)
                    continue
                index = {sid: k for k, sid in enumerate(texts[model])}
                base_index = {sid: k for k, sid in enumerate(texts[baseline])}
                est = stats.corpus_difference(
                    metric_obj,
                    [stats_of[model][index[i]] for i in shared],
                    [stats_of[baseline][base_index[i]] for i in shared],
                    n_resamples,
                    seed,
                )
                base_value = next(
                    r["value"] for r in estimates if r["model"] == baseline and r["metric"] == metric
                )
                deltas.append(_delta_row(model, baseline, metric, est, base_value, seed))
            continue
        present = [m for m in models if (m, metric) in per_sample]
        if not present:
            continue
        for model in present:
            est = stats.mean_interval(list(per_sample[(model, metric)].values()), n_resamples, seed)
            estimates.append(_estimate_row(model, metric, est, seed))
        for model, baseline in pairs:
            if (model, metric) not in per_sample or (baseline, metric) not in per_sample:
                continue
            mine, theirs = per_sample[(model, metric)], per_sample[(baseline, metric)]
            shared = [i for i in theirs if i in mine]
            if not shared:
                _no_shared_prompts(model, baseline)
                continue
            est = stats.paired_difference(
                [mine[i] for i in shared], [theirs[i] for i in shared], n_resamples, seed
            )
            base_value = float(np.mean([theirs[i] for i in shared])) if shared else float("nan")
            deltas.append(_delta_row(model, baseline, metric, est, base_value, seed))
    return Comparison(
        pl.DataFrame(estimates, schema=ESTIMATE_COLUMNS), pl.DataFrame(deltas, schema=DELTA_COLUMNS)
    )


def _no_shared_prompts(model: str, baseline: str) -> None:
    # a delta over 0 prompts is NaN: printed as "+nan", stored as NaN and written as invalid JSON
    warnings.warn(
        f"{model} and {baseline} share no sample_id, so there is no delta between them"
        " (give both models' rows the same sample_id per prompt)",
        stacklevel=3,
    )


def _estimate_row(model: str, metric: str, est: stats.Estimate, seed: int) -> dict[str, Any]:
    return {"model": model, "metric": metric, "value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high,
            "n": est.n, "method": est.method, "seed": seed}  # fmt: skip


def _delta_row(
    model: str, baseline: str, metric: str, est: stats.Estimate, base_value: float, seed: int
) -> dict[str, Any]:
    meaningful = stats.relative_change_is_meaningful(base_value, SCALE.get(metric, 1.0))
    return {
        "model": model, "baseline": baseline, "metric": metric, "delta": est.value, "ci_low": est.ci_low,
        "ci_high": est.ci_high, "p_value": est.p_value, "n": est.n,
        "delta_pct": 100.0 * est.value / abs(base_value) if meaningful else None,
        "significant": est.significant, "method": est.method, "seed": seed,
    }  # fmt: skip


def _number(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def _own_n(row: dict[str, Any], n: int) -> str:
    # the title's n is the largest; a model that answered fewer prompts, or a delta over the prompts two
    # models share, says its own n, so a mean over 2 prompts doesn't read as one over 60
    return f" n={row['n']}" if row["n"] != n else ""


def _delta_cell(row: dict[str, Any], n: int | None = None) -> str:
    color = "green" if row["delta"] > 0 else "red" if row["delta"] < 0 else "white"
    mark = " *" if row["significant"] else ""
    pct = f", {row['delta_pct']:+.0f}%" if row["delta_pct"] is not None else ""
    p = "–" if row["p_value"] is None else f"{row['p_value']:.3f}"
    return (
        f"[{color}]{row['delta']:+.3f}{pct}[/{color}]{mark}\n"
        f"[{_number(row['ci_low'])}, {_number(row['ci_high'])}] p={p}"
        + (_own_n(row, n) if n is not None else "")
    )


def print_comparison(
    comparison: Comparison, title: str = "evaluation", degenerate: dict[str, str] | None = None
) -> None:
    """Rows = metrics; a column per model (value and 95 % interval) and per comparison (the delta, its
    interval and p; * = distinguishable from noise at p < 0.05; % only against a base that isn't near 0)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    models = comparison.models
    console = Console()
    if not models:
        console.print(Text(f"{title}: no metrics"))
        return
    n = int(comparison.estimates["n"].max() or 0)
    # the title names the eval set (a file stem or --eval-set): text, not markup
    out = Table(title=escape(f"{title} · n = {n} prompts · 95 % intervals · * p < 0.05"), show_lines=True)
    out.add_column("metric")
    for model in models:
        out.add_column(escape(model), justify="right")  # a model may be a path: text, not markup
    pairs = list(dict.fromkeys(zip(comparison.deltas["model"], comparison.deltas["baseline"], strict=True)))
    for model, baseline in pairs:
        out.add_column(escape(f"{model} − {baseline}"), justify="right")
    for (metric,), group in comparison.estimates.group_by("metric", maintain_order=True):
        by_model = {row["model"]: row for row in group.to_dicts()}
        cells = []
        for model in models:
            row = by_model.get(model)
            cells.append(
                "–"
                if row is None
                else f"{_number(row['value'])}\n[{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
                + _own_n(row, n)
            )
        deltas = {
            (r["model"], r["baseline"]): r
            for r in comparison.deltas.filter(pl.col("metric") == metric).to_dicts()
        }
        cells += [_delta_cell(deltas[pair], n) if pair in deltas else "–" for pair in pairs]
        out.add_row(TABLE_LABELS.get(metric, metric), *cells)
    if degenerate:
        out.add_row(
            "empty/degenerate answers", *(degenerate.get(m, "–") for m in models), *("" for _ in pairs)
        )
    console.print(out)


def print_samples(predictions: pl.DataFrame, limit: int = 3) -> None:
    """A few eval prompts with the reference and every model's answer, side by side."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    models = list(dict.fromkeys(predictions["model"].to_list()))
    ids = list(dict.fromkeys(predictions["sample_id"].to_list()))[:limit]
    out = Table(title="sample predictions", show_lines=True)
    for column in ("prompt", "reference", *models):
        out.add_column(Text(column), overflow="fold", max_width=40)  # a model name is text, not markup
    for sid in ids:
        rows = {row["model"]: row for row in predictions.filter(pl.col("sample_id") == sid).to_dicts()}
        first = next(iter(rows.values()))
        out.add_row(
            # predictions and prompts are data: shown as text, never as rich markup
            Text(first["prompt"] or ""),
            Text(first["reference"] or ""),
            *(Text((rows.get(m) or {}).get("prediction") or "") for m in models),
        )
    Console().print(out)
