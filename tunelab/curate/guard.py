"""The quarantine guard: a curation that quarantined too much, or kept nothing, is written (so it can be
inspected) but `tunelab curate` / `tunelab audit` exit 3 with one line naming the commonest problem and
what to change. Pure: a CurationResult in, a message (or None) out.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from tunelab.curate.result import CurationResult
from tunelab.records.config import DatasetConfig

EXIT_CODE = 3


def _error_class(error: str) -> str:
    # 'invalid JSON: ... column 7' and '... column 9' are one problem: numbers are not the problem
    return re.sub(r"\d+", "N", error.split(" (lines ", 1)[0])


def _records(n: int) -> str:
    return f"{n:,} record{'' if n == 1 else 's'}"


def _quote(text: str | None, limit: int = 40) -> str:
    text = (text or "").strip().replace("\n", "⏎")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _hint(
    error: str,
    first: dict[str, Any],
    earliest: dict[str, Any],
    dataset: DatasetConfig,
    source: dict[str, Any],
) -> str:
    """What to change, from the commonest error (`first`: its first row) and the earliest quarantined row."""
    line, raw = first["source_line"], first["raw"] or ""
    encoding = source.get("encoding") or "utf-8"
    if error.startswith("invalid ") and " at byte " in error:
        if dataset.encoding:
            return (
                f"dataset.encoding is {dataset.encoding!r} but the file is not in it: remove dataset.encoding "
                "to have it detected, or set the right one"
            )
        return f"the file is not {encoding} throughout: set dataset.encoding (e.g. cp949, euc-kr, utf-16)"
    if error.startswith("invalid JSON"):
        opening = (earliest["raw"] or "").strip()
        if opening[:1] in ("[", "{") and len(opening) <= 2 and dataset.format == "jsonl":
            return (
                f"line {earliest['source_line']} is {_quote(opening)}: the file is one JSON document: set "
                "dataset.format: json (or auto)"
            )
        return f"line {line} is {_quote(raw)}: not JSON lines; check dataset.format (auto tells the formats apart)"
    if error.startswith("not a JSON object") or error.startswith("record is not a JSON object"):
        return (
            f"line {line} is {_quote(raw)}: records must be JSON objects; records nested in a document "
            "are selected with dataset.records (e.g. data[].paragraphs[].qas[])"
        )
    if error.startswith("wrong column count"):
        if "\t" in raw and dataset.format == "csv":
            return f"line {line} holds tabs: set dataset.format: tsv"
        if ";" in raw and "," not in raw:
            return f"line {line} is separated by ';': re-export the file as CSV (',') or TSV"
        return (
            f"line {line} is {_quote(raw)}: check the delimiter (dataset.format csv or tsv) and the quoting"
        )
    if error.startswith("stray quote"):
        return f"fix the quote on line {line} ({_quote(raw)}), or quote that field properly"
    if error.startswith("dataset.records"):
        return "dataset.records does not match the file's structure: check its keys"
    return (
        "see quarantine.parquet in the curation folder (or `tunelab audit FILE`, which lists the first lines)"
    )


def guard_message(
    result: CurationResult, dataset: DatasetConfig, max_ratio: float, source: dict[str, Any] | None = None
) -> str | None:
    """One line when more than `max_ratio` of the records read were quarantined, or none was kept; else None."""
    source = source if source is not None else result.report.get("source") or {}
    read, quarantined = result.read, result.quarantined
    name = f"{dataset.name} ({dataset.path})"
    if read and quarantined / read > max_ratio and result.quarantine is not None:
        q = result.quarantine.with_columns(
            pl.col("error").map_elements(_error_class, return_dtype=pl.String).alias("class")
        )
        top = q.group_by("class", maintain_order=True).len().sort("len", descending=True, maintain_order=True)
        error_class, count = top.row(0)
        first = q.filter(pl.col("class") == error_class).sort("source_line").row(0, named=True)
        earliest = q.sort("source_line").row(0, named=True)
        return (
            f"{name}: {quarantined:,} of {read:,} records quarantined (more than curate.max_quarantine_ratio "
            f"{max_ratio:g}); commonest: {first['error']} ({_records(count)}, first on line "
            f"{first['source_line']}); {_hint(first['error'], first, earliest, dataset, source)}"
        )
    if read and result.kept == 0:
        source_notes = (result.report.get("source") or {}).get("notes") or []
        squad = next((n for n in source_notes if "SQuAD/KorQuAD JSON" in n), None)
        if squad is not None:  # a QA file read whole: say how to get its questions (records/formats.py)
            return f"{name}: 0 of {read:,} records kept; {squad}"
        reasons = [r for r in result.report.get("reasons", []) if not r["kept"]]
        if reasons:
            top_reason = max(reasons, key=lambda r: r["count"])
            return (
                f"{name}: 0 of {read:,} records kept; commonest reason: {top_reason['stage']} "
                f"{top_reason['reason']} ({_records(top_reason['count'])}): map the source columns with "
                "dataset.fields, or loosen that stage (see report.md)"
            )
        return f"{name}: 0 of {read:,} records kept (see report.md)"
    return None
