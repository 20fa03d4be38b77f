"""`tunelab evaluate` and `tunelab score` (heavy imports happen inside the commands)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab.errors import UserError

ROUGE_CHOICES = ("auto", "kiwi", "whitespace", "char")


def _report(result: object, tables: bool = True) -> None:
    from tunelab.evaluate.compare import print_comparison, print_samples

    if tables:
        print_comparison(result.table, title=f"evaluation {result.eval_id}")  # type: ignore[attr-defined]
        print_samples(result.predictions)  # type: ignore[attr-defined]
    typer.echo(f"predictions: {result.predictions_path}", err=True)  # type: ignore[attr-defined]
    # the eval id alone on stdout's last line, so scripts can pick it up
    typer.echo(result.eval_id)  # type: ignore[attr-defined]


def evaluate_command(
    recipe_path: Path = typer.Argument(..., metavar="RECIPE", help="the recipe YAML"),
    workspace: Path | None = typer.Option(None, "--workspace", help="default: the recipe's workspace.dir"),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        help="base | sft | dpo | a run id | an adapter/model path (repeatable; default: the recipe's)",
    ),
) -> None:
    """Generate with each model on the eval set, score (ROUGE/BLEU/chrF/cosine/persona), store, compare vs base."""
    from tunelab.evaluate.runner import run_evaluate
    from tunelab.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    # run_evaluate prints the table itself when showing progress
    result = run_evaluate(recipe, recipe.workspace_at(workspace), models=model or None)
    _report(result, tables=False)


def score_command(
    file: Path = typer.Argument(
        ..., metavar="FILE.jsonl", help="predictions: prompt, reference, prediction, model"
    ),
    workspace: Path | None = typer.Option(None, "--workspace", help="default ./tunelab-workspace"),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        help="ROUGE tokenizer: auto|kiwi|whitespace|char (default: the file's, else auto)",
    ),
    eval_set: str | None = typer.Option(
        None, "--eval-set", help="name stored with the evaluation (default: file stem)"
    ),
    embedding_model: str | None = typer.Option(
        None, "--embedding-model", help="default: the file's, else e5-small"
    ),
) -> None:
    """Re-score an existing predictions JSONL without generating (any model's outputs) and store it."""
    from tunelab.evaluate.runner import one_line_warnings, score_file
    from tunelab.workspace import as_workspace

    if tokenizer is not None and tokenizer not in ROUGE_CHOICES:
        raise UserError(f"--tokenizer: must be one of {', '.join(ROUGE_CHOICES)}, got {tokenizer!r}")
    with one_line_warnings():
        result = score_file(file, as_workspace(workspace), eval_set, tokenizer, embedding_model)
    _report(result)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
    app.command("score")(score_command)
