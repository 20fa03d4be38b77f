"""`tunelab train sft|dpo`: thin CLI over run_sft / run_dpo.

stdout holds only the run id (`RUN=$(tunelab train sft recipe.yaml)`); progress, the adapter folder and the
final losses go to stderr. The trainers are imported inside the commands: they pull polars, duckdb and
transformers, which `tunelab --help` must not load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cliopts import WorkspaceOption
from tunelab.errors import UserError
from tunelab.recipe import load_recipe

train_app = typer.Typer(
    name="train",
    help="Train a LoRA/QLoRA adapter: SFT on the curated data, then DPO on top.",
    no_args_is_help=True,
)

RecipeArgument = Annotated[Path, typer.Argument(metavar="RECIPE", help="the recipe YAML")]
ResumeOption = Annotated[
    str | None, typer.Option("--resume", metavar="RUN_ID", help="continue an interrupted run")
]
MergeOption = Annotated[
    bool, typer.Option("--merge", help="also write the merged full model next to the adapter")
]
NoteOption = Annotated[
    str | None,
    typer.Option(
        "--note", help='what this run tries, in your words ("lr 1e-4, persona v2"); `tunelab runs` shows it'
    ),
]


def _print_result(result: object) -> None:
    from tunelab.train import distributed

    if not distributed.is_main():  # `accelerate launch`: the run id once, from rank 0
        return
    metrics = getattr(result, "metrics", {}) or {}
    parts = [
        f"{key} {metrics[key]:.4f}"
        for key in ("train_loss", "eval_loss")
        if isinstance(metrics.get(key), float)
    ]
    typer.echo(f"adapter: {result.adapter_dir}" + (f"  ({', '.join(parts)})" if parts else ""), err=True)  # type: ignore[attr-defined]
    merged = getattr(result, "merged_dir", None)
    if merged:
        typer.echo(f"merged model: {merged}", err=True)
    # the run id alone on stdout, so `RUN=$(tunelab train sft recipe.yaml)` works
    typer.echo(result.run_id)  # type: ignore[attr-defined]


@train_app.command("sft")
def sft_command(
    recipe_path: RecipeArgument,
    workspace: WorkspaceOption = None,
    curation: Annotated[
        str | None, typer.Option("--curation", help="curation id (default: the latest)")
    ] = None,
    resume: ResumeOption = None,
    merge: MergeOption = False,
    note: NoteOption = None,
) -> None:
    """Supervised fine-tuning of a LoRA adapter on the recipe's curated dataset; prints the run id."""
    from tunelab.train.sft import run_sft

    recipe = load_recipe(recipe_path)
    result = run_sft(
        recipe, recipe.workspace_at(workspace), curation_id=curation, resume=resume, merge=merge, note=note
    )
    _print_result(result)


@train_app.command("dpo")
def dpo_command(
    recipe_path: RecipeArgument,
    from_run: Annotated[
        str | None,
        typer.Option(
            "--from-run",
            metavar="RUN_ID",
            help="the finished SFT run to start from (not needed with --resume)",
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    curation: Annotated[
        str | None, typer.Option("--curation", help="curation id of the DPO data (default: the latest)")
    ] = None,
    resume: ResumeOption = None,
    merge: MergeOption = False,
    note: NoteOption = None,
) -> None:
    """DPO on top of an SFT adapter (the SFT policy is the reference); prints the run id."""
    from tunelab.train.dpo import run_dpo

    if from_run is None and resume is None:
        raise UserError("train dpo: --from-run RUN_ID is required (the finished SFT run to start from)")
    recipe = load_recipe(recipe_path)
    result = run_dpo(
        recipe,
        recipe.workspace_at(workspace),
        from_run=from_run,
        curation_id=curation,
        resume=resume,
        merge=merge,
        note=note,
    )
    _print_result(result)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
