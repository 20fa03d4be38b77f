"""The `tunelab` command. Each component registers its own commands; heavy imports stay inside them."""

from __future__ import annotations

import importlib
import sys

import typer

from tunelab.errors import UserError

app = typer.Typer(
    name="tunelab",
    help="Curate, train (QLoRA SFT → DPO), evaluate and query fine-tuning data and runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

COMPONENT_COMMANDS = (
    "tunelab.demo.commands",
    "tunelab.curate.commands",
    "tunelab.train.commands",
    "tunelab.evaluate.commands",
    "tunelab.warehouse.commands",
    "tunelab.dashboards.commands",
)

for module_name in COMPONENT_COMMANDS:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # a real missing dependency inside the module must not be hidden
            raise
        continue
    module.register(app)


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    try:
        app()  # standalone: click prints its own usage errors and exits 2
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
