"""`tunelab demo`: the whole loop on the bundled persona data — curate → SFT → DPO → evaluate → warehouse."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tunelab.curate.pipeline import curate_recipe
from tunelab.evaluate.runner import run_evaluate
from tunelab.recipe import Recipe, load_recipe
from tunelab.train.dpo import run_dpo
from tunelab.train.sft import run_sft
from tunelab.workspace import Workspace, as_workspace

# the bundled recipe of each demo model: same data and loop, sized for the model (see recipe-smollm2.yaml)
DEMO_RECIPES = {"tunelab-tiny": "recipe.yaml", "smollm2-135m": "recipe-smollm2.yaml"}


def demo_recipe_path(model: str = "tunelab-tiny") -> Path:
    return Path(str(resources.files("tunelab.demo") / DEMO_RECIPES[model]))


@dataclass
class DemoSummary:
    workspace: Workspace
    curations: list = field(default_factory=list)
    sft_run: object | None = None
    dpo_run: object | None = None
    evaluation: object | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    workspace: Workspace | Path | str | None = None,
    recipe: Recipe | None = None,
    console: Console | None = None,
) -> DemoSummary:
    """The whole loop into `workspace` (default ./tunelab-workspace), with the bundled recipe by default."""
    console = console or Console()
    ws = as_workspace(workspace)
    recipe = recipe or load_recipe(demo_recipe_path())
    recipe.workspace.dir = ws.root
    ws.root.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary(workspace=ws)

    started = time.perf_counter()
    console.rule("[bold]1. curate")
    summary.curations = curate_recipe(recipe, ws)
    summary.seconds["curate"] = time.perf_counter() - started
    sft_curation = summary.curations[0]

    console.rule(f"[bold]2. train SFT (LoRA on {recipe.train.base_model}, CPU)")
    started = time.perf_counter()
    summary.sft_run = run_sft(recipe, ws, curation_id=sft_curation.curation_id)
    summary.seconds["sft"] = time.perf_counter() - started
    console.rule("[bold]3. train DPO on top of the SFT adapter")
    started = time.perf_counter()
    dpo_curation = summary.curations[1].curation_id if len(summary.curations) > 1 else None
    summary.dpo_run = run_dpo(recipe, ws, from_run=summary.sft_run.run_id, curation_id=dpo_curation)
    summary.seconds["dpo"] = time.perf_counter() - started

    console.rule("[bold]4. evaluate base vs SFT vs DPO")
    started = time.perf_counter()
    # "sft"/"dpo" resolve to the runs just trained, and read better in tables than run ids
    summary.evaluation = run_evaluate(recipe, ws)
    summary.seconds["evaluate"] = time.perf_counter() - started
    print_summary(summary, console)
    return summary


def print_summary(summary: DemoSummary, console: Console) -> None:
    table = Table(title="tunelab demo", show_lines=False)
    table.add_column("step")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for result in summary.curations:
        table.add_row(
            f"curate {result.curation_id}",
            f"read {result.read} → kept {result.kept}, dropped {result.dropped}, quarantined {result.quarantined}",
            "",
        )
    table.add_row("", "", f"{summary.seconds.get('curate', 0):.1f}")
    for label, run in (("sft", summary.sft_run), ("dpo", summary.dpo_run)):
        if run is not None:
            loss = (run.metrics or {}).get("train_loss")
            loss_text = f", train loss {loss:.3f}" if isinstance(loss, float) else ""
            table.add_row(
                f"{label} {run.run_id}",
                f"adapter {run.adapter_dir}{loss_text}",
                f"{summary.seconds[label]:.1f}",
            )
    if summary.evaluation is not None:
        table.add_row(
            f"evaluate {summary.evaluation.eval_id}",
            "base vs SFT vs DPO (table above)",
            f"{summary.seconds['evaluate']:.1f}",
        )
    console.print(table)
    console.print(f"Warehouse: [bold]{summary.workspace.warehouse}[/]")
    console.print(
        'Next: [bold]tunelab runs[/] · [bold]tunelab sql "select * from v_drop_reasons"[/] · [bold]tunelab dashboard[/]'
    )
