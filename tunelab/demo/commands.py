"""The `tunelab demo` command."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        workspace: Path = typer.Option(
            Path("tunelab-workspace"), "--workspace", "-w", help="Folder for all outputs."
        ),
    ) -> None:
        """Run curate → SFT → DPO → evaluate on the bundled Korean persona data (tiny model, CPU, < 5 min)."""
        from tunelab.demo.run import run_demo

        run_demo(workspace)
