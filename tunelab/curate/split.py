"""Split stage: seeded train/val split, stratified by label, that never splits a near-duplicate cluster.

Clusters: rows the minhash stage found in one LSH component but kept (their exact Jaccard with the
representative was under the threshold, e.g. paraphrases) share a group id (StageContext.clusters), and
an oversampled copy ('#dup') follows its source row; exact and semantic dedup leave one row per cluster,
their representative. A whole group goes to train or to val, so val never holds a close paraphrase of a
train row. Within each label, groups are shuffled with the seed and moved to val until the label's val
share reaches val_ratio. The frame comes back with a `split` column; the decisions are the terminal ones:
stage 'final', kept=true, evidence split=train|val. Without a split stage the pipeline ends with
`everything_trains`, the same output with every row in train.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions
from tunelab.curate.config import SplitSettings
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


def assign(frame: pl.DataFrame, cfg: SplitSettings, groups: dict[str, str] | None = None) -> pl.Series:
    """'train' or 'val' per row of `frame`."""
    check_stratify(frame, cfg)
    n = frame.height
    if n == 0:
        return pl.Series("split", [], dtype=pl.String)
    groups = groups or {}
    base_ids = frame["sample_id"].str.replace(r"#dup\d+$", "")  # an oversampled copy follows its source
    group = pl.Series([groups.get(s, s) for s in base_ids.to_list()])
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
    split = assign(frame, cfg, ctx.clusters)
    ctx.stats["split"] = {"train": int((split == "train").sum()), "val": int((split == "val").sum())}
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
