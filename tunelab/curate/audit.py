"""A dry run over one data file: what curation would do to it, and how many rows each near-dup threshold
would drop. Nothing is written but the embedding cache; `tunelab audit` parses options, calls `audit`,
and prints what comes back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.curate import minhash, pii, semantic
from tunelab.curate.calibrate import examples_above
from tunelab.curate.common import StageContext, keep_order, with_content
from tunelab.curate.config import CurateConfig
from tunelab.curate.dedup_key import dedup_keys
from tunelab.curate.pipeline import curate_frame, eval_content, run_stages
from tunelab.curate.report import quarantine_lines, summary
from tunelab.curate.result import CurationResult
from tunelab.records.config import DatasetConfig
from tunelab.records.fields import content_text
from tunelab.records.loader import load_dataset_records
from tunelab.workspace import Workspace

# the stages a threshold sweep measures after: everything that runs before the near-dup stages
BEFORE_NEAR_DUP = ("schema", "normalize", "length", "exact")
# the stages that measure each row (curate/language.py, pii.py, quality.py, pairs.py): an audit without a
# recipe runs them too, so a first look at a file reports language mix, personal information, degenerate
# text and broken preference pairs
SIGNAL_STAGES = ("pairs", "language", "pii", "quality")
EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 240


@dataclass(frozen=True)
class SweepRow:
    method: str  # minhash | semantic
    threshold: float
    would_drop: int
    # the drops scoring closest above the threshold: {score, kept, dropped} (calibrate.examples_above)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Sweep:
    after: list[str]  # the stages the swept rows survived
    rows: int  # how many rows the sweep ran on
    results: list[SweepRow] = field(default_factory=list)


@dataclass
class Audit:
    result: CurationResult
    sweep: Sweep | None = None
    # rows per (stage, reason, kept) with the first EXAMPLES_PER_REASON rows' text (reason_examples)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, quarantined: int = 10) -> dict[str, Any]:
        """The audit as plain data (`--format json`): counts, reasons, stages, labels, the rendered token
        lengths after curation (with a tokenizer), the sweep and the first `quarantined` malformed lines."""
        data = summary(self.result.report)
        data["quarantined_lines"] = quarantine_lines(self.result.quarantine, quarantined)
        stats = self.result.report.get("stage_stats", {})
        data["labels"] = stats.get("labels", {})  # rows per label read and kept
        if "tokens_rendered" in stats:  # with curate.length.tokenizer: kept rows as training renders them
            data["tokens_rendered"] = stats["tokens_rendered"]
        data["reason_examples"] = self.examples
        if self.sweep is not None:
            data["sweep"] = {
                "after": self.sweep.after,
                "rows": self.sweep.rows,
                "results": [asdict(row) for row in self.sweep.results],
            }
        return data


def dataset_name_for(path: Path) -> str:
    """A dataset name (the sample id prefix) from a file name: letters, digits, '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_") or "audit"


def default_config(semantic: bool = False) -> CurateConfig:
    """The stages an audit runs without a recipe: the checks, the signal stages (language, personal
    information, quality, preference pairs) and exact/MinHash dedup (+ semantic when asked)."""
    stages = ["schema", "normalize", *SIGNAL_STAGES, "length", "exact", "minhash"]
    stages += ["semantic"] if semantic else []
    return CurateConfig(stages=stages)


def threshold_sweep(
    frame: pl.DataFrame,
    curate: CurateConfig,
    ctx: StageContext,
    minhash_thresholds: Sequence[float] = (),
    semantic_thresholds: Sequence[float] = (),
) -> Sweep:
    """Rows each threshold would drop, on the rows that survive the stages before near-dup removal;
    MinHash signatures and embeddings are computed once for all thresholds."""
    before = [name for name in BEFORE_NEAR_DUP if name in curate.stages]
    survivors, _, _ = run_stages(frame, curate.with_stages(before), ctx)
    if "content" not in survivors.columns:
        survivors = with_content(survivors, ctx.kind)
    texts = survivors["content"].fill_null("").to_list()
    sweep = Sweep(after=before, rows=len(texts))
    checksum = curate.pii.rrn_checksum if hasattr(curate, "pii") else True
    if minhash_thresholds:
        cfg = curate.minhash
        keys = dedup_keys(texts, cfg.key)  # what the minhash stage compares (curate/dedup_key.py)
        sig = minhash.signatures(keys, cfg.ngram, cfg.num_perm, cfg.seed)
        rank = keep_order(survivors, cfg.keep, survivors["content"]).to_numpy()
        for threshold in minhash_thresholds:
            ref, score, *_ = minhash.cluster(keys, sig, cfg.model_copy(update={"threshold": threshold}), rank)
            examples = _masked_pairs(examples_above(texts, ref, score, threshold), checksum)
            sweep.results.append(SweepRow("minhash", threshold, int((ref >= 0).sum()), examples))
    if semantic_thresholds:
        cfg_sem = curate.semantic
        vectors = semantic.embed(texts, cfg_sem, ctx)
        order = keep_order(survivors, cfg_sem.keep, survivors["content"]).to_numpy().argsort(kind="stable")
        for threshold in semantic_thresholds:
            ref, score = semantic.greedy_near_dups(vectors, order, threshold, cfg_sem.block_size)
            examples = _masked_pairs(examples_above(texts, ref, score, threshold), checksum)
            sweep.results.append(SweepRow("semantic", threshold, int((ref >= 0).sum()), examples))
    return sweep


def _masked_pairs(examples: list[dict[str, Any]], rrn_checksum: bool) -> list[dict[str, Any]]:
    """The sweep's example pairs with personal information replaced by <PII:kind>, as reason_examples
    does: the sweep runs before the pii stage, and its pairs are printed and pasted into tickets too."""
    masked = []
    for pair in examples:
        kept, dropped = (
            pii.mask(text, pii.find(text, rrn_checksum=rrn_checksum))
            for text in (pair["kept"], pair["dropped"])
        )
        masked.append({**pair, "kept": kept, "dropped": dropped})
    return masked


def reason_examples(
    decisions: pl.DataFrame,
    loaded: pl.DataFrame,
    kind: str,
    per_reason: int = EXAMPLES_PER_REASON,
    rrn_checksum: bool = True,
) -> list[dict[str, Any]]:
    """Rows per (stage, reason, kept) — every drop and every kept row a stage annotated (normalized,
    masked) — each with its first `per_reason` rows in source order: sample id, evidence and text.

    The text is the row as read (prompt and answer, every turn of a conversation), whitespace collapsed,
    cut to EXAMPLE_CHARS, with any personal information found in it replaced by <PII:kind>: an audit is
    printed and pasted into tickets, and must not carry the values the pii stage exists to keep out."""
    marked = decisions.filter(
        (pl.col("stage") != "final")
        & (~pl.col("kept") | pl.col("reason").is_not_null())
        & ~pl.col("sample_id").str.contains("#dup", literal=True)  # oversampled copies: not rows read
    ).with_columns(pl.int_range(pl.len()).alias("written"))
    if marked.height == 0:
        return []
    texts = dict(loaded.select("sample_id", content_text(kind)).iter_rows())
    groups = (
        marked.group_by("stage", "reason", "kept")
        .agg(pl.len().alias("count"), pl.col("written").min().alias("first"), pl.all().head(per_reason))
        .sort(["kept", "count", "first"], descending=[False, True, False])
    )
    found = []
    for row in groups.iter_rows(named=True):
        examples = []
        for sample_id, evidence in zip(row["sample_id"], row["evidence"], strict=True):
            text = " ".join((texts.get(sample_id) or "").split())
            text = pii.mask(text, pii.find(text, rrn_checksum=rrn_checksum))
            if len(text) > EXAMPLE_CHARS:
                text = text[: EXAMPLE_CHARS - 1] + "…"
            examples.append({"sample_id": sample_id, "evidence": evidence, "text": text})
        found.append(
            {"stage": row["stage"], "reason": row["reason"], "kept": row["kept"], "count": int(row["count"]),
             "examples": examples}
        )  # fmt: skip
    return found


def audit(
    dataset: DatasetConfig,
    curate: CurateConfig,
    workspace: Workspace,
    eval_set: DatasetConfig | None = None,
    minhash_thresholds: Sequence[float] = (),
    semantic_thresholds: Sequence[float] = (),
    show_progress: bool = True,
) -> Audit:
    """Curate `dataset` in memory with `curate`'s stages (decontamination against `eval_set` when the
    stages include it), then sweep the given thresholds. The workspace only lends its embedding cache."""
    loaded = load_dataset_records(dataset)
    eval_rows = eval_content(curate, eval_set, dataset.kind) if "decontaminate" in curate.stages else None
    ctx = StageContext(cache_dir=workspace.embedding_cache)
    result = curate_frame(
        loaded.frame, loaded.quarantine, loaded.read, dataset, curate,
        workspace, eval_rows=eval_rows, show_progress=show_progress, ctx=ctx,
    )  # fmt: skip
    result.report["source"] = loaded.source  # how the file was read (format, encoding, notes)
    checksum = curate.pii.rrn_checksum if hasattr(curate, "pii") else True
    examples = reason_examples(result.decisions, loaded.frame, dataset.kind, rrn_checksum=checksum)
    if not (minhash_thresholds or semantic_thresholds):
        return Audit(result, examples=examples)
    sweep_ctx = StageContext(
        kind=dataset.kind,
        dataset_name=dataset.name,
        cache_dir=workspace.embedding_cache,
        show_progress=show_progress,
    )
    sweep = threshold_sweep(loaded.frame, curate, sweep_ctx, minhash_thresholds, semantic_thresholds)
    return Audit(result, sweep, examples)
