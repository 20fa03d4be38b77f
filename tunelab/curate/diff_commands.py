"""`tunelab diff CURATION_A CURATION_B`: two curations side by side, from the warehouse.

The command reads both curations through tunelab.warehouse.store, tunelab/curate/diff.py compares them,
and this module prints: rich tables with `--format table` (dataset text and reasons as plain text, never as
rich markup), one JSON document with `--format json`. polars is loaded by store and diff, so they are
imported inside the command: `tunelab --help` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tunelab.cliopts import FormatOption, OutputFormat, WarehouseOption, WorkspaceOption, print_json
from tunelab.errors import UserError

if TYPE_CHECKING:
    from tunelab.curate.diff import CurationDiff

TEXT_WIDTH = 60
LIST_HINT = 'tunelab sql "select curation_id, dataset, created_at from curations" lists them'


def resolve_curation(db: Path, text: str, which: str) -> dict[str, Any]:
    """The curation row named by an id or a unique prefix of one; a UserError naming `which` otherwise."""
    from tunelab.warehouse import store

    found = store.find_curations(db, text)
    if not found:
        raise UserError(f"{which}: no curation {text!r} in {db} ({LIST_HINT})")
    if len(found) > 1:
        shown = ", ".join(found[:3]) + (" …" if len(found) > 3 else "")
        raise UserError(f"{which}: {text!r} starts {len(found)} curation ids ({shown}); give more of it")
    row = store.get_curation(db, found[0])
    assert row is not None
    return row


def compare(db: Path, a_id: str, b_id: str) -> CurationDiff:
    """Read curations A and B from the warehouse `db` and compare them (ids or unique prefixes)."""
    from tunelab.curate.diff import diff_curations
    from tunelab.warehouse import store

    a = resolve_curation(db, a_id, "CURATION_A")
    b = resolve_curation(db, b_id, "CURATION_B")
    return diff_curations(
        a,
        store.curation_outcomes(db, a["curation_id"]),
        store.curation_reason_counts(db, a["curation_id"]),
        b,
        store.curation_outcomes(db, b["curation_id"]),
        store.curation_reason_counts(db, b["curation_id"]),
    )


def _clip(text: str | None, width: int = TEXT_WIDTH) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _why(stage: str | None, reason: str | None) -> str:
    return "kept" if stage is None else f"{stage} · {reason or '(no reason)'}"


def print_diff(found: CurationDiff, texts: dict[str, str], limit: int | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tunelab.curate.diff import CHANGES

    console = Console()
    a, b = found.a, found.b
    head = Table(title="curations (A = before, B = after)")
    for column in ("", "A", "B", "B − A"):
        head.add_column(column, justify="left" if not column else "right", overflow="fold")
    head.add_row("curation", Text(str(a["curation_id"])), Text(str(b["curation_id"])), "")
    head.add_row("dataset", Text(f"{a['dataset']} ({a['kind']})"), Text(f"{b['dataset']} ({b['kind']})"), "")
    for key in ("read", "kept", "dropped", "quarantined"):
        va, vb = int(a[key] or 0), int(b[key] or 0)
        if key == "read":
            head.add_row(key, f"{va:,}", f"{vb:,}", f"{vb - va:+,}")
            continue
        # shares of each side's own read rows: the two files may differ in size
        share_a, share_b = va / max(int(a["read"] or 0), 1), vb / max(int(b["read"] or 0), 1)
        head.add_row(key, f"{va:,} ({share_a:.1%})", f"{vb:,} ({share_b:.1%})", f"{vb - va:+,}")
    console.print(head)

    moves = Table(title="rows")
    moves.add_column("what")
    moves.add_column("rows", justify="right")
    moves.add_row("paired by sample id", f"{found.paired_by_id:,}")
    moves.add_row("paired by content (id changed)", f"{found.paired_by_content:,}")
    moves.add_row("added (only in B)", f"{found.added.height:,}")
    moves.add_row("removed (only in A)", f"{found.removed.height:,}")
    moves.add_section()
    for code, label in CHANGES.items():
        moves.add_row(label, f"{found.change_counts[code]:,}")
    moves.add_row("kept, other split (train ⇄ val)", f"{found.split_changed:,}")
    console.print(moves)

    reasons = Table(title="rows per reason")
    for column in ("stage", "reason", "kept", "A", "B", "B − A"):
        reasons.add_column(column, justify="right" if column in ("A", "B", "B − A") else "left")
    for row in found.reasons.iter_rows(named=True):
        reasons.add_row(
            Text(row["stage"] or ""), Text(row["reason"] or ""), "yes" if row["kept"] else "no",
            f"{row['a']:,}", f"{row['b']:,}", f"{row['delta']:+,}",
        )  # fmt: skip
    console.print(reasons)

    shown = found.changes if limit is None else found.changes.head(limit)
    if shown.height:
        changed = Table(title=f"changed decisions ({shown.height:,} of {found.changes.height:,})")
        for column in ("change", "sample", "A: stage · reason", "B: stage · reason", "text (B)"):
            changed.add_column(column, overflow="fold")
        for row in shown.iter_rows(named=True):
            sample = row["sample_id_b"]
            if row["sample_id_a"] != sample:
                sample = f"{row['sample_id_a']} → {sample}"
            changed.add_row(
                CHANGES[row["change"]], Text(sample),
                Text(_why(row["stage_a"], row["reason_a"])), Text(_why(row["stage_b"], row["reason_b"])),
                Text(_clip(texts.get(row["sample_id_b"]))),
            )  # fmt: skip
        console.print(changed)
    for title, frame in (("added (only in B)", found.added), ("removed (only in A)", found.removed)):
        part = frame if limit is None else frame.head(limit)
        if not part.height:
            continue
        table = Table(title=f"{title}: {part.height:,} of {frame.height:,}")
        for column in ("sample", "outcome", "stage · reason", "text"):
            table.add_column(column, overflow="fold")
        for row in part.iter_rows(named=True):
            table.add_row(
                Text(row["sample_id"]), row["outcome"], Text(_why(row["stage"], row["reason"])),
                Text(_clip(texts.get(row["sample_id"]))),
            )  # fmt: skip
        console.print(table)
    for note in found.notes:
        console.print(Text(f"note: {note}"))


def diff_command(
    curation_a: Annotated[str, typer.Argument(help="the curation before: an id, or a unique prefix of one")],
    curation_b: Annotated[str, typer.Argument(help="the curation after")],
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="rows listed per list (changed, added, removed); 0: all")
    ] = 20,
    workspace: WorkspaceOption = None,
    warehouse: WarehouseOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Two curations side by side: rows added and removed, decisions that changed (with both reasons),
    rows per reason before and after."""
    from tunelab.warehouse import store
    from tunelab.warehouse.commands import resolve_warehouse

    db = resolve_warehouse(workspace, warehouse)
    found = compare(db, curation_a, curation_b)
    rows = None if limit == 0 else limit
    if output is OutputFormat.json:
        print_json(found.as_dict(rows))
        return
    changed = found.changes if rows is None else found.changes.head(rows)
    added = found.added if rows is None else found.added.head(rows)
    removed = found.removed if rows is None else found.removed.head(rows)
    texts_b = store.sample_texts(
        db, found.b["curation_id"], changed["sample_id_b"].to_list() + added["sample_id"].to_list()
    )
    texts_a = store.sample_texts(db, found.a["curation_id"], removed["sample_id"].to_list())
    texts = dict(texts_a.iter_rows()) | dict(texts_b.iter_rows())
    print_diff(found, texts, rows)


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_command)
