"""The workshop's before/after table: each metric by model, absolute and % change against the base model.

The same numbers are queryable later from the warehouse view `v_run_compare` (built on eval_metrics).
"""

from __future__ import annotations

import polars as pl

# what the table shows (precision/recall and per-sample means stay in eval_metrics for queries)
TABLE_METRICS = ("rouge1", "rouge2", "rougeL", "bleu_corpus", "chrf_corpus", "cosine", "label_acc")
TABLE_LABELS = {"bleu_corpus": "BLEU", "chrf_corpus": "chrF", "label_acc": "persona acc"}


def baseline_model(models: list[str]) -> str:
    return "base" if "base" in models else models[0]


def comparison_table(metrics: pl.DataFrame, metric_names: tuple[str, ...] = TABLE_METRICS) -> pl.DataFrame:
    """Long frame: model, metric, value, base_value, delta_abs, delta_pct (null when base is 0)."""
    frame = metrics.filter(pl.col("metric").is_in(list(metric_names))).select("model", "metric", "value")
    if frame.height == 0:
        return frame.with_columns(
            pl.lit(None, pl.Float64).alias(name) for name in ("base_value", "delta_abs", "delta_pct")
        )
    base = baseline_model(list(dict.fromkeys(frame["model"].to_list())))
    base_values = frame.filter(pl.col("model") == base).select("metric", pl.col("value").alias("base_value"))
    order = {name: i for i, name in enumerate(metric_names)}
    return (
        frame.join(base_values, on="metric", how="left")
        .with_columns(
            (pl.col("value") - pl.col("base_value")).alias("delta_abs"),
            pl.when(pl.col("base_value") != 0)
            .then(100.0 * (pl.col("value") - pl.col("base_value")) / pl.col("base_value").abs())
            .alias("delta_pct"),
            pl.col("metric").replace_strict(order, default=len(order)).alias("_order"),
        )
        .sort("_order", maintain_order=True)
        .drop("_order")
    )


def _cell(value: float | None, delta_abs: float | None, delta_pct: float | None, is_base: bool) -> str:
    if value is None:
        return "–"
    text = f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    if is_base or delta_abs is None:
        return text
    color = "green" if delta_abs > 0 else "red" if delta_abs < 0 else "white"
    pct = f", {delta_pct:+.1f}%" if delta_pct is not None else ""
    return f"{text} [{color}]({delta_abs:+.3f}{pct})[/{color}]"


def print_comparison(table: pl.DataFrame, title: str = "evaluation") -> None:
    """Rows = metrics, columns = models; each cell is the value and its change vs base."""
    from rich.console import Console
    from rich.table import Table

    models = list(dict.fromkeys(table["model"].to_list()))
    if not models:
        Console().print(f"{title}: no metrics")
        return
    base = baseline_model(models)
    out = Table(title=title)
    out.add_column("metric")
    for model in models:
        out.add_column(model if model != base else f"{model} (baseline)", justify="right")
    for (metric,), group in table.group_by("metric", maintain_order=True):
        by_model = {row["model"]: row for row in group.to_dicts()}
        cells = [
            _cell(
                *(by_model.get(m, {}).get(k) for k in ("value", "delta_abs", "delta_pct")), is_base=m == base
            )
            for m in models
        ]
        out.add_row(TABLE_LABELS.get(metric, metric), *cells)
    Console().print(out)


def print_samples(predictions: pl.DataFrame, limit: int = 3) -> None:
    """A few eval prompts with the reference and every model's answer, side by side."""
    from rich.console import Console
    from rich.table import Table

    models = list(dict.fromkeys(predictions["model"].to_list()))
    ids = list(dict.fromkeys(predictions["sample_id"].to_list()))[:limit]
    out = Table(title="sample predictions", show_lines=True)
    for column in ("prompt", "reference", *models):
        out.add_column(column, overflow="fold", max_width=40)
    for sid in ids:
        rows = {row["model"]: row for row in predictions.filter(pl.col("sample_id") == sid).to_dicts()}
        first = next(iter(rows.values()))
        out.add_row(
            first["prompt"] or "",
            first["reference"] or "",
            *((rows.get(m) or {}).get("prediction") or "" for m in models),
        )
    Console().print(out)
