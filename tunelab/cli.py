"""The `tunelab` command. Each component registers its own commands; heavy imports stay inside them.

Conventions (tunelab/cliopts.py holds the shared options): results on stdout, progress and notes on stderr,
and every user mistake, a bad option value included, is one line on stderr with exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from tunelab.errors import UserError

app = typer.Typer(
    name="tunelab",
    help="Curate, train (QLoRA SFT → DPO), evaluate and query fine-tuning data and runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)

COMPONENT_COMMANDS = (
    "tunelab.demo.commands",
    "tunelab.curate.commands",
    "tunelab.curate.calibrate_commands",
    "tunelab.curate.diff_commands",
    "tunelab.train.commands",
    "tunelab.evaluate.commands",
    "tunelab.warehouse.commands",
    "tunelab.dashboards.commands",
    "tunelab.doctor.commands",
    "tunelab.raft.commands",
    "tunelab.serve.commands",
)


def tunelab_version() -> str:
    try:
        return version("tunelab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tunelab {tunelab_version()}")
        raise typer.Exit()


@app.callback()
def tunelab(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Curate, train (QLoRA SFT → DPO), evaluate and query fine-tuning data and runs."""


for module_name in COMPONENT_COMMANDS:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # a real missing dependency inside the module must not be hidden
            raise
        continue
    module.register(app)


# typer raises click's exception classes (its own copy of click in recent versions, click itself before):
# take them from a public typer exception rather than from either module.
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def _usage_line(exc: Exception) -> str:
    """A click usage error (bad choice, missing argument, unknown option) as one line."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "tunelab"
    message = exc.format_message().rstrip(".")
    return f"{command}: {message} (see {command} --help)"


def main(args: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    try:
        result = typer.main.get_command(app).main(args=args, prog_name="tunelab", standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except _CLICK_EXCEPTION as exc:
        if isinstance(exc, _USAGE_ERROR) and type(exc).__name__ != "NoArgsIsHelpError":
            typer.echo(f"error: {_usage_line(exc)}", err=True)
        else:  # bare `tunelab` or a bare group shows the help, as before
            exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    # without standalone mode click returns the exit code of typer.Exit(code) / ctx.exit(code)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
