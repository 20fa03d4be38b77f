"""`tunelab calibrate PAIRS`: precision / recall / F1 per threshold from labelled pairs, the threshold that
meets a precision target, and the recipe line to paste (tunelab/curate/calibrate.py does the work)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunelab.cliopts import FormatOption, OutputFormat, WorkspaceOption, print_json
from tunelab.errors import UserError


class CalibrateStage(StrEnum):
    minhash = "minhash"
    semantic = "semantic"


def calibrate_command(
    stage: Annotated[CalibrateStage, typer.Option("--stage", help="which stage's similarity to calibrate")],
    pairs: Annotated[
        Path | None,
        typer.Argument(help="pairs file (.csv, .tsv, .jsonl): text_a, text_b, label|score (or --marks)"),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="embedding model for --stage semantic (default: use-v3)")
    ] = None,
    target_precision: Annotated[
        float, typer.Option("--target-precision", help="precision the chosen threshold must reach")
    ] = 0.9,
    positive_score: Annotated[
        float, typer.Option("--positive-score", help="with a score column: a pair is a duplicate at >= this")
    ] = 4.0,
    ngram: Annotated[
        int | None,
        typer.Option("--ngram", help="--stage minhash: character n-gram size (default 5, or the curation's)"),
    ] = None,
    step: Annotated[float, typer.Option("--step", help="threshold step of the table")] = 0.05,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", help="write precision/recall/F1 against threshold as a PNG")
    ] = None,
    marks: Annotated[
        str | None,
        typer.Option(
            "--marks",
            metavar="CURATION_ID",
            help="use the pairs marked on the dashboard's Thresholds page for this curation (-w's warehouse)",
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Precision / recall / F1 per threshold on labelled pairs, and the threshold meeting --target-precision."""
    from tunelab.curate import calibrate as cal
    from tunelab.curate.config import MinhashSettings, SemanticSettings
    from tunelab.recipe import workspace_for

    if not 0 < target_precision <= 1:
        raise UserError(f"--target-precision: {target_precision} must be in (0, 1]")
    if not 0 < step <= 0.5:
        raise UserError(f"--step: {step} must be in (0, 0.5]")
    if ngram is not None and not 1 <= ngram <= 64:
        raise UserError(f"--ngram: {ngram} must be between 1 and 64")
    if model is not None and stage is CalibrateStage.minhash:
        raise UserError("--model applies to --stage semantic only")
    if (pairs is None) == (marks is None):
        raise UserError("calibrate: give a PAIRS file or --marks CURATION_ID (one of the two)")
    ws = workspace_for(None, workspace)
    minhash_cfg, semantic_cfg = MinhashSettings(), SemanticSettings()
    if marks is not None:
        # the pairs people marked, compared as the curation's stage compared them (its key, n-gram, model,
        # row budget); --ngram / --model override
        marked = cal.pairs_from_marks(ws.warehouse, marks, stage.value)
        data, source = marked.pairs, f"marks of {marks}"
        if isinstance(marked.settings, MinhashSettings):
            minhash_cfg = marked.settings
        else:
            semantic_cfg = marked.settings
    else:
        assert pairs is not None
        data, source = cal.read_pairs(pairs, positive_score), str(pairs)
    if stage is CalibrateStage.minhash:
        if ngram is not None:
            minhash_cfg = minhash_cfg.model_copy(update={"ngram": ngram})
        similarity = cal.jaccard_pairs(data.text_a, data.text_b, minhash_cfg)
        model_name = None
    else:
        if model:
            semantic_cfg = SemanticSettings(model=model, max_tokens=semantic_cfg.max_tokens)
        model_name = semantic_cfg.model
        similarity = cal.cosine_pairs(data.text_a, data.text_b, semantic_cfg, ws.embedding_cache)
    result = cal.calibrate(data, similarity, stage.value, target_precision, model_name, step)
    if plot_path is not None:
        cal.plot(similarity, data.positive, result, plot_path)
    if output is OutputFormat.json:
        print_json(result.as_dict() | {"source": source} | ({"plot": str(plot_path)} if plot_path else {}))
        return
    console = Console()
    what = "exact Jaccard of the dedup key" if stage is CalibrateStage.minhash else f"cosine ({model_name})"
    table = Table(title=f"{escape(source)}: {result.pairs:,} pairs, {result.positives:,} duplicates; {what}")
    for column in ("threshold", "precision", "recall", "F1", "predicted"):
        table.add_column(column, justify="right")
    for row in result.rows:
        chosen = result.chosen is not None and row.threshold == result.chosen.threshold
        style = "bold" if chosen else None
        table.add_row(
            f"{row.threshold:g}" + (" ←" if chosen else ""),
            "-" if row.precision is None else f"{row.precision:.3f}",
            f"{row.recall:.3f}",
            f"{row.f1:.3f}",
            f"{row.predicted:,}",
            style=style,
        )
    console.print(table)
    if result.chosen is None:
        console.print(f"no threshold reaches precision {target_precision:g} on these pairs")
    else:
        c = result.chosen
        console.print(
            f"threshold {c.threshold:g}: precision {c.precision:.3f}, recall {c.recall:.3f}, F1 {c.f1:.3f} "
            f"(the lowest threshold with precision >= {target_precision:g} there and above)"
        )
        console.print("recipe:\n" + escape(result.recipe_line() or ""), highlight=False)
    if plot_path is not None:
        console.print(f"plot: {escape(str(plot_path))}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
