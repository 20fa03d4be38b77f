"""`tunelab raft build QA_FILE --out RAFT.jsonl`: RAFT rows from SQuAD/KorQuAD-style or flat QA data.

The command parses options, calls tunelab.raft.build and prints what it built (rows, documents, the golden
share, distractors, rendered sizes) as a table or one JSON document; progress and notes go to stderr.
build.py loads numpy, polars and bm25s, so it is imported inside the command: `tunelab --help` stays light.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunelab.cliopts import (
    FormatOption,
    InputFormat,
    InputFormatOption,
    OutputFormat,
    WorkspaceOption,
    print_json,
)
from tunelab.errors import UserError

raft_app = typer.Typer(
    name="raft",
    help="RAFT data for RAG fine-tuning: golden + distractor documents per question.",
    no_args_is_help=True,
)


class DistractorMode(StrEnum):
    hard = "hard"
    random = "random"


def _tokenizer(name: str | None, workspace_dir: Path | None, texts: Any) -> tuple[Any | None, str]:
    """The tokenizer sizes are counted with: --tokenizer, else the workspace's tiny model when it has been
    built, else none (characters only)."""
    from tunelab.curate.length import load_tokenizer
    from tunelab.modeling.config import TINY_MODEL
    from tunelab.modeling.tiny import MARKER_FILE
    from tunelab.workspace import as_workspace

    workspace = as_workspace(workspace_dir)
    if name is None:
        if (workspace.model_dir(TINY_MODEL) / MARKER_FILE).is_file():
            name = TINY_MODEL
        else:
            return None, "characters only (no --tokenizer, and the workspace has no tunelab-tiny yet)"
    try:
        return load_tokenizer(name, workspace, texts), name
    except UserError as exc:
        raise UserError(str(exc).replace("curate.length.tokenizer", "--tokenizer")) from None


def build_command(
    qa_file: Annotated[
        Path, typer.Argument(help="SQuAD/KorQuAD JSON, or a table with question, context and answer columns")
    ],
    out: Annotated[Path, typer.Option("--out", help="where to write the RAFT rows (JSON lines)")],
    k: Annotated[
        int, typer.Option("--k", help="distractor documents per row (rows without golden: k + 1)")
    ] = 4,
    p_golden: Annotated[
        float, typer.Option("--p-golden", help="share of rows that hold the golden document (RAFT's P)")
    ] = 0.8,
    distractors: Annotated[
        DistractorMode,
        typer.Option("--distractors", help="hard: nearest other documents by BM25; random: any other"),
    ] = DistractorMode.hard,
    cot: Annotated[
        bool, typer.Option("--cot", help="add a cot quoting the golden sentence, ending in <ANSWER>: ...")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="seed of every draw (same seed, same rows)")] = 0,
    instruction: Annotated[
        str | None, typer.Option("--instruction", help="the instruction of every row (default by language)")
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="count sizes in this tokenizer's tokens (a path, a hub name cached here, or tunelab-tiny; "
            "default: the workspace's tunelab-tiny when built, else characters only)",
        ),
    ] = None,
    input_format: InputFormatOption = InputFormat.auto,
    workspace: WorkspaceOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Build RAFT rows: the golden document plus k distractors per question (a share without the golden),
    shuffled, seeded; optional cot; prints row sizes so max_length can be chosen knowingly."""
    from tunelab.raft import build

    settings = build.BuildSettings(
        k=k, p_golden=p_golden, distractors=distractors.value, cot=cot, seed=seed, instruction=instruction
    )
    settings.check()
    _guard_out(out, qa_file, workspace)  # before the build: a refused path costs nothing
    read = build.read_qa(qa_file, input_format.value)
    for reason, count in read.skipped.items():
        build.note(f"{count:,} questions skipped: {reason} (first at {read.first_skipped[reason]})")
    result = build.build_rows(read.qas, settings, show_progress=True)
    texts = lambda: [d for row in result.rows for d in [*row["context"], row["question"]]]  # noqa: E731
    tok, tok_name = _tokenizer(tokenizer, workspace, texts)
    sizes = build.rendered_sizes(result.rows, tok)
    build.write_rows(result.rows, out)
    report = {
        "out": str(out),
        "rows": len(result.rows),
        "records_read": read.records,
        "skipped": read.skipped,
        **result.stats,
        "sizes": sizes,
        "size_unit": tok_name,
    }
    if output is OutputFormat.json:
        print_json(report)
        return
    _print_report(report)


def _guard_out(out: Path, qa_file: Path, workspace_dir: Path | None) -> None:
    """--out must not be the QA file itself (it was replaced by its RAFT rows), the warehouse or a folder
    tunelab manages; an existing other file is still replaced, as the documented rebuild does."""
    from tunelab.workspace import as_workspace, guard_output

    if out.expanduser().resolve() == qa_file.expanduser().resolve():
        raise UserError(f"{out}: that is the QA file being read; write the RAFT rows somewhere else")
    guard_output(out, as_workspace(workspace_dir).warehouse, force=True)


def _print_report(report: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"RAFT rows → {escape(report['out'])}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    skipped = sum(report["skipped"].values())
    table.add_row("rows (answerable questions)", f"{report['rows']:,}")
    table.add_row("questions skipped", f"{skipped:,}")
    table.add_row("documents", f"{report['documents']:,}")
    table.add_row("with the golden document", f"{report['rows_with_golden']:,} (p = {report['p_golden']:g})")
    mode = report["distractors"]
    if mode == "hard":
        mode += f" ({report['distractors_from_bm25_neighbours']:,} of {report['distractors_drawn']:,} from BM25 neighbours)"
    table.add_row(f"distractors (k = {report['k']})", mode)
    if "rows_without_cot" in report:
        table.add_row("rows without a cot (answer in no sentence)", f"{report['rows_without_cot']:,}")
    for unit in ("characters", "tokens"):
        stats = report["sizes"].get(unit)
        if stats:
            table.add_row(
                f"rendered {unit} p50 / p95 / max",
                f"{stats['p50']:,.0f} / {stats['p95']:,.0f} / {stats['max']:,.0f}",
            )
    longer = report["sizes"].get("rows_longer_than")
    if longer:
        table.add_row(
            "rows longer than 512 / 1024 / 2048 tokens",
            " / ".join(f"{longer[k]:,}" for k in ("512", "1024", "2048")),
        )
    console.print(table)
    console.print(f"tokens counted with: {escape(str(report['size_unit']))}", style="dim")
    if "note" in report:
        console.print(f"note: {escape(report['note'])}")
    tokens = report["sizes"].get("tokens")
    if tokens:
        console.print(
            f"train.sft.max_length ≥ {int(tokens['p95']) + 1} keeps 95 % of rows whole "
            "(longer rows are truncated; a row whose answer is cut off is dropped with a note)"
        )


def register(app: typer.Typer) -> None:
    raft_app.command("build")(build_command)
    app.add_typer(raft_app, name="raft")
