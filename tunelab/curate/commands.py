"""`tunelab curate RECIPE` and `tunelab audit FILE` (a dry run that only prints)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from tunelab.errors import UserError


def _thresholds(text: str | None, option: str, low: float) -> list[float]:
    if not text:
        return []
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"{option}: {part!r} is not a number (e.g. 0.6,0.7,0.8)") from None
        if not low <= value <= 1:
            raise UserError(f"{option}: {value} must be between {low:g} and 1")
        values.append(value)
    return values


def _field_map(items: list[str] | None) -> dict[str, str]:
    fields = {}
    for item in items or []:
        canonical, sep, source = item.partition("=")
        if not sep or not canonical or not source:
            raise UserError(f"--field {item!r}: expected canonical=source, e.g. --field prompt=Q")
        fields[canonical.strip()] = source.strip()
    return fields


def _summary_table(result: Any, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("stage", "reason", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for row in result.report["reasons"]:
        table.add_row(row["stage"], row["reason"], f"{row['count']:,}")
    c = result.report["counts"]
    table.add_section()
    table.add_row("total", "read", f"{c['read']:,}")
    table.add_row("", "kept (train / val)", f"{c['kept']:,} ({c['train']:,} / {c['val']:,})")
    table.add_row("", "dropped", f"{c['dropped']:,}")
    table.add_row("", "quarantined", f"{c['quarantined']:,}")
    if c["oversampled"]:
        table.add_row("", "oversampled copies", f"{c['oversampled']:,}")
    return table


def curate_command(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    workspace: Annotated[
        Path | None, typer.Option("--workspace", help="workspace dir (default: recipe's)")
    ] = None,
) -> None:
    """Curate the recipe's dataset (and its DPO dataset): splits, a decision per row, a report, the warehouse."""
    from rich.console import Console

    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe

    loaded = load_recipe(recipe)
    console = Console()
    for result in curate_recipe(loaded, loaded.workspace_at(workspace)):
        console.print(_summary_table(result, f"curation {result.curation_id}"))
        console.print(f"curation id: [bold]{result.curation_id}[/bold]  →  {result.out_dir}")
        typer.echo(result.curation_id)


def audit_command(
    file: Annotated[Path, typer.Argument(help="data file (jsonl, json, csv, tsv, parquet)")],
    kind: Annotated[str, typer.Option("--kind", help="sft | dpo | raft | text")] = "sft",
    file_format: Annotated[
        str, typer.Option("--format", help="auto | jsonl | json | csv | tsv | parquet")
    ] = "auto",
    field: Annotated[list[str] | None, typer.Option("--field", help="canonical=source, repeatable")] = None,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="take curate settings from this recipe")
    ] = None,
    minhash_thresholds: Annotated[
        str | None, typer.Option("--minhash-thresholds", help="e.g. 0.6,0.7,0.8")
    ] = None,
    semantic_thresholds: Annotated[
        str | None, typer.Option("--semantic-thresholds", help="e.g. 0.85,0.9")
    ] = None,
    workspace: Annotated[Path | None, typer.Option("--workspace", help="embedding cache location")] = None,
) -> None:
    """Dry run: what curation would do to FILE, printed; nothing is written but the embedding cache."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from tunelab.curate import minhash, semantic
    from tunelab.curate.common import StageContext, keep_order
    from tunelab.curate.config import CurateConfig
    from tunelab.curate.pipeline import curate_frame, eval_content, run_stages
    from tunelab.curate.report import report_markdown
    from tunelab.recipe import load_recipe, workspace_for
    from tunelab.records.config import DatasetConfig
    from tunelab.records.loader import load_dataset_records

    if kind not in ("sft", "dpo", "raft", "text"):
        raise UserError(f"--kind: {kind!r} must be one of sft, dpo, raft, text")
    if file_format not in ("auto", "jsonl", "json", "csv", "tsv", "parquet"):
        raise UserError(f"--format: {file_format!r} must be one of auto, jsonl, json, csv, tsv, parquet")
    mh_values = _thresholds(minhash_thresholds, "--minhash-thresholds", 0.0)
    sem_values = _thresholds(semantic_thresholds, "--semantic-thresholds", -1.0)
    loaded_recipe = load_recipe(recipe) if recipe else None
    curate = loaded_recipe.curate if loaded_recipe else CurateConfig()
    if loaded_recipe is None:
        stages = ["schema", "normalize", "length", "exact", "minhash"] + (["semantic"] if sem_values else [])
        curate = curate.model_copy(update={"stages": stages})
    eval_rows = None
    if loaded_recipe is not None and "decontaminate" in curate.stages:
        eval_set = loaded_recipe.evaluate.eval_set if loaded_recipe.evaluate else None
        eval_rows = eval_content(curate, eval_set, kind)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", file.stem) or "audit"
    dataset = DatasetConfig(path=file, name=name, kind=kind, format=file_format, fields=_field_map(field))
    loaded = load_dataset_records(dataset)
    ws = workspace_for(loaded_recipe, workspace)
    ctx = StageContext(cache_dir=ws.embedding_cache)
    result = curate_frame(
        loaded.frame, loaded.quarantine, loaded.read, dataset, curate,
        eval_rows=eval_rows, show_progress=True, ctx=ctx,
    )  # fmt: skip
    console = Console()
    console.print(Markdown(report_markdown(result.report)))
    if loaded.quarantine.height:
        table = Table(title="quarantined lines (first 10)")
        table.add_column("line", justify="right")
        table.add_column("error")
        table.add_column("raw")
        for line, error, raw in loaded.quarantine.select("source_line", "error", "raw").head(10).iter_rows():
            table.add_row(str(line), error, (raw or "")[:80])
        console.print(table)
    if not (mh_values or sem_values):
        console.print(_summary_table(result, f"audit of {file}"))
        return
    # sweeps: rows that survive the stages before dedup, signatures / embeddings computed once
    before = [s for s in ("schema", "normalize", "length", "exact") if s in curate.stages]
    base_cfg = curate.model_copy(update={"stages": before})
    sweep_ctx = StageContext(kind=kind, dataset_name=name, cache_dir=ctx.cache_dir, show_progress=True)
    survivors, _, _ = run_stages(loaded.frame, base_cfg, sweep_ctx)
    texts = survivors["content"].fill_null("").to_list()
    sweep = Table(title=f"threshold sweep on {len(texts):,} rows after {', '.join(before)}")
    sweep.add_column("method")
    sweep.add_column("threshold", justify="right")
    sweep.add_column("would drop", justify="right")
    if mh_values:
        sig = minhash.signatures(texts, curate.minhash.ngram, curate.minhash.num_perm, curate.minhash.seed)
        rank = keep_order(survivors, curate.minhash.keep, survivors["content"]).to_numpy()
        for t in mh_values:
            settings = curate.minhash.model_copy(update={"threshold": t})
            ref, *_ = minhash.cluster(texts, sig, settings, rank)
            sweep.add_row("minhash", f"{t:g}", f"{int((ref >= 0).sum()):,}")
    if sem_values:
        vectors = semantic.embed(texts, curate.semantic, sweep_ctx)
        order = (
            keep_order(survivors, curate.semantic.keep, survivors["content"])
            .to_numpy()
            .argsort(kind="stable")
        )
        for t in sem_values:
            ref, _ = semantic.greedy_near_dups(vectors, order, t, curate.semantic.block_size)
            sweep.add_row("semantic", f"{t:g}", f"{int((ref >= 0).sum()):,}")
    console.print(sweep)
    console.print(_summary_table(result, f"audit of {file}"))


def register(app: typer.Typer) -> None:
    app.command("curate")(curate_command)
    app.command("audit")(audit_command)
