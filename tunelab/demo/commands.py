"""The `tunelab demo` command."""

from __future__ import annotations

import typer

from tunelab.cliopts import WorkspaceOption


def demo_command(workspace: WorkspaceOption = None) -> None:
    """Run curate → SFT → DPO → evaluate on the bundled Korean persona data (tiny model, CPU, < 5 min)."""
    from tunelab.demo.run import run_demo

    run_demo(workspace)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
