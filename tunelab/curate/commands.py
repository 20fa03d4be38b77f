"""`tunelab curate RECIPE` and `tunelab audit FILE` (a dry run that only prints).

The commands parse options, call tunelab.curate (pipeline.curate_recipe, audit.audit) and print: tables on
stdout with `--format table`, one JSON document with `--format json`; progress goes to stderr. The curate
pipeline, audit and report modules load polars and numpy, so they are imported inside the commands (the
one exception to top-level imports here): `tunelab --help` stays light.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from tunelab.cliopts import (
    DataKind,
    FormatOption,
    InputFormat,
    InputFormatOption,
    KindOption,
    OutputFormat,
    WorkspaceOption,
    print_json,
)
from tunelab.curate.config import CurateConfig
from tunelab.errors import UserError
from tunelab.recipe import Recipe, load_recipe, workspace_for
from tunelab.records.config import DatasetConfig

if TYPE_CHECKING:
    from tunelab.curate.audit import Audit
    from tunelab.curate.result import CurationResult


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


def _summary_table(result: CurationResult, title: str) -> Table:
    table = Table(title=title)
    for column in ("stage", "reason", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for row in result.report["reasons"]:
        table.add_row(row["stage"], escape(row["reason"]), f"{row['count']:,}")  # reasons can name labels
    c = result.report["counts"]
    table.add_section()
    table.add_row("total", "read", f"{c['read']:,}")
    table.add_row("", "kept (train / val)", f"{c['kept']:,} ({c['train']:,} / {c['val']:,})")
    table.add_row("", "dropped", f"{c['dropped']:,}")
    table.add_row("", "quarantined", f"{c['quarantined']:,}")
    if c["oversampled"]:
        table.add_row("", "oversampled copies", f"{c['oversampled']:,}")
    return table


class Executor(StrEnum):
    local = "local"
    ray = "ray"
    stream = "stream"


def _with_executor(recipe: Recipe, executor: Executor | None, address: str | None) -> None:
    """--executor / --ray-address over the recipe's curate blocks (the DPO block too, when it has its own)."""
    update: dict[str, str] = {}
    if executor is not None:
        update["executor"] = executor.value
    if address is not None:
        update["ray_address"] = address
    if not update:
        return
    recipe.curate = recipe.curate.model_copy(update=update)
    dpo = recipe.train.dpo if recipe.train is not None else None
    if dpo is not None and isinstance(dpo.curate, CurateConfig):
        dpo.curate = dpo.curate.model_copy(update=update)


def curate_command(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    workspace: WorkspaceOption = None,
    output: FormatOption = OutputFormat.table,
    executor: Annotated[
        Executor | None, typer.Option("--executor", help="where the stages run (default: curate.executor)")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="auto, HOST:PORT or ray://HOST:PORT (default: curate.ray_address)"
        ),
    ] = None,
) -> None:
    """Curate the recipe's dataset (and its DPO dataset): splits, a decision per row, a report, the warehouse.

    Table mode ends with each curation id alone on a line (the last line: the last curation), for scripts."""
    from tunelab.curate.pipeline import curate_recipe
    from tunelab.curate.report import summary

    loaded = load_recipe(recipe)
    _with_executor(loaded, executor, ray_address)
    results = curate_recipe(loaded, loaded.workspace_at(workspace))
    datasets = [loaded.dataset] + ([loaded.train.dpo.dataset] if loaded.train and loaded.train.dpo else [])
    if output is OutputFormat.json:
        print_json({"curations": [{**summary(r.report), "out_dir": str(r.out_dir)} for r in results]})
    else:
        console = Console()
        for result in results:
            console.print(_summary_table(result, f"curation {result.curation_id}"))
            console.print(f"curation id: [bold]{result.curation_id}[/bold]  →  {escape(str(result.out_dir))}")
            typer.echo(result.curation_id)
    # each dataset is held to its own curate block's ratio (the DPO data may have its own block)
    _guard(results, datasets, [loaded.curate_for(d)[0].max_quarantine_ratio for d in datasets])


def _guard(
    results: list[CurationResult], datasets: list[DatasetConfig], max_ratios: float | list[float]
) -> None:
    """Exit 3 with one line on stderr when a curation quarantined too much or kept nothing (its outputs
    are written already: they are what the user inspects)."""
    from tunelab.curate.guard import EXIT_CODE, guard_message

    ratios = max_ratios if isinstance(max_ratios, list) else [max_ratios] * len(results)
    messages = [guard_message(r, d, ratio) for r, d, ratio in zip(results, datasets, ratios, strict=False)]
    found = [m for m in messages if m]
    if found:
        typer.echo(f"error: {found[0]}", err=True)
        raise typer.Exit(EXIT_CODE)


def _clip(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _examples_table(examples: list[dict]) -> Table:
    """Rows per reason with the first examples of each: sample id, evidence and text, all as plain text
    (dataset text and evidence never read as rich markup)."""
    from rich.text import Text

    table = Table(title="reasons with examples (text as read; personal information shown as <PII:kind>)")
    table.add_column("stage · reason", overflow="fold")
    table.add_column("rows", justify="right")
    table.add_column("examples: sample · evidence · text", overflow="fold")
    for group in examples:
        why = f"{group['stage']} · {group['reason'] or '(none)'}" + ("" if not group["kept"] else " (kept)")
        shown = Text()
        for i, example in enumerate(group["examples"]):
            if i:
                shown.append("\n")
            shown.append(example["sample_id"], style="bold")
            if example["evidence"]:
                shown.append(f" · {example['evidence']}", style="dim")
            shown.append(f"\n  {example['text']}")
        table.add_row(Text(why), f"{group['count']:,}", shown)
    return table


def _print_audit(found: Audit, file: Path) -> None:
    from tunelab.curate.report import quarantine_lines, report_markdown

    result = found.result
    console = Console()
    console.print(Markdown(report_markdown(result.report)))
    if result.quarantine is not None and result.quarantine.height:
        table = Table(title="quarantined lines (first 10)")
        table.add_column("line", justify="right")
        table.add_column("error")
        table.add_column("raw")
        for row in quarantine_lines(result.quarantine, 10):
            table.add_row(str(row["line"]), escape(row["error"]), escape(row["raw"]))
        console.print(table)
    if found.examples:
        console.print(_examples_table(found.examples))
    if found.sweep is not None:
        sweep = Table(
            title=f"threshold sweep on {found.sweep.rows:,} rows after {', '.join(found.sweep.after)}"
        )
        sweep.add_column("method")
        sweep.add_column("threshold", justify="right")
        sweep.add_column("would drop", justify="right")
        sweep.add_column("pairs just above (score: kept ⇄ dropped)")
        for row in found.sweep.results:
            pairs = "\n".join(
                f"{e['score']:.2f}: {escape(_clip(e['kept']))} ⇄ {escape(_clip(e['dropped']))}"
                for e in row.examples
            )
            sweep.add_row(row.method, f"{row.threshold:g}", f"{row.would_drop:,}", pairs)
        console.print(sweep)
    console.print(_summary_table(result, f"audit of {escape(str(file))}"))


def audit_command(
    file: Annotated[Path, typer.Argument(help="data file (jsonl, json, csv, tsv, parquet)")],
    kind: KindOption = DataKind.sft,
    input_format: InputFormatOption = InputFormat.auto,
    field: Annotated[list[str] | None, typer.Option("--field", help="canonical=source, repeatable")] = None,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="take curate settings (and the eval set) from this recipe")
    ] = None,
    minhash_thresholds: Annotated[
        str | None, typer.Option("--minhash-thresholds", help="e.g. 0.6,0.7,0.8")
    ] = None,
    semantic_thresholds: Annotated[
        str | None, typer.Option("--semantic-thresholds", help="e.g. 0.85,0.9")
    ] = None,
    workspace: WorkspaceOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Dry run: what curation would do to FILE, printed; nothing is written but the embedding cache."""
    from tunelab.curate.audit import audit, dataset_name_for, default_config

    mh_values = _thresholds(minhash_thresholds, "--minhash-thresholds", 0.0)
    sem_values = _thresholds(semantic_thresholds, "--semantic-thresholds", -1.0)
    loaded_recipe = load_recipe(recipe) if recipe else None
    curate = loaded_recipe.curate if loaded_recipe else default_config(semantic=bool(sem_values))
    eval_set = loaded_recipe.evaluate.eval_set if loaded_recipe and loaded_recipe.evaluate else None
    dataset = DatasetConfig(
        path=file,
        name=dataset_name_for(file),
        kind=kind.value,
        format=input_format.value,
        fields=_field_map(field),
    )
    found = audit(dataset, curate, workspace_for(loaded_recipe, workspace), eval_set, mh_values, sem_values)
    if output is OutputFormat.json:
        print_json(found.as_dict())
    else:
        _print_audit(found, file)
    _guard([found.result], [dataset], curate.max_quarantine_ratio)


def register(app: typer.Typer) -> None:
    app.command("curate")(curate_command)
    app.command("audit")(audit_command)
