"""`tunelab evaluate` and `tunelab score`.

stdout holds results only: `--format table` prints the comparison table and a few samples, then the eval id
alone on the last line (`EVAL=$(tunelab evaluate r.yaml | tail -n1)`); `--format json` prints one JSON
document (EvalResult.as_record: eval_id, eval_set, curation_id, models, predictions_path, table rows).
Progress, notes and warnings go to stderr. The runner is imported inside the commands: it pulls polars,
duckdb and the model stack, which `tunelab --help` must not load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tunelab.cliopts import (
    FormatOption,
    MetricName,
    OutputFormat,
    RougeTokenizer,
    WorkspaceOption,
    print_json,
)
from tunelab.recipe import load_recipe
from tunelab.workspace import as_workspace

if TYPE_CHECKING:
    from tunelab.evaluate.runner import EvalResult


def _report(result: EvalResult, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.json:
        print_json(result.as_record())
        return
    result.print_tables()
    typer.echo(f"predictions: {result.predictions_path}", err=True)
    # the eval id alone on stdout's last line, so scripts can pick it up
    typer.echo(result.eval_id)


def evaluate_command(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE", help="the recipe YAML")],
    workspace: WorkspaceOption = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="base | sft | dpo | a run id | an adapter/model path (repeatable; default: the recipe's)",
        ),
    ] = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Generate with each model on the eval set, score (ROUGE/BLEU/chrF/cosine/persona), store, compare vs base."""
    from tunelab.evaluate.runner import run_evaluate

    recipe = load_recipe(recipe_path)
    result = run_evaluate(recipe, recipe.workspace_at(workspace), models=model or None, print_tables=False)
    _report(result, output_format)


def score_command(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE.jsonl", help="predictions: prompt, reference, prediction, model"),
    ],
    workspace: WorkspaceOption = None,
    tokenizer: Annotated[
        RougeTokenizer | None,
        typer.Option("--tokenizer", help="ROUGE tokenizer (default: the file's, else auto)"),
    ] = None,
    eval_set: Annotated[
        str | None, typer.Option("--eval-set", help="name stored with the evaluation (default: file stem)")
    ] = None,
    embedding_model: Annotated[
        str | None, typer.Option("--embedding-model", help="default: the file's, else e5-small")
    ] = None,
    metrics: Annotated[
        list[MetricName] | None,
        typer.Option(
            "--metric",
            help="a metric to compute (repeatable; default: the file's, else rouge, bleu, chrf, cosine)",
        ),
    ] = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Re-score an existing predictions JSONL without generating (any model's outputs) and store it."""
    from tunelab.evaluate.runner import one_line_warnings, score_file

    with one_line_warnings():
        result = score_file(
            file,
            as_workspace(workspace),
            eval_set,
            tokenizer.value if tokenizer is not None else None,
            embedding_model,
            show_progress=True,
            metrics=[m.value for m in metrics] if metrics else None,
        )
    _report(result, output_format)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
    app.command("score")(score_command)
