"""The curation report, pure: a CurationResult (and what the pipeline measured) in, a report dict and its
Markdown out. Nothing here writes a file (curate/outputs.py does) or runs a stage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from tunelab import safetext
from tunelab.curate.result import CurationResult
from tunelab.records.config import DatasetConfig
from tunelab.records.fields import CANONICAL_FIELDS, content_text, field_text

DEDUP_REASONS = ("exact_dup", "near_dup_minhash", "near_dup_semantic")
SNIPPET = 160


def _snippet(text: str | None) -> str:
    text = (text or "").replace("\n", " ⏎ ")
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def _length_stats(frame: pl.DataFrame, kind: str) -> dict[str, dict[str, float]]:
    out = {}
    for field in CANONICAL_FIELDS[kind]:
        if field not in frame.columns:
            continue
        col = field_text(field)  # lists joined, conversations as "role: content" lines
        chars = frame.select(col.str.len_chars())[field].drop_nulls().to_numpy()
        if chars.size:
            out[field] = {
                "mean": round(float(chars.mean()), 2),
                "p50": float(np.percentile(chars, 50)),
                "p95": float(np.percentile(chars, 95)),
                "max": float(chars.max()),
            }
    return out


def largest_clusters(
    decisions: pl.DataFrame, loaded: pl.DataFrame, kind: str, top: int = 20
) -> list[dict[str, Any]]:
    """The `top` representatives with the most dropped duplicates, with texts side by side."""
    dups = decisions.filter(pl.col("reason").is_in(DEDUP_REASONS) & pl.col("ref_sample_id").is_not_null())
    if dups.height == 0:
        return []
    texts = dict(loaded.select("sample_id", content_text(kind)).iter_rows())
    sizes = (
        dups.group_by("ref_sample_id")
        .len()
        .sort(["len", "ref_sample_id"], descending=[True, False])
        .head(top)
    )
    clusters = []
    for ref, size in sizes.iter_rows():
        members = dups.filter(pl.col("ref_sample_id") == ref).sort("score", descending=True, nulls_last=True)
        clusters.append(
            {
                "representative": ref,
                "representative_text": _snippet(texts.get(ref)),
                "size": int(size) + 1,
                "members": [
                    {
                        "sample_id": sid,
                        "reason": reason,
                        "score": None if score is None else round(float(score), 4),
                        "text": _snippet(texts.get(sid)),
                    }
                    for sid, reason, score in members.select("sample_id", "reason", "score")
                    .head(10)
                    .iter_rows()
                ],
            }
        )
    return clusters


def build_report(
    result: CurationResult,
    dataset: DatasetConfig,
    loaded: pl.DataFrame,
    per_stage: dict[str, dict[str, Any]],
    stage_stats: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """The report of `result`: counts, per-stage rows and seconds, reasons, quarantine errors, lengths in and
    out, the stages' own numbers (`stage_stats`, StageContext.stats) and the largest duplicate clusters."""
    decisions = result.decisions
    reasons = (
        # drops, and the annotations of rows kept with a reason: normalized, oversampled, masked personal
        # information (pii:*), quality findings kept by flag_only, trailing special tokens cut
        decisions.filter(~pl.col("kept") | ((pl.col("stage") != "final") & pl.col("reason").is_not_null()))
        .group_by("stage", "reason", "kept")
        .len()
        .sort(["stage", "len"], descending=[False, True])
    )
    quarantine_errors = []
    if result.quarantine is not None and result.quarantine.height:
        quarantine_errors = [
            {"error": e, "count": int(n)}
            for e, n in result.quarantine.group_by("error")
            .len()
            .sort("len", descending=True)
            .head(10)
            .iter_rows()
        ]
    survivors = pl.concat([result.train, result.val]) if result.train is not None else loaded.head(0)
    stats = {k: v for k, v in stage_stats.items() if not k.startswith("_")}
    return {
        "curation_id": result.curation_id,
        "dataset": dataset.name,
        "dataset_path": str(dataset.path),
        "kind": dataset.kind,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_version": result.data_version,
        "seconds": round(seconds, 3),
        "counts": {
            "read": result.read,
            "kept": result.kept,
            "dropped": result.dropped,
            "quarantined": result.quarantined,
            "oversampled": result.oversampled,
            "train": 0 if result.train is None else result.train.height,
            "val": 0 if result.val is None else result.val.height,
        },
        "stages": [{"stage": name, **info} for name, info in per_stage.items()],
        "reasons": [
            {"stage": s, "reason": r, "kept": k, "count": int(n)} for s, r, k, n in reasons.iter_rows()
        ],
        "quarantine_errors": quarantine_errors,
        "length_input": _length_stats(loaded, dataset.kind),
        "length_output": _length_stats(survivors, dataset.kind),
        "stage_stats": stats,
        "largest_clusters": largest_clusters(decisions, loaded, dataset.kind),
    }


# what `--format json` prints of a report: the numbers a script checks, not the snippets
SUMMARY_KEYS = (
    "curation_id",
    "dataset",
    "kind",
    "data_version",
    "counts",
    "stages",
    "reasons",
    "quarantine_errors",
    "source",
)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report's counts, per-stage rows, reasons and quarantine errors, under its curation id."""
    return {key: report[key] for key in SUMMARY_KEYS if key in report}


def quarantine_lines(quarantine: pl.DataFrame | None, top: int = 10) -> list[dict[str, Any]]:
    """The first `top` malformed lines: line number, error, and the raw text cut to 80 characters."""
    if quarantine is None or quarantine.height == 0:
        return []
    return [
        {"line": line, "error": error, "raw": (raw or "")[:80]}
        for line, error, raw in quarantine.select("source_line", "error", "raw").head(top).iter_rows()
    ]


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        # strings here can be dataset text (snippets, labels, errors, quarantined lines): a viewer of
        # report.md must show them as text, never load an image or follow a link written in them
        return str(value) if isinstance(value, int | float) else safetext.text(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    c = report["counts"]
    parts = [
        f"# Curation {safetext.text(report['curation_id'])}",
        f"Dataset {safetext.text(report['dataset'])} ({report['kind']}) from {safetext.text(report['dataset_path'])}; "
        f"data version `{report['data_version']}`; {report['seconds']} s.",
        "",
        f"**read {c['read']:,}** = kept {c['kept']:,} + dropped {c['dropped']:,} + quarantined "
        f"{c['quarantined']:,}; train {c['train']:,}, val {c['val']:,} (oversampled copies: {c['oversampled']:,}).",
        "",
    ]
    source = report.get("source")
    if source:
        parts += [
            "## Source",
            f"format {source.get('format') or '?'}, encoding {source.get('encoding') or 'n/a (binary)'}"
            + (f", {len(source['files'])} files" if source.get("files") else ""),
        ]
        parts += [f"- {safetext.text(note)}" for note in source.get("notes", [])]
        parts += [""]
    parts += [
        "## Stages",
        _md_table(
            ["stage", "rows in", "dropped", "seconds"],
            [[s["stage"], s["in"], s["dropped"], s["seconds"]] for s in report["stages"]],
        ),
        "",
        "## Reasons",
        _md_table(
            ["stage", "reason", "kept", "rows"],
            [[r["stage"], r["reason"], r["kept"], r["count"]] for r in report["reasons"]],
        ),
    ]
    if report["quarantine_errors"]:
        parts += [
            "",
            "## Quarantine",
            _md_table(["error", "rows"], [[q["error"], q["count"]] for q in report["quarantine_errors"]]),
        ]
    for title, key in (
        ("Lengths in (characters)", "length_input"),
        ("Lengths out (characters)", "length_output"),
    ):
        rows = [[f, s["mean"], s["p50"], s["p95"], s["max"]] for f, s in report[key].items()]
        parts += ["", f"## {title}", _md_table(["field", "mean", "p50", "p95", "max"], rows)]
    tokens = (report["stage_stats"].get("length") or {}).get("fields") or {}
    token_rows = [
        [f, s["tokens"]["mean"], s["tokens"]["p50"], s["tokens"]["p95"], s["tokens"]["max"]]
        for f, s in tokens.items()
        if "tokens" in s
    ]
    if token_rows:
        parts += [
            "",
            "## Lengths in tokens (length stage input)",
            _md_table(["field", "mean", "p50", "p95", "max"], token_rows),
        ]
    rendered = report["stage_stats"].get("tokens_rendered")
    if rendered:  # what max_length must hold: the kept rows rendered with the chat template
        parts += [
            "",
            f"## Tokens after curation (chat-templated, {rendered['tokenizer']})",
            _md_table(
                ["rows", "mean", "p50", "p95", "max"],
                [[rendered["rows"], rendered["mean"], rendered["p50"], rendered["p95"], rendered["max"]]],
            ),
        ]
    labels_seen = report["stage_stats"].get("labels") or {}
    if labels_seen.get("read"):
        kept_labels = labels_seen.get("kept", {})
        parts += [
            "",
            "## Labels",
            _md_table(
                ["label", "read", "kept"],
                [[k, n, kept_labels.get(k, 0)] for k, n in sorted(labels_seen["read"].items())],
            ),
        ]
    balance = report["stage_stats"].get("balance")
    if balance and balance.get("before"):
        labels = sorted(balance["before"])
        parts += [
            "",
            "## Balance",
            _md_table(
                ["label", "before", "after"],
                [[k, balance["before"][k], balance["after"].get(k, "")] for k in labels],
            ),
        ]
    if report["largest_clusters"]:
        parts += ["", "## Largest duplicate clusters"]
        for k, cluster in enumerate(report["largest_clusters"], 1):
            rows = [["kept (representative)", cluster["representative"], "", cluster["representative_text"]]]
            rows += [[m["reason"], m["sample_id"], m["score"], m["text"]] for m in cluster["members"]]
            parts += [
                "",
                f"### {k}. {safetext.text(cluster['representative'])} ({cluster['size']} rows)",
                _md_table(["", "sample", "score", "text"], rows),
            ]
    return "\n".join(parts) + "\n"
