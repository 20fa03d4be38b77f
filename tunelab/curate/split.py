"""Split stage: seeded train/val split, stratified by label, that never splits a near-duplicate cluster.

Clusters: rows the minhash stage found in one LSH component but kept (their exact Jaccard with the
representative was under the threshold, e.g. paraphrases) share a group id (StageContext.clusters), and
an oversampled copy ('#dup') follows its source row; exact and semantic dedup leave one row per cluster,
their representative. A whole group goes to train or to val, so val never holds a close paraphrase of a
train row. Within each label, groups are shuffled with the seed and moved to val until the label's val
share reaches val_ratio. `group_by: document` (the default for kind raft) also keeps every row of one
golden document (curate/documents.py) on one side, so validation never asks about a document trained on.
The frame comes back with a `split` column; the decisions are the terminal ones:
stage 'final', kept=true, evidence split=train|val. Without a split stage the pipeline ends with
`everything_trains`, the same output with every row in train.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions
from tunelab.curate.config import SplitSettings
from tunelab.curate.documents import golden_documents
from tunelab.errors import UserError

# bookkeeping columns of a curated frame: nothing a user would stratify by
INTERNAL_COLUMNS = {
    "sample_id",
    "dataset",
    "source_row",
    "source_line",
    "field_types",
    "content",
    "content_hash",
}


def check_stratify(frame: pl.DataFrame, cfg: SplitSettings) -> None:
    """A `stratify` column that is not in the data is a typo: said at once, not split without strata."""
    if cfg.stratify and cfg.stratify not in frame.columns:
        columns = sorted(c for c in frame.columns if c not in INTERNAL_COLUMNS and not c.startswith("_"))
        raise UserError(
            f"curate.split.stratify: no column {cfg.stratify!r}; columns: {', '.join(columns)} "
            "(or null for a split without strata)"
        )


def group_by_for(cfg: SplitSettings, kind: str) -> str:
    """The grouping in force: the setting, else `document` for kind raft (RAFT rows sharing a golden
    document would otherwise put that document on both sides), else none."""
    if cfg.group_by is None:
        return "document" if kind == "raft" else "none"
    if cfg.group_by == "document" and kind != "raft":
        raise UserError(
            f"curate.split.group_by: document groups RAFT rows by their golden document; kind {kind} has "
            "no documents (use none)"
        )
    return cfg.group_by


def merged_groups(labels: list[str], documents: list[str | None]) -> list[str]:
    """Each row's group label after joining groups that share a document (union-find over the labels):
    a near-dup cluster and a document group that overlap become one group."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_of: dict[str, str] = {}
    for label, doc in zip(labels, documents, strict=True):
        find(label)
        if doc is None:
            continue
        if doc in first_of:
            a, b = find(first_of[doc]), find(label)
            if a != b:
                parent[b] = a
        else:
            first_of[doc] = label
    return [find(label) for label in labels]


def assign(
    frame: pl.DataFrame,
    cfg: SplitSettings,
    groups: dict[str, str] | None = None,
    documents: list[str | None] | None = None,
) -> pl.Series:
    """'train' or 'val' per row of `frame`; rows with the same entry in `documents` (a golden document per
    row, None for none) share a side."""
    check_stratify(frame, cfg)
    n = frame.height
    if n == 0:
        return pl.Series("split", [], dtype=pl.String)
    groups = groups or {}
    base_ids = frame["sample_id"].str.replace(r"#dup\d+$", "")  # an oversampled copy follows its source
    labels = [groups.get(s, s) for s in base_ids.to_list()]
    if documents is not None:
        labels = merged_groups(labels, documents)
    group = pl.Series(labels)
    if cfg.stratify:
        strata = frame[cfg.stratify].cast(pl.String).fill_null("(none)")
    else:
        strata = pl.Series(["(all)"] * n)
    table = pl.DataFrame({"group": group, "stratum": strata})
    # a group's stratum is its first row's
    per_group = table.group_by("group", maintain_order=True).agg(pl.col("stratum").first(), size=pl.len())
    rng = np.random.default_rng(cfg.seed)
    val_groups: set[str] = set()
    for _, part in per_group.group_by("stratum", maintain_order=True):
        want = int(round(cfg.val_ratio * part["size"].sum()))
        if want == 0:
            continue
        order = rng.permutation(part.height)
        names, sizes = part["group"].to_numpy(), part["size"].to_numpy()
        taken = 0
        for k in order:
            if taken >= want:
                break
            if taken + sizes[k] > want and taken > 0:
                continue  # a big cluster would overshoot: try smaller ones
            val_groups.add(str(names[k]))
            taken += int(sizes[k])
    return pl.Series("split", ["val" if g in val_groups else "train" for g in group.to_list()])


def terminal(frame: pl.DataFrame, split: pl.Series) -> StageOutput:
    """`frame` with its `split` column and one terminal decision per row."""
    final = decisions(frame["sample_id"], "final", True, None, evidence="split=" + split)
    return StageOutput(frame.with_columns(split.alias("split")), final)


def run(frame: pl.DataFrame, cfg: SplitSettings, ctx: StageContext) -> StageOutput:
    grouping = group_by_for(cfg, ctx.kind)
    documents = golden_documents(frame) if grouping == "document" else None  # row by row
    return decide(frame, cfg, ctx, documents)


def decide(
    frame: pl.DataFrame, cfg: SplitSettings, ctx: StageContext, documents: list[str | None] | None
) -> StageOutput:
    """The global half of the stage, shared by both executors: the seeded walk over groups. It reads only
    `sample_id` and the `stratify` column of `frame` (plus `documents`, one per row), so the Ray executor
    hands it those narrow columns and joins the `split` column back on the cluster."""
    split = assign(frame, cfg, ctx.clusters, documents)
    ctx.stats["split"] = {"train": int((split == "train").sum()), "val": int((split == "val").sum())}
    if documents is not None:
        # the promise of group_by: document, counted: no golden document on both sides
        sides: dict[str, set[str]] = {}
        for doc, side in zip(documents, split.to_list(), strict=True):
            if doc is not None:
                sides.setdefault(doc, set()).add(side)
        ctx.stats["split"]["group_by"] = "document"
        ctx.stats["split"]["documents"] = len(sides)
        ctx.stats["split"]["rows_without_document"] = sum(doc is None for doc in documents)
        ctx.stats["split"]["documents_on_both_sides"] = sum(len(s) > 1 for s in sides.values())
    if cfg.stratify and frame.height:
        # per stratum: what a stratified split is for, and where a label-normalisation problem shows
        table = pl.DataFrame(
            {"stratum": frame[cfg.stratify].cast(pl.String).fill_null("(none)"), "split": split}
        )
        ctx.stats["split"]["by_" + cfg.stratify] = {
            str(stratum): {
                "train": int((part["split"] == "train").sum()),
                "val": int((part["split"] == "val").sum()),
            }
            for (stratum,), part in table.group_by("stratum", maintain_order=True)
        }
    return terminal(frame, split)


def everything_trains(frame: pl.DataFrame) -> StageOutput:
    """The terminal step when no split stage ran: every row goes to train."""
    return terminal(frame, pl.Series("split", ["train"] * frame.height, dtype=pl.String))
