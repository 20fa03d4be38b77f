"""semantic, balance and split on a Ray cluster, with the local stages' own decisions.

- **semantic**: the driver (which holds the rows in this executor) computes each row's budgeted text and
  cache key as the local stage does, looks the keys up in the workspace's embedding cache
  (embeddings/loader.py) and plans the misses' batches exactly as the local stage cuts them
  (semantic.encode_plan: use-v3 quantises activations per batch, so a vector depends on its
  batch-mates); the distinct missing texts, whole planned batches per block, go through `map_batches` in
  an actor pool (`ActorPoolStrategy`: each actor loads the embedder once); only (key, vector) comes back.
  The driver appends them to the cache as the local stage does and runs semantic.decide (neighbour
  search + greedy keep), the local stage's own code.
- **balance** and **split**: `map_batches` projects the narrow columns a decision reads (sample id,
  `_order`, the label / stratify column, the golden document for `group_by: document`); balance.run and
  split.decide decide on that narrow frame on the driver; the plan (`_order` -> new id and order, or
  `_order` -> split) is joined back to the full rows on the cluster. Oversampled '#dup' copies are the
  join of the chosen source rows: one source row meets each of its copies' plan rows.

`run_grouped` and the functions it calls take the driver frame that ray.run_stages holds between steps (the
rows-on-driver path); `balance_blocks` and `split_blocks` take object refs of blocks (ray.curate_blocks:
the rows never come to the driver, only the narrow columns do). What the driver *receives* for the
decision is recorded in DRIVER_FRAMES (columns, rows, bytes), and on the blocks path every frame of row
data in DRIVER_FETCHES, for tests and benchmarks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from tunelab.curate import balance, semantic, split
from tunelab.curate.common import StageContext, StageOutput, with_content
from tunelab.curate.config import CurateConfig
from tunelab.curate.documents import golden_documents
from tunelab.embeddings.loader import cache_fill, cache_lookup, cache_path, normalise_rows, text_keys
from tunelab.progress import progress

ORDER = "_order"  # as executors/ray.py: each row's place in the local order
GROUPED = ("semantic", "balance", "split")
KEY, BATCH, POSITION, TEXT, VECTOR = "_key", "_batch", "_pos", "_text", "_vector"
NEW_ID, NEW_ORDER, DOCUMENT = "_new_id", "_new_order", "_document"

# per stage, what the driver received in this process's last grouped run: columns, rows, bytes
DRIVER_FRAMES: dict[str, dict[str, Any]] = {}
# ray.curate_blocks: every frame of row data the driver received in this process's last run, per step
# (columns, rows); tests/test_ray_executor.py checks that no text column comes with more than a report's rows
DRIVER_FETCHES: list[dict[str, Any]] = []


def fetched(step: str, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (row data the driver received), recorded in DRIVER_FETCHES."""
    DRIVER_FETCHES.append({"step": step, "columns": list(frame.columns), "rows": frame.height})
    return frame


def run_grouped(
    name: str, frame: pl.DataFrame, curate: CurateConfig, ctx: StageContext, blocks: int
) -> StageOutput:
    """Stage `name` (one of GROUPED) on the cluster; the same StageOutput as registry.run_stage."""
    if name == "semantic":
        if "content_hash" not in frame.columns:  # as registry.run_stage does for a needs_content stage
            frame = with_content(frame, ctx.kind)
        return semantic_on_ray(frame, curate, ctx, blocks)
    if name == "balance":
        return balance_on_ray(frame, curate, ctx, blocks)
    if name == "split":
        return split_on_ray(frame, curate, ctx, blocks)
    raise ValueError(f"stage {name!r} is not grouped on Ray")


def positioned(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with `_order` = each row's position in it: the order the local function sees, whatever an
    earlier step of the driver segment left in `_order` (ray.run_stages renumbers it after the segment)."""
    return frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER))


def _dataset(frame: pl.DataFrame, blocks: int) -> Any:
    import ray.data

    size = max(1, -(-frame.height // blocks))
    return ray.data.from_arrow([frame.slice(k, size).to_arrow() for k in range(0, frame.height, size)])


def _collect(data: Any) -> pl.DataFrame:
    """Every block to the driver, in `_order` (or the new order where a plan set one)."""
    import ray

    parts = [pl.from_arrow(t) for t in ray.get(data.to_arrow_refs())]
    parts = [p for p in parts if isinstance(p, pl.DataFrame) and p.width]
    return pl.concat(parts, how="vertical_relaxed")


def _record(stage: str, narrow: pl.DataFrame, frame: pl.DataFrame, extra: int = 0) -> None:
    rows = max(frame.height, 1)
    DRIVER_FRAMES[stage] = {
        "columns": narrow.columns,
        "rows": narrow.height,
        "bytes_per_row": round((narrow.estimated_size() + extra) / rows, 1),
        # what a driver step over the full rows holds: the executor's driver stages before this module
        "full_bytes_per_row": round(frame.estimated_size() / rows, 1),
    }


# ---------------------------------------------------------------- semantic

# planned batches per block sent to the pool: one actor call embeds several, amortising Ray Data's per-call cost
BATCHES_PER_BLOCK = 8


class Encoder:
    """One actor of the pool: loads the embedder once; each call embeds the planned batches of one block,
    each batch on its own (the local stage's batch, in its order), and returns (key, vector)."""

    def __init__(self, model: str, batch_size: int) -> None:
        self.embedder = semantic.LengthBucketed(semantic.embedder_for(model))
        self.batch_size = batch_size

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = pl.from_arrow(table).unique(KEY, keep="first").sort(POSITION)
        parts = []
        for (_,), batch in rows.group_by(BATCH, maintain_order=True):
            # embed_cached normalises what the embedder returns, so do we
            parts.append(
                normalise_rows(self.embedder.encode(batch[TEXT].to_list(), batch_size=self.batch_size))
            )
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), np.float32)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        return pa.table(
            {KEY: rows[KEY].to_arrow(), VECTOR: pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}
        )


def semantic_on_ray(frame: pl.DataFrame, curate: CurateConfig, ctx: StageContext, blocks: int) -> StageOutput:
    """semantic with its embeddings computed by an actor pool; decisions by semantic.decide on the driver.

    The driver computes each row's budgeted text and cache key (the local stage's embed does the same),
    looks them up in the workspace cache and plans the misses into the local stage's batches; only the
    distinct missing texts go to the pool, grouped by planned batch (no shuffle: the rows are on the
    driver in this executor), and only (key, vector) comes back."""
    import ray
    import ray.data

    cfg = curate.semantic
    inner = semantic.embedder_for(cfg.model)  # its name and size name the cache file, as locally
    name, dim = inner.name, inner.dim
    started = time.perf_counter()
    texts = semantic.budget_texts(frame["content"].fill_null("").to_list(), cfg.max_tokens)
    keys = text_keys(name, texts)
    path = cache_path(ctx.cache_dir, name, dim) if ctx.cache_dir is not None else None
    found = cache_lookup(keys, dim, path)
    miss_rows = np.flatnonzero(~found.hit)[found.first_index]  # one row per miss key, in miss_keys order
    lengths = np.fromiter((len(texts[i]) for i in miss_rows), dtype=np.int64, count=miss_rows.size)
    batch, position = semantic.encode_plan(found.miss_keys, lengths, cfg.batch_size)
    new_vectors = np.zeros((0, dim), np.float32)
    actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    got = pl.DataFrame()
    if found.miss_keys.size:
        with progress(ctx.show_progress) as bar:
            task = bar.add_task(f"semantic on ray: embedding {found.miss_keys.size:,} texts", total=None,
                                status=f"up to {actors} actors")  # fmt: skip
            plan = pl.DataFrame(
                {
                    BATCH: batch,
                    POSITION: position,
                    KEY: pl.Series(found.miss_keys, dtype=pl.UInt64),
                    TEXT: [texts[i] for i in miss_rows],
                }
            ).sort(POSITION)
            per_block = BATCHES_PER_BLOCK * cfg.batch_size  # whole planned batches in every block
            tables = [plan.slice(k, per_block).to_arrow() for k in range(0, plan.height, per_block)]
            embedded = ray.data.from_arrow(tables).map_batches(
                Encoder,
                batch_format="pyarrow",
                batch_size=None,
                fn_constructor_kwargs={"model": cfg.model, "batch_size": cfg.batch_size},
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            )
            got = _collect(embedded).sort(KEY)  # np.unique's order: the cache appends them so locally
            bar.update(task, status="done")
        if not np.array_equal(got[KEY].to_numpy(), found.miss_keys):
            raise RuntimeError("semantic on ray: embedded keys differ from the planned ones; a tunelab bug")
        new_vectors = np.asarray(got[VECTOR].to_numpy(), dtype=np.float32).reshape(-1, dim)
    vectors = cache_fill(found, new_vectors)
    _record("semantic", got, frame)
    DRIVER_FRAMES["semantic"].update(
        embedded=int(found.miss_keys.size), cached=int(found.hit.sum()), actors=actors,
        embed_seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip
    return semantic.decide(frame, vectors, cfg, ctx)


# ---------------------------------------------------------------- balance and split


def select_batch(table: pa.Table, columns: list[str], documents: bool = False) -> pa.Table:
    """The narrow columns a decision reads; with `documents`, each row's golden document (row by row)."""
    frame = pl.from_arrow(table)
    narrow = frame.select(columns)
    if documents:
        narrow = narrow.with_columns(pl.Series(DOCUMENT, golden_documents(frame), dtype=pl.String))
    return narrow.to_arrow()


def join_batch(table: pa.Table, plan: pa.Table, columns: list[str]) -> pa.Table:
    """The block's rows joined to the driver's plan on `_order`: rows the plan leaves out are dropped, a row
    it names twice (an oversampled source) comes out once per plan row, under the plan's id and order."""
    frame = pl.from_arrow(table)
    joined = frame.join(pl.from_arrow(plan), on=ORDER, how="inner")
    if NEW_ID in joined.columns:
        joined = joined.with_columns(pl.col(NEW_ID).alias("sample_id"), pl.col(NEW_ORDER).alias(ORDER))
    return joined.select(columns).to_arrow()


def _join_back(data: Any, plan: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    joined = data.map_batches(
        join_batch,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"plan": plan.to_arrow(), "columns": columns},
    )
    return _collect(joined).sort(ORDER)


def balance_on_ray(frame: pl.DataFrame, curate: CurateConfig, ctx: StageContext, blocks: int) -> StageOutput:
    """balance.run on (sample_id, _order, label columns); drops and '#dup' copies joined back on the cluster."""
    cfg = curate.balance
    frame = positioned(frame)
    data = _dataset(frame, blocks)
    columns = ["sample_id", ORDER] + [c for c in dict.fromkeys(("label", cfg.label)) if c in frame.columns]
    narrow = _collect(
        data.map_batches(
            select_batch, batch_format="pyarrow", batch_size=None, fn_kwargs={"columns": columns}
        )
    ).sort(ORDER)
    _record("balance", narrow, frame)
    out = balance.run(narrow, cfg, ctx)
    if out.skipped or out.decisions.height == 0:
        return StageOutput(frame, out.decisions, skipped=out.skipped)
    # out.frame: the survivors then the copies, in the local order; a copy carries its source's _order
    plan = out.frame.select(
        ORDER,
        pl.col("sample_id").alias(NEW_ID),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(NEW_ORDER),
    )
    return StageOutput(_join_back(data, plan, frame.columns), out.decisions)


def split_on_ray(frame: pl.DataFrame, curate: CurateConfig, ctx: StageContext, blocks: int) -> StageOutput:
    """split.decide on (sample_id, _order, stratify column, golden document); the split joined back."""
    cfg = curate.split
    grouping = split.group_by_for(cfg, ctx.kind)
    split.check_stratify(frame.head(0), cfg)  # the message lists the full frame's columns, as locally
    columns = list(dict.fromkeys(["sample_id", ORDER] + ([cfg.stratify] if cfg.stratify else [])))
    frame = positioned(frame)
    data = _dataset(frame, blocks)
    narrow = _collect(
        data.map_batches(
            select_batch,
            batch_format="pyarrow",
            batch_size=None,
            fn_kwargs={"columns": columns, "documents": grouping == "document"},
        )
    ).sort(ORDER)
    _record("split", narrow, frame)
    documents = narrow[DOCUMENT].to_list() if grouping == "document" else None
    out = split.decide(narrow.select(columns), cfg, ctx, documents)
    plan = pl.DataFrame({ORDER: narrow[ORDER], "split": out.frame["split"]})
    return StageOutput(_join_back(data, plan, [*frame.columns, "split"]), out.decisions)


# ---------------------------------------------------------------- on blocks (the rows stay on the cluster)
#
# ray.curate_blocks holds no rows on the driver: the input is a list of object refs of Arrow blocks, each
# sorted by `_order`, block k's orders below block k+1's. The narrow columns come to the driver (recorded in
# DRIVER_FRAMES), the stage's own function decides on them, and the plan goes back to every block as one
# object in the object store.


def _nbytes(table: pa.Table) -> int:
    return int(table.nbytes)


def _record_blocks(ray: Any, stage: str, narrow: pl.DataFrame, refs: list[Any]) -> None:
    """_record with the full rows' size measured on the blocks (they are not on the driver)."""
    full = sum(ray.get([ray.remote(_nbytes).remote(r) for r in refs]))
    rows = max(narrow.height, 1)
    DRIVER_FRAMES[stage] = {
        "columns": narrow.columns,
        "rows": narrow.height,
        "bytes_per_row": round(narrow.estimated_size() / rows, 1),
        "full_bytes_per_row": round(full / rows, 1),
    }


def narrow_of(ray: Any, refs: list[Any], columns: list[str], documents: bool = False) -> pl.DataFrame:
    """The narrow columns of every block, in `_order`."""
    select = ray.remote(select_batch)
    parts = [pl.from_arrow(t) for t in ray.get([select.remote(r, columns, documents) for r in refs])]
    frames = [p for p in parts if isinstance(p, pl.DataFrame) and p.width]
    return fetched("narrow columns", pl.concat(frames, how="vertical_relaxed").sort(ORDER))


def balance_block(table: pa.Table, plan: pa.Table, survivors: int) -> list[pa.Table]:
    """One block joined to balance's plan: (its survivors under their new `_order`, its oversampled copies);
    the survivors keep the block's place in the order, the copies come after every survivor."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    joined = frame.join(pl.from_arrow(plan), on=ORDER, how="inner")  # type: ignore[arg-type]
    joined = joined.with_columns(pl.col(NEW_ID).alias("sample_id"), pl.col(NEW_ORDER).alias(ORDER))
    joined = joined.select(frame.columns).sort(ORDER)
    return [
        joined.filter(pl.col(ORDER) < survivors).to_arrow(),
        joined.filter(pl.col(ORDER) >= survivors).to_arrow(),
    ]


def concat_block(*tables: pa.Table) -> pa.Table:
    """Pieces of rows as one block in `_order`."""
    frames = [pl.from_arrow(t) for t in tables if t.num_rows]
    if not frames:
        return tables[0]
    return pl.concat(frames, how="vertical_relaxed").sort(ORDER).to_arrow()  # type: ignore[arg-type]


def balance_blocks(
    ray: Any, refs: list[Any], head: pl.DataFrame, curate: CurateConfig, ctx: StageContext
) -> tuple[StageOutput, list[Any] | None]:
    """balance.run on (sample_id, `_order`, label columns); returns its output (frame: the narrow plan) and
    the new blocks (None: unchanged): each block's survivors, then one block of the '#dup' copies."""
    import ray as ray_module

    cfg = curate.balance
    columns = ["sample_id", ORDER] + [c for c in dict.fromkeys(("label", cfg.label)) if c in head.columns]
    narrow = narrow_of(ray, refs, columns)
    _record_blocks(ray, "balance", narrow, refs)
    out = balance.run(narrow, cfg, ctx)
    if out.skipped or out.decisions.height == 0:
        return out, None
    survivors = narrow.height - int((~out.decisions["kept"]).sum())  # balance appends its copies last
    plan = ray_module.put(
        out.frame.select(
            ORDER,
            pl.col("sample_id").alias(NEW_ID),
            pl.int_range(pl.len(), dtype=pl.Int64).alias(NEW_ORDER),
        ).to_arrow()
    )
    split_task = ray.remote(balance_block).options(num_returns=2)
    joined = [split_task.remote(r, plan, survivors) for r in refs]
    blocks = [j[0] for j in joined]
    if out.frame.height > survivors:
        blocks.append(ray.remote(concat_block).remote(*[j[1] for j in joined]))
    return out, blocks


def split_block(table: pa.Table, plan: pa.Table) -> pa.Table:
    """One block with its `split` column from the plan (`_order` -> split)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    joined = frame.join(pl.from_arrow(plan), on=ORDER, how="inner")  # type: ignore[arg-type]
    return joined.select(*frame.columns, "split").sort(ORDER).to_arrow()


def split_blocks(
    ray: Any, refs: list[Any], head: pl.DataFrame, curate: CurateConfig, ctx: StageContext
) -> tuple[StageOutput, list[Any]]:
    """split.decide on (sample_id, `_order`, stratify column, golden document); the split joined to every
    block on the cluster."""
    cfg = curate.split
    grouping = split.group_by_for(cfg, ctx.kind)
    split.check_stratify(head, cfg)  # the message lists the full frame's columns, as locally
    columns = list(dict.fromkeys(["sample_id", ORDER] + ([cfg.stratify] if cfg.stratify else [])))
    narrow = narrow_of(ray, refs, columns, documents=grouping == "document")
    _record_blocks(ray, "split", narrow, refs)
    documents = narrow[DOCUMENT].to_list() if grouping == "document" else None
    out = split.decide(narrow.select(columns), cfg, ctx, documents)
    plan = ray.put(pl.DataFrame({ORDER: narrow[ORDER], "split": out.frame["split"]}).to_arrow())
    task = ray.remote(split_block)
    return out, [task.remote(r, plan) for r in refs]
