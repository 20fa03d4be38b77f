"""Balance stage: cap or re-weight rows per label with seeded undersampling; optional oversampling.

- `max_per_label: N`: labels with more than N rows keep a seeded random N (the rest: over_cap:label=<x>);
  with `oversample: true`, labels below N are topped up to N with duplicated rows.
- `ratios: {a: 0.5, b: 0.5}`: the largest set whose label shares match the ratios is kept (undersampling),
  or with `oversample: true` the smaller labels are duplicated up to the largest label's share. Labels not
  named in `ratios` are left as they are; a label at ratio 0 is dropped entirely. Rows without a label are
  never touched; a frame with no label at all (a DPO set, unlabeled data) skips the stage ('skipped: no
  labels' in the report).
The settings are checked against the labels present (they need the data, so here and not in the recipe
model): a `ratios` label that is not in the data is one line naming the labels found (`Egen` for `egen`).
Duplicated rows get new ids '<sample_id>#dup<k>' and a kept=true decision (reason 'oversampled',
ref_sample_id = the source row) and a row in the returned frame (a copy of its source row); they are not
source rows, so the pipeline counts them apart.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import BalanceSettings
from tunelab.errors import UserError

DUP_MARK = "#dup"


def found(counts: dict[str, int]) -> str:
    """`egen (20), teto (10)`: the labels present, for messages."""
    return ", ".join(f"{label} ({n})" for label, n in sorted(counts.items()))


def check_labels(counts: dict[str, int], cfg: BalanceSettings) -> None:
    """Settings that name labels must name labels of this data: a typo would silently drop a class."""
    missing = [label for label in cfg.ratios or {} if label not in counts]
    if missing:
        lower = {label.lower(): label for label in counts}
        hint = f" (did you mean {lower[missing[0].lower()]!r}?)" if missing[0].lower() in lower else ""
        raise UserError(
            f"curate.balance.ratios: label {missing[0]!r} is not in the data{hint}; labels found: {found(counts)}"
        )


def _targets(counts: dict[str, int], cfg: BalanceSettings) -> dict[str, int]:
    if cfg.ratios:
        named = {label: r for label, r in cfg.ratios.items() if r > 0}
        total_ratio = sum(named.values())
        shares = {label: r / total_ratio for label, r in named.items()}
        present = {label: counts[label] for label in shares}
        if cfg.oversample:
            scale = max(present[label] / shares[label] for label in shares)
        else:
            scale = min(present[label] / shares[label] for label in shares)
        targets = dict(counts)
        targets.update({label: int(round(shares[label] * scale)) for label in shares})
        targets.update({label: 0 for label, r in cfg.ratios.items() if r == 0})  # asked for none of it
        return targets
    cap = cfg.max_per_label
    if cap is None:
        return dict(counts)
    return {label: (cap if (n > cap or cfg.oversample) else n) for label, n in counts.items()}


def run(frame: pl.DataFrame, cfg: BalanceSettings, ctx: StageContext) -> StageOutput:
    """The kept rows plus oversampled copies; over_cap:label=<x> drops and 'oversampled' annotations (for the
    new '#dup' ids); counts in ctx.stats."""
    if "label" not in frame.columns or frame["label"].null_count() == frame.height:
        return StageOutput(frame, decisions([], "balance", True), skipped="no labels")
    column = cfg.label
    if column not in frame.columns:
        raise UserError(
            f"curate.balance.label: no column {column!r} (use 'label' and map it in dataset.fields)"
        )
    labels = frame[column].cast(pl.String)
    counts = {str(k): int(v) for k, v in labels.drop_nulls().value_counts().iter_rows()}
    if not counts:
        ctx.stats["balance"] = {"before": {}, "after": {}, "note": "no labels: nothing to balance"}
        return StageOutput(frame, decisions([], "balance", True))
    check_labels(counts, cfg)
    targets = _targets(counts, cfg)
    rng = np.random.default_rng(cfg.seed)
    ids = frame["sample_id"].to_numpy()
    label_array = labels.to_numpy()
    drop_ids: list[str] = []
    drop_reasons: list[str] = []
    drop_evidence: list[str] = []
    dup_ids: list[str] = []
    dup_refs: list[str] = []
    for label in sorted(counts):
        rows = np.flatnonzero(label_array == label)
        target = targets[label]
        if target < rows.size:
            chosen = rng.permutation(rows.size)[target:]
            drop_ids += ids[rows[np.sort(chosen)]].tolist()
            drop_reasons += [f"over_cap:label={label}"] * chosen.size
            drop_evidence += [f"label {label}: {rows.size} rows, target {target}"] * chosen.size
        elif target > rows.size and cfg.oversample:
            extra = target - rows.size
            sources = rows[
                np.concatenate([rng.permutation(rows.size) for _ in range(extra // rows.size + 1)])[:extra]
            ]
            seen: dict[str, int] = {}
            for source in ids[sources]:
                seen[source] = seen.get(source, 0) + 1
                dup_ids.append(f"{source}{DUP_MARK}{seen[source]}")
                dup_refs.append(source)
    after = {
        label: min(targets[label], counts[label]) if not cfg.oversample else targets[label]
        for label in counts
    }
    ctx.stats["balance"] = {
        "before": counts,
        "after": after,
        "dropped": len(drop_ids),
        "oversampled": len(dup_ids),
    }
    if cfg.max_per_label is not None and not cfg.ratios and not cfg.oversample:
        if cfg.max_per_label >= max(counts.values()):
            # not an error (the data may simply be small), but the report says the cap did nothing
            ctx.stats["balance"]["note"] = (
                f"max_per_label {cfg.max_per_label} is at or above every label's count ({found(counts)}): "
                "nothing capped"
            )
    dropped = decisions(drop_ids, "balance", False, drop_reasons, evidence=drop_evidence)
    duplicated = decisions(
        dup_ids, "balance", True, "oversampled", ref_sample_id=dup_refs,
        evidence=[f"oversampled copy of {ref}" for ref in dup_refs],
    )  # fmt: skip
    out = pl.concat([dropped, duplicated])
    return StageOutput(expand(survivors(frame, out).frame, out), out)


def expand(frame: pl.DataFrame, balance_decisions: pl.DataFrame) -> pl.DataFrame:
    """The frame plus one row per oversampled duplicate (a copy of its source row under the new id)."""
    dups = balance_decisions.filter(pl.col("reason") == "oversampled").select("sample_id", "ref_sample_id")
    if dups.height == 0:
        return frame
    copies = (
        dups.join(frame, left_on="ref_sample_id", right_on="sample_id", how="inner")
        .drop("ref_sample_id")
        .select(frame.columns)
    )
    return pl.concat([frame, copies])
