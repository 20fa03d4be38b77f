"""`tunelab doctor`: report (and with --repair, fix) what interrupted work left in a workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from tunelab.cliopts import FormatOption, OutputFormat, WorkspaceOption, print_json


def doctor_command(
    workspace: WorkspaceOption = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="fix what can be fixed, and say what was done")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Check a workspace: unfinished or orphaned curation folders, runs stuck in 'running', missing files.

    Exit code 0 when nothing is left to fix, 1 when problems remain."""
    from tunelab.doctor.checks import examine
    from tunelab.workspace import as_workspace

    ws = as_workspace(workspace)
    findings = examine(ws, repair=repair)
    if fmt == OutputFormat.json:
        print_json({"workspace": str(ws.root), "findings": [f.as_dict() for f in findings]})
    elif not findings:
        typer.echo(f"{ws.root}: nothing to fix")
    else:
        for f in findings:
            mark = "fixed" if f.repaired else "found"
            typer.echo(f"{mark}  {f.problem:<24} {f.subject}  {f.detail}")
    remaining = [f for f in findings if not f.repaired and f.problem != "curation_in_progress"]
    if remaining:
        if not repair and fmt == OutputFormat.table:
            typer.echo("run `tunelab doctor --repair` to fix what can be fixed", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)
