"""Two curations side by side, pure: per-sample outcomes and reason counts in, a `CurationDiff` out.

`tunelab diff A B` and the dashboard's Diff page read their inputs from the warehouse
(store.curation_outcomes / store.curation_reason_counts) and hand them here; nothing in this module reads
or writes anything.

How rows are paired. A sample id is `<dataset name>:<source row>` (records/loader.py): it names a row by its
position, so an inserted line renumbers every row below it, and a renamed dataset renames every id. Rows
are therefore paired the way a text diff pairs lines, in three passes:
1. the two sequences of content hashes, in source order, are aligned like a text diff (patience diff:
   texts found once on each side anchor the alignment, difflib's matching blocks fill the gaps between
   anchors), which pairs unchanged rows even when lines were inserted or deleted above them, and pairs
   repeated texts copy by copy in order;
2. what is left is paired by content hash, k-th copy with k-th copy (rows that moved);
3. what is still left is paired by sample id: the same row with another text (`content_changed`: the file
   was edited there, or a stage rewrote the text on one side only: other normalize settings, pii masking,
   since the warehouse keeps the text as curated).
Unpaired rows were added (only in B) or removed (only in A).
"""

from __future__ import annotations

import bisect
import difflib
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl

# change codes (stable: JSON and tests use them) and how people read them
CHANGES = {
    "kept_to_dropped": "kept → dropped",
    "dropped_to_kept": "dropped → kept",
    "reason_changed": "dropped for another reason",
}
CURATION_FIELDS = ("curation_id", "dataset", "kind", "read", "kept", "dropped", "quarantined")
OUTCOME_COLUMNS = ("sample_id", "content_hash", "outcome", "stage", "reason", "evidence", "split")
CHANGE_COLUMNS = (
    "change", "sample_id_a", "sample_id_b", "paired_by",
    "stage_a", "reason_a", "evidence_a", "stage_b", "reason_b", "evidence_b",
)  # fmt: skip
SIDE_COLUMNS = ("sample_id", "outcome", "stage", "reason")


@dataclass
class CurationDiff:
    a: dict[str, Any]  # the two curations' rows (CURATION_FIELDS)
    b: dict[str, Any]
    paired_by_id: int
    paired_by_content: int
    content_changed: int  # paired by id, different content hash
    split_changed: int  # kept on both sides, train on one and val on the other
    change_counts: dict[str, int]  # code -> rows (every code present, 0 included)
    changes: pl.DataFrame  # CHANGE_COLUMNS, one row per paired sample whose decision changed
    added: pl.DataFrame  # SIDE_COLUMNS: rows only B read
    removed: pl.DataFrame  # SIDE_COLUMNS: rows only A read
    reasons: pl.DataFrame  # stage, reason, kept, a, b, delta
    notes: list[str] = field(default_factory=list)

    def as_dict(self, limit: int | None = 50) -> dict[str, Any]:
        """Plain data for `--format json`: every count, and at most `limit` rows of each list (None: all)."""

        def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
            return (frame if limit is None else frame.head(limit)).to_dicts()

        return {
            "a": self.a,
            "b": self.b,
            "paired": {
                "by_id": self.paired_by_id,
                "by_content": self.paired_by_content,
                "content_changed": self.content_changed,
            },
            "added": self.added.height,
            "removed": self.removed.height,
            "changes": self.change_counts,
            "split_changed": self.split_changed,
            "reasons": self.reasons.to_dicts(),
            "changed_rows": rows(self.changes),
            "added_rows": rows(self.added),
            "removed_rows": rows(self.removed),
            "notes": self.notes,
        }


def _outcomes(frame: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in OUTCOME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"outcomes frame lacks {missing}; it has {frame.columns}")
    return frame.select(OUTCOME_COLUMNS).with_columns(pl.int_range(pl.len()).alias("order"))


# a gap between two anchors is aligned with difflib only up to this many cells (rows of A x rows of B):
# difflib is quadratic at worst, and the rows of a larger gap are still paired by the two passes after
GAP_CELLS = 4_000_000


def _increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of `pairs` (sorted by i) whose j increase as well (patience sorting)."""
    tail_j: list[int] = []  # tail_j[k]: the smallest j that ends an increasing run of length k + 1
    tail_at: list[int] = []  # ... and the index of that pair
    before = [-1] * len(pairs)
    for index, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tail_j, j)
        if k:
            before[index] = tail_at[k - 1]
        if k == len(tail_j):
            tail_j.append(j)
            tail_at.append(index)
        else:
            tail_j[k], tail_at[k] = j, index
    run, index = [], tail_at[-1] if tail_at else -1
    while index >= 0:
        run.append(pairs[index])
        index = before[index]
    return run[::-1]


def _aligned(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """(i, j) row positions of A and B paired by aligning their content hashes in source order.

    Patience diff: the texts found exactly once in A and once in B, in an order both files agree on, are
    anchors (near-linear on a million rows, where difflib alone went quadratic); each gap between two
    anchors is then aligned with difflib's matching blocks, which pairs repeated texts copy by copy."""
    a_hash = [h if h is not None else f"a:{i}" for i, h in enumerate(a["content_hash"].to_list())]
    b_hash = [h if h is not None else f"b:{j}" for j, h in enumerate(b["content_hash"].to_list())]
    in_a, in_b = Counter(a_hash), Counter(b_hash)
    unique_b = {h: j for j, h in enumerate(b_hash) if in_b[h] == 1}
    anchors = _increasing([(i, unique_b[h]) for i, h in enumerate(a_hash) if in_a[h] == 1 and h in unique_b])
    i_found, j_found = [i for i, _ in anchors], [j for _, j in anchors]
    bounds = [(-1, -1), *anchors, (len(a_hash), len(b_hash))]
    for (i0, j0), (i1, j1) in itertools.pairwise(bounds):
        gap_a, gap_b = a_hash[i0 + 1 : i1], b_hash[j0 + 1 : j1]
        if not gap_a or not gap_b or len(gap_a) * len(gap_b) > GAP_CELLS:
            continue
        for block in difflib.SequenceMatcher(None, gap_a, gap_b, autojunk=False).get_matching_blocks():
            i_found.extend(range(i0 + 1 + block.a, i0 + 1 + block.a + block.size))
            j_found.extend(range(j0 + 1 + block.b, j0 + 1 + block.b + block.size))
    return pl.DataFrame(
        {"order": i_found, "order_b": j_found}, schema={"order": pl.Int64, "order_b": pl.Int64}
    )


def _by_copy(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """(i, j) of rows with equal content hashes, the k-th copy in A with the k-th in B (source order)."""

    def ranked(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("content_hash").is_not_null()).with_columns(
            pl.col("order").rank("ordinal").over("content_hash").alias("copy")
        )

    joined = ranked(a).join(ranked(b), on=["content_hash", "copy"], suffix="_b")
    return joined.select("order", "order_b")


def _by_id(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    return a.join(b, on="sample_id", suffix="_b").select("order", "order_b")


def _pairs(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Every pair (A row, B row) with both sides' columns (B's suffixed _b), in B's order."""
    found = [_aligned(a, b)]
    for step in (_by_copy, _by_id):
        taken = pl.concat(found)
        rest_a = a.join(taken.select("order"), on="order", how="anti")
        rest_b = b.join(taken.select(pl.col("order_b").alias("order")), on="order", how="anti")
        found.append(step(rest_a, rest_b))
    return (
        pl.concat(found)
        .join(a, on="order")
        .join(b.rename({c: f"{c}_b" for c in b.columns}), on="order_b")
        .sort("order_b")
    )


def _change_code(pairs: pl.DataFrame) -> pl.Expr:
    dropped_a = pl.col("outcome") == "dropped"
    dropped_b = pl.col("outcome_b") == "dropped"
    same_reason = (pl.col("stage") == pl.col("stage_b")) & pl.col("reason").eq_missing(pl.col("reason_b"))
    return (
        pl.when(~dropped_a & dropped_b)
        .then(pl.lit("kept_to_dropped"))
        .when(dropped_a & ~dropped_b)
        .then(pl.lit("dropped_to_kept"))
        .when(dropped_a & dropped_b & ~same_reason)
        .then(pl.lit("reason_changed"))
        .otherwise(None)
        .alias("change")
    )


def _reason_table(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    keys = ["stage", "reason", "kept"]
    schema = {"stage": pl.String, "reason": pl.String, "kept": pl.Boolean, "n": pl.Int64}

    def counts(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(keys + ["n"]).cast(schema) if frame.height else pl.DataFrame(schema=schema)

    table = (
        counts(a).rename({"n": "a"}).join(counts(b).rename({"n": "b"}), on=keys, how="full", coalesce=True)
    )
    table = table.with_columns(pl.col("a").fill_null(0), pl.col("b").fill_null(0))
    table = table.with_columns((pl.col("b") - pl.col("a")).alias("delta"))
    # drops first, the biggest movers on top
    return table.sort(
        [pl.col("kept"), pl.col("delta").abs(), "stage", "reason"],
        descending=[False, True, False, False],
        nulls_last=True,
    )


def diff_curations(
    a_info: dict[str, Any],
    a_outcomes: pl.DataFrame,
    a_reasons: pl.DataFrame,
    b_info: dict[str, Any],
    b_outcomes: pl.DataFrame,
    b_reasons: pl.DataFrame,
) -> CurationDiff:
    """Compare curation A (before) with B (after): rows added and removed, decisions that changed with both
    reasons, and rows per reason on each side. Outcomes: one row per sample read (store.curation_outcomes);
    reasons: rows per (stage, reason, kept) (store.curation_reason_counts)."""
    a, b = _outcomes(a_outcomes), _outcomes(b_outcomes)
    pairs = _pairs(a, b)
    pairs = pairs.with_columns(
        pl.when(pl.col("sample_id") == pl.col("sample_id_b"))
        .then(pl.lit("id"))
        .otherwise(pl.lit("content"))
        .alias("paired_by")
    )
    added = b.join(pairs.select(pl.col("order_b").alias("order")), on="order", how="anti")
    removed = a.join(pairs.select("order"), on="order", how="anti")
    pairs = pairs.with_columns(_change_code(pairs))
    changes = (
        pairs.filter(pl.col("change").is_not_null())
        .with_columns(pl.col("change").replace_strict(list(CHANGES), range(len(CHANGES))).alias("rank"))
        .sort(["rank", "order_b"])
        .select(
            "change",
            pl.col("sample_id").alias("sample_id_a"),
            "sample_id_b",
            "paired_by",
            pl.col("stage").alias("stage_a"),
            pl.col("reason").alias("reason_a"),
            pl.col("evidence").alias("evidence_a"),
            "stage_b",
            "reason_b",
            "evidence_b",
        )  # fmt: skip
    )
    counted = dict(changes["change"].value_counts().iter_rows())
    both_kept = pairs.filter((pl.col("outcome") == "kept") & (pl.col("outcome_b") == "kept"))
    content_changed = pairs.filter(~pl.col("content_hash").eq_missing(pl.col("content_hash_b"))).height
    split_changed = both_kept.filter(~pl.col("split").eq_missing(pl.col("split_b"))).height

    notes = []
    if a_info.get("dataset") != b_info.get("dataset"):
        notes.append(
            f"different datasets ({a_info.get('dataset')} / {b_info.get('dataset')}): sample ids differ, "
            "rows were paired by content only"
        )
    if content_changed:
        notes.append(
            f"{content_changed:,} rows paired by sample id have another text: the file changed there, "
            "or a stage rewrote it on one side only (normalize settings, pii masking)"
        )
    quarantined = (a_info.get("quarantined") or 0, b_info.get("quarantined") or 0)
    if quarantined[0] != quarantined[1]:
        notes.append(
            f"quarantined lines {quarantined[0]:,} → {quarantined[1]:,}: a row quarantined on one side "
            "only counts as added or removed"
        )
    return CurationDiff(
        a={k: a_info.get(k) for k in CURATION_FIELDS},
        b={k: b_info.get(k) for k in CURATION_FIELDS},
        paired_by_id=int((pairs["paired_by"] == "id").sum()),
        paired_by_content=int((pairs["paired_by"] == "content").sum()),
        content_changed=content_changed,
        split_changed=split_changed,
        change_counts={code: int(counted.get(code, 0)) for code in CHANGES},
        changes=changes,
        added=added.select(SIDE_COLUMNS),
        removed=removed.select(SIDE_COLUMNS),
        reasons=_reason_table(a_reasons, b_reasons),
        notes=notes,
    )
