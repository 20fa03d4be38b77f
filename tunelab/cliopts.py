"""Options the commands share: one name, one help text and typed choices (so shells complete them).

Conventions: results go to stdout (`--format table` for people, `--format json` for scripts: one JSON
document, nothing else on stdout); progress, notes and warnings go to stderr; a user mistake is one line
on stderr and exit code 2.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


class ResultFormat(StrEnum):
    """Tabular query results (sql, runs) can also be CSV."""

    table = "table"
    csv = "csv"
    json = "json"


class InputFormat(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    tsv = "tsv"
    parquet = "parquet"


class DataKind(StrEnum):
    sft = "sft"
    chat = "chat"
    dpo = "dpo"
    raft = "raft"
    text = "text"


class RougeTokenizer(StrEnum):
    auto = "auto"
    kiwi = "kiwi"
    whitespace = "whitespace"
    char = "char"


class MetricName(StrEnum):
    rouge = "rouge"
    bleu = "bleu"
    chrf = "chrf"
    cosine = "cosine"
    label_acc = "label_acc"
    korean_answer_rate = "korean_answer_rate"  # share of answers in Korean (curate/language.py)
    exact_match = "exact_match"  # RAG answers: the `<ANSWER>:` part, Korean particles dropped
    token_f1 = "token_f1"
    judge = "judge"  # the LLM judge (evaluate.judge, or --judge-endpoint/--judge-model)


class JudgeMode(StrEnum):
    pairwise = "pairwise"
    rubric = "rubric"


WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace", "-w", help="workspace folder (default: the recipe's, else ./tunelab-workspace)"
    ),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table for people, json for scripts (stdout holds only it)")
]
ResultFormatOption = Annotated[
    ResultFormat,
    typer.Option("--format", help="table for people, csv or json for scripts (stdout holds only it)"),
]
WarehouseOption = Annotated[
    Path | None,
    typer.Option(
        "--warehouse", help="a warehouse file instead of a workspace (default WORKSPACE/tunelab.duckdb)"
    ),
]
InputFormatOption = Annotated[
    InputFormat, typer.Option("--input-format", help="how to read the data file (auto: by content)")
]
KindOption = Annotated[DataKind, typer.Option("--kind", help="what the rows are")]


def print_json(data: Any) -> None:
    """One JSON document on stdout (non-ASCII kept readable; paths and dates as strings)."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
