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
    JudgeMode,
    MetricName,
    OutputFormat,
    RougeTokenizer,
    WorkspaceOption,
    print_json,
)
from tunelab.errors import UserError
from tunelab.evaluate.config import JudgeSettings
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
        str | None,
        typer.Option(
            "--eval-set", help="name stored with the evaluation (default: the file's, else its stem)"
        ),
    ] = None,
    embedding_model: Annotated[
        str | None, typer.Option("--embedding-model", help="default: the file's, else e5-small")
    ] = None,
    metrics: Annotated[
        list[MetricName] | None,
        typer.Option(
            "--metric",
            help="a metric to compute (repeatable; default: the file's, else rouge, bleu, chrf, cosine, korean_answer_rate)",
        ),
    ] = None,
    judge: Annotated[
        bool,
        typer.Option(
            "--judge", help="judge it with an LLM judge too (the recipe's evaluate.judge, or the flags below)"
        ),
    ] = False,
    recipe_path: Annotated[
        Path | None, typer.Option("--recipe", help="a recipe whose evaluate.judge block sets the judge")
    ] = None,
    judge_endpoint: Annotated[
        str | None,
        typer.Option("--judge-endpoint", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="the judge's model name on that server")
    ] = None,
    judge_mode: Annotated[
        JudgeMode | None, typer.Option("--judge-mode", help="pairwise (default) or rubric")
    ] = None,
    judge_rubric: Annotated[
        str | None,
        typer.Option("--judge-rubric", help="a shipped template name (rubric.ko ...) or a template file"),
    ] = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Re-score an existing predictions JSONL without generating (any model's outputs) and store it."""
    from tunelab.evaluate.runner import one_line_warnings, score_file

    wants_judge = judge or bool(metrics and MetricName.judge in metrics)
    settings = judge_settings(recipe_path, judge_endpoint, judge_model, judge_mode, judge_rubric, wants_judge)
    with one_line_warnings():
        result = score_file(
            file,
            as_workspace(workspace),
            eval_set,
            tokenizer.value if tokenizer is not None else None,
            embedding_model,
            show_progress=True,
            metrics=[m.value for m in metrics] if metrics else None,
            judge=settings,
        )
    _report(result, output_format)


def judge_settings(
    recipe_path: Path | None,
    endpoint: str | None,
    model: str | None,
    mode: JudgeMode | None,
    rubric: str | None,
    wanted: bool,
) -> JudgeSettings | None:
    """The judge of `tunelab score`: the recipe's evaluate.judge block, each --judge-* flag overriding it;
    None when no judge is wanted (a --judge-* flag alone asks for one)."""
    flags = {"endpoint": endpoint, "model": model, "mode": mode.value if mode else None, "rubric": rubric}
    given = {key: value for key, value in flags.items() if value is not None}
    if not wanted and not given:
        return None
    base: dict = {}
    if recipe_path is not None:
        recipe = load_recipe(recipe_path)
        if recipe.evaluate is not None and recipe.evaluate.judge is not None:
            base = recipe.evaluate.judge.model_dump(exclude_unset=True)
        elif not {"endpoint", "model"} <= set(given):
            raise UserError(
                f"{recipe_path}: evaluate.judge: missing; add the block or pass --judge-endpoint and --judge-model"
            )
    if rubric is not None and Path(rubric).expanduser().is_file():
        # a template file named on the command line is found from the current folder, not the recipe's
        given["rubric"] = str(Path(rubric).expanduser().resolve())
    merged = {**base, **given}
    for key, flag in (("endpoint", "--judge-endpoint"), ("model", "--judge-model")):
        if not merged.get(key):
            raise UserError(f"--judge: no judge {key}; pass {flag} or --recipe with an evaluate.judge block")
    try:
        return JudgeSettings(**merged)
    except ValueError as exc:  # pydantic's ValidationError: the first problem, on one line
        errors = getattr(exc, "errors", lambda: [])()
        first = errors[0] if errors else {"loc": ("judge",), "msg": str(exc)}
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserError(f"--judge-{first['loc'][0]}: {message}") from None


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
    app.command("score")(score_command)
