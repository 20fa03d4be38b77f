"""The Ray executor (`curate.executor: ray`): the same stage functions as the local loop, over a Ray cluster.

Two paths, chosen by the recipe's stages (`off_driver`):

**Rows off the driver** (`curate_blocks`; every stage row-local, exact, minhash, balance or split, and no
`length.tokenizer`). The rows stay in the object store from the sharded read to the written outputs, as a
list of object refs of Arrow blocks, each sorted by a hidden `_order` column (the row's place in the frame
the local loop would see), block k's orders below block k+1's:

- **Reading**: one Ray task per data file, the tunelab loader on that file (encodings, field maps, the
  quarantine and source lines are the loader's); the block stays in the object store, only counts, the
  quarantine and the distinct labels come back. The driver settles `_order` offsets and the 0/1 <->
  false/true label pairing from those, and the first task per block applies them, writes the block's
  warehouse samples shard and runs the first row-local stages.
- **Row-local stages** run per block with their own `run` (`run_batch`); decisions, signals and per-stage
  counts go to Parquet/JSON shards named by (segment, stage, first `_order`), so the shards sort into the
  local order.
- **exact / minhash** (executors/ray_minhash.py `exact_blocks`, `minhash_blocks`) shuffle only key hashes,
  band keys and edges; the driver receives the plan: the `_order`s to drop and their decision rows (sample
  ids looked up on the blocks for the drops, their representatives and the rows of LSH components). The
  plan goes to every block as one object and each block filters itself on the cluster.
- **balance / split** (executors/ray_groups.py `balance_blocks`, `split_blocks`) decide on narrow columns
  (sample id, `_order`, label / stratify column, golden document) on the driver with the stages' own
  functions; the plan is joined to every block on the cluster ('#dup' copies become one more block).
- **Outputs**: each worker writes its block's train/val part, (sample id, content hash) for the data
  version and, without a split stage, the terminal decisions. The driver streams the parts into the one
  train/val Parquet and JSON-lines file each (polars' `sink_*`, a row group at a time: a worker cannot
  append to one file that another writes, and the folder's format is one file per side), and the
  warehouse ingest reads the samples, decisions and signals shards by their globs in the one transaction
  (store.ingest_curation). The report's reasons are counted over the decision shards; its largest
  clusters' texts (at most 20 x ~11 rows) are read again from the source files by id, so the read blocks
  leave the object store after the first pass.
- What the driver still holds, per row: the narrow columns balance and split decide on (~20 B), split's
  decisions (one per kept row, written to a shard at once), the kept (sample id, content hash) for the
  data version (~40 B; a digest over the sorted ids, sequential by definition), per-field character
  lengths for the report (8 B a field), and arrays over the rows in an LSH component. DRIVER_FETCHES
  lists every frame of row data it received in the last run (the report's `stage_stats.executor`).
  With `write=False` (tests, audit) the decisions, signals and splits are read back into the result, as
  the local executor returns them; a written curation's result carries no decisions frame (they are in
  decisions.parquet and the warehouse).

**Rows on the driver** (`prepare` + `run_stages`; recipes with pairs, decontaminate, semantic, or
length with a tokenizer): the driver collects the loaded rows and holds the frame between steps.

- Row-local segments go out in `map_batches` (`_on_ray`) and the survivors come back; exact and minhash
  run on the cluster from the driver's frame (`ray_minhash.exact_narrow`, `minhash_on_ray`); semantic's
  embeddings come from an actor pool and balance/split decide on narrow columns (ray_groups.run_grouped).
- **What collects all rows**: pairs, decontaminate and length with a tokenizer run their own `run` on the
  driver over the survivors (the tokenizer may be built from every text; decontaminate picks one signature
  scheme from the whole batch), and semantic's neighbour search holds every vector there. This is exact by
  construction and is where this path stops scaling (measured: ~3.3 GiB of driver per 1M rows; docs/scale.md).
- Rows carry `_order` here too; every collect sorts by it and it is renumbered after each driver step
  (balance appends its copies last). The warehouse samples are written by the workers (`write_samples`).

Both paths give exactly the local executor's decisions (tests/test_ray_executor.py, test_ray_minhash.py,
test_ray_groups.py). Measured on the 2-core shared machine (benchmarks/ray_bench.py, docs/scale.md): with
exact on the driver 0.83x local's wall time at 100k rows, 0.78x at 1M; with exact's narrow shuffle and
MinHash on the cluster 0.75x at 100k. Driver peak RSS for one written curation (`ray_bench.py
--driver-memory`, VmHWM, same cluster and load): 1M rows 6.10 GiB with the rows on the driver, 1.43 GiB
with curate_blocks (0.235x); 3M rows 1.69 GiB with curate_blocks (~0.4 KB a row: balance's and split's
narrow columns and working memory, plus a constant ~1 GiB of imports and DuckDB's bounded ingest).

Ray is imported inside functions: `tunelab --help` and the local executor never load it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import xxhash

from tunelab.curate import registry, split
from tunelab.curate.common import (
    DECISION_SCHEMA,
    SIGNAL_SCHEMA,
    StageContext,
    StageOutput,
    empty_decisions,
    empty_signals,
    with_content,
)
from tunelab.curate.config import CurateConfig
from tunelab.curate.dedup_key import dedup_keys
from tunelab.curate.executors import ray_groups, ray_minhash
from tunelab.curate.executors.batches import INGEST_MEMORY, ORDER, Lengths, merge_stats
from tunelab.curate.outputs import warehouse_samples
from tunelab.curate.registry import segments
from tunelab.errors import UserError
from tunelab.progress import progress
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import LoadResult, _unify_labels, load_dataset_records, source_files

if TYPE_CHECKING:
    from tunelab.curate.result import CurationResult
    from tunelab.workspace import Workspace

# grouping stages whose driver step runs its work on the cluster (executors/ray_minhash.py)
GROUPED_ON_RAY = ("exact", "minhash")
INSTALL_HINT = "curate.executor: ray needs the ray extra: pip install 'tunelab[ray]'"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """HOST:PORT and ray://HOST:PORT must answer a TCP connect: ray.init waits on an unreachable GCS for
    minutes (measured: still waiting after 200 s), which is not an answer."""
    import socket

    if address in ("auto", "local", ""):
        return  # ray.init says at once when this machine belongs to no cluster
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"curate.ray_address: {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"curate.ray_address: no Ray cluster answers at {address!r} ({exc.strerror or exc}); "
            "start one with `ray start --head` or give its address"
        ) from None


def connect(address: str) -> Any:
    """`ray` after ray.init(address); an existing connection is reused. Missing extra or cluster: one line."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    _check_reachable(address)  # also when connected: a wrong address is said, not ignored
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(
                f"curate.ray_address: cannot connect to a Ray cluster at {address!r}: {first}"
            ) from None
    from ray.data import DataContext

    context = DataContext.get_current()
    # tunelab's own progress goes to stderr; Ray Data's per-dataset INFO lines and bars would drown it
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.preserve_order = True
    return ray


# ---------------------------------------------------------------- reading


def _load_file(cfg: DatasetConfig, file: str, file_index: int, many: bool) -> dict[str, Any]:
    """One file through the tunelab loader; sample ids as the loader names them in a multi-file source."""
    try:
        loaded = load_dataset_records(cfg.model_copy(update={"path": Path(file)}))
    except UserError as exc:
        if ": no records:" not in str(exc):
            raise
        return {"frame": None, "quarantine": None, "read": 0, "source": {}, "labels": []}
    frame = loaded.frame
    if many:
        frame = frame.with_columns(
            sample_id=pl.format(f"{cfg.name}:{file_index}-{{}}", pl.col("source_row").cast(pl.String))
        )
    return {
        "frame": frame.to_arrow(),
        "quarantine": loaded.quarantine.to_arrow(),
        "read": loaded.read,
        "source": loaded.source,
        "labels": frame["label"].drop_nulls().unique().to_list() if "label" in frame.columns else [],
    }


def _merged_source(parts: list[dict[str, Any]], files: list[Path]) -> dict[str, Any]:
    def joined(key: str) -> str | None:
        values = [v for p in parts for v in (p.get(key) or "").split(", ") if v]
        return ", ".join(dict.fromkeys(values)) or None

    source: dict[str, Any] = {
        "format": joined("format"),
        "encoding": joined("encoding"),
        "notes": [n for p in parts for n in p.get("notes", [])],
        "executor": "ray",
    }
    if len(files) > 1:
        source["files"] = [str(f) for f in files]
    return source


def prepare(
    dataset: DatasetConfig, curate: CurateConfig, show_progress: bool = False
) -> tuple[
    LoadResult,
    Callable[..., tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, Any]]]],
    Callable[[Path], None],
]:
    """Read `dataset` with one Ray task per file; returns the LoadResult (the loader's, file by file), the
    stage runner for pipeline.curate_frame and the samples writer for outputs.write_outputs."""
    ray = connect(curate.ray_address)
    files = source_files(Path(dataset.path))
    many = len(files) > 1
    load = ray.remote(_load_file)
    started = time.perf_counter()
    with progress(show_progress) as bar:
        task = bar.add_task(f"ray: reading {len(files)} files", total=None, status="")
        parts = ray.get([load.remote(dataset, str(f), i, many) for i, f in enumerate(files)])
        bar.update(task, status="done")
    read = sum(p["read"] for p in parts)
    if read == 0:
        load_dataset_records(dataset)  # the loader's own message for an empty source
    frames = [pl.from_arrow(p["frame"]) for p in parts if p["frame"] is not None]
    frame = pl.concat(frames, how="vertical_relaxed")
    pairs = _unify_labels([label for p in parts for label in p["labels"]])
    if pairs:  # 0/1 in one shard and true/false in another: one pair of classes, as the loader makes it
        frame = frame.with_columns(pl.col("label").replace(pairs))
    quarantine = pl.concat(
        [pl.from_arrow(p["quarantine"]) for p in parts if p["quarantine"] is not None], how="vertical_relaxed"
    )
    loaded = LoadResult(frame, quarantine, read, _merged_source([p["source"] for p in parts], files))
    loaded.source["read_seconds"] = round(time.perf_counter() - started, 3)  # tasks + frames to the driver

    def runner(
        frame: pl.DataFrame, curate: CurateConfig, ctx: StageContext, show_progress: bool = False
    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, Any]]]:
        return run_stages(frame, curate, ctx, show_progress, blocks=max(len(files), 2))

    def samples_writer(folder: Path) -> None:
        write_samples(loaded.frame, dataset, curate, folder, blocks=max(len(files), 2))

    return loaded, runner, samples_writer


def samples_batch(table: Any, dataset: DatasetConfig, curate: CurateConfig, folder: str) -> Any:
    """The warehouse's samples rows of one block (outputs.warehouse_samples, the local executor's own
    function), written as one Parquet shard named by its first sample id (a retried task overwrites it)."""
    frame = pl.from_arrow(table)
    if frame.height:
        name = xxhash.xxh64_hexdigest(str(frame["sample_id"][0]).encode("utf-8"))
        warehouse_samples(frame, dataset, curate).write_parquet(Path(folder) / f"samples-{name}.parquet")
    return pa.table({"rows": [frame.height]})


def write_samples(
    loaded: pl.DataFrame, dataset: DatasetConfig, curate: CurateConfig, folder: Path, blocks: int
) -> None:
    """Every read row's samples row as Parquet shards in `folder`, written by the workers."""
    import ray

    size = max(1, -(-loaded.height // blocks))
    tables = [loaded.slice(k, size).to_arrow() for k in range(0, max(loaded.height, 1), size)]
    data = ray.data.from_arrow(tables).map_batches(
        samples_batch,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"dataset": dataset, "curate": curate, "folder": str(folder)},
    )
    written = sum(t.column("rows").to_pylist()[0] for t in ray.get(data.to_arrow_refs()))
    if written != loaded.height:
        raise RuntimeError(f"samples shards hold {written} rows, {loaded.height} were read; a tunelab bug")


# ---------------------------------------------------------------- stages


def run_batch(
    table: Any, names: list[str], curate: CurateConfig, ctx: StageContext, shard_dir: str, segment: int
) -> Any:
    """The row-local stages `names` on one block (a pyarrow table), by their own `run`; decisions, signals
    and counts go to `shard_dir`, the survivors come back. Names are deterministic, so a retried task
    overwrites its own shards."""
    frame = pl.from_arrow(table)
    if frame.height == 0:
        return table
    first = int(frame[ORDER].min())
    ctx = replace(ctx, stats={}, clusters={}, signals=empty_signals(), show_progress=False)
    counts: dict[str, dict[str, Any]] = {}
    out_dir = Path(shard_dir)
    for index, name in enumerate(names):
        stage = registry.stage(name)
        if stage.needs_content and "content_hash" not in frame.columns:
            frame = with_content(frame, ctx.kind)
        started, rows_in = time.perf_counter(), frame.height
        out = stage.run(frame, curate.settings_for(name), ctx)
        tag = f"{segment:03d}-{index:03d}-{first:020d}"
        # in the one schema (column order and types): the shards are read back by one scan or glob
        out.decisions.select(list(DECISION_SCHEMA)).cast(DECISION_SCHEMA).write_parquet(  # type: ignore[arg-type]
            out_dir / f"decisions-{tag}.parquet"
        )
        if out.signals is not None and out.signals.height:
            out.signals.select(list(SIGNAL_SCHEMA)).cast(SIGNAL_SCHEMA).write_parquet(  # type: ignore[arg-type]
                out_dir / f"signals-{tag}.parquet"
            )
        counts[name] = {
            "in": rows_in, "seconds": time.perf_counter() - started, "skipped": out.skipped,
            "dropped": int((~out.decisions["kept"]).sum()),
        }  # fmt: skip
        frame = out.frame
    (out_dir / f"counts-{segment:03d}-{first:020d}.json").write_text(
        json.dumps({"counts": counts, "stats": ctx.stats}, default=str)
    )
    return frame.to_arrow()


def _read_shards(shard_dir: Path, kind: str, segment: int, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    files = sorted(shard_dir.glob(f"{kind}-{segment:03d}-*.parquet"))  # (stage, first row): local order
    if not files:
        return pl.DataFrame(schema=schema)
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed").cast(schema)  # type: ignore[arg-type]


def _segment_counts(shard_dir: Path, segment: int, ctx: StageContext) -> dict[str, dict[str, Any]]:
    """The per-batch counts of one row-local segment, summed; the batches' ctx.stats merged into ctx's."""
    per_stage: dict[str, dict[str, Any]] = {}
    for file in sorted(shard_dir.glob(f"counts-{segment:03d}-*.json")):
        batch = json.loads(file.read_text())
        for name, c in batch["counts"].items():
            into = per_stage.setdefault(name, {"in": 0, "seconds": 0.0, "dropped": 0})
            into["in"] += c["in"]
            into["seconds"] += c["seconds"]
            into["dropped"] += c.get("dropped", 0)
            if c["skipped"]:
                into["skipped"] = c["skipped"]
        merge_stats(ctx.stats, batch["stats"])
    return per_stage


def _on_ray(
    frame: pl.DataFrame,
    names: list[str],
    curate: CurateConfig,
    ctx: StageContext,
    segment: int,
    blocks: int,
    shard_dir: Path,
) -> tuple[pl.DataFrame, list[pl.DataFrame], list[pl.DataFrame], dict[str, dict[str, Any]]]:
    import ray
    import ray.data

    clock = time.perf_counter()
    size = max(1, -(-frame.height // blocks))
    tables = [frame.slice(k, size).to_arrow() for k in range(0, max(frame.height, 1), size)]
    source = ray.data.from_arrow(tables)
    timing = {"send_s": time.perf_counter() - clock}
    clock = time.perf_counter()
    data = source.map_batches(
        run_batch,
        batch_format="pyarrow",
        batch_size=None,  # a whole block per call: the stages vectorise over as many rows as they get
        zero_copy_batch=True,
        fn_kwargs={
            "names": names,
            "curate": curate,
            "ctx": replace(ctx, stats={}, clusters={}, signals=empty_signals()),
            "shard_dir": str(shard_dir),
            "segment": segment,
        },
    )
    refs = data.to_arrow_refs()  # runs the stages; the blocks stay in the object store
    timing["run_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    parts = [pl.from_arrow(t) for t in ray.get(refs)]
    parts = [p for p in parts if isinstance(p, pl.DataFrame) and p.width]
    out = pl.concat(parts, how="vertical_relaxed").sort(ORDER) if parts else frame.head(0)
    per_stage = _segment_counts(shard_dir, segment, ctx)
    decisions = _read_shards(shard_dir, "decisions", segment, dict(empty_decisions().schema))
    signals = _read_shards(shard_dir, "signals", segment, dict(empty_signals().schema))
    by_stage = [decisions.filter(pl.col("stage") == name) for name in names]
    timing["collect_s"] = time.perf_counter() - clock  # survivors, decisions and signals to the driver
    per_stage["_timing"] = {k: round(v, 3) for k, v in timing.items()}
    return out, by_stage, [signals], per_stage


PART = "_part"


def route_batch(table: Any, curate: CurateConfig, kind: str, parts: int) -> Any:
    """Adds `content`/`content_hash` (common.with_content, as the local loop does before exact) and the
    partition of each row's exact key: rows with one key meet in one group."""
    frame = pl.from_arrow(table)
    if "content_hash" not in frame.columns:
        frame = with_content(frame, kind)
    cfg = curate.exact
    if cfg.key is None:
        keys = frame["content_hash"]
    else:  # the key exact compares (dedup_key.py), hashed as exact hashes it
        keys = pl.Series(
            [xxhash.xxh64_hexdigest(k.encode("utf-8")) for k in dedup_keys(frame["content"], cfg.key)]
        )
    part = keys.str.slice(0, 8).str.to_integer(base=16) % parts
    return frame.with_columns(part.cast(pl.Int64).alias(PART)).to_arrow()


def exact_group(table: Any, curate: CurateConfig, ctx: StageContext, shard_dir: str, segment: int) -> Any:
    """exact's own `run` on every row of some keys, in local order: each key's copies are all here, so the
    representative, ref_sample_id, copy count and evidence are the local ones."""
    frame = pl.from_arrow(table).sort(ORDER).drop(PART)
    if frame.height == 0:
        return frame.to_arrow()
    ctx = replace(ctx, stats={}, clusters={}, signals=empty_signals(), show_progress=False)
    started = time.perf_counter()
    out = registry.stage("exact").run(frame, curate.exact, ctx)
    first = int(frame[ORDER].min())
    tag = f"{segment:03d}-exact-{first:020d}"
    out.decisions.join(frame.select("sample_id", ORDER), on="sample_id", how="left").write_parquet(
        Path(shard_dir) / f"grouped-{tag}.parquet"
    )
    (Path(shard_dir) / f"grouped-counts-{tag}.json").write_text(
        json.dumps({"seconds": time.perf_counter() - started, "stats": ctx.stats}, default=str)
    )
    return out.frame.to_arrow()


def exact_on_ray(
    frame: pl.DataFrame,
    curate: CurateConfig,
    ctx: StageContext,
    segment: int,
    blocks: int,
    shard_dir: Path,
) -> StageOutput:
    """The exact stage grouped on the cluster: rows routed by their key's hash (map_batches), a Ray Data
    hash shuffle on that partition (groupby), exact's own `run` per partition (map_groups)."""
    import ray
    import ray.data

    parts = max(2, blocks)
    size = max(1, -(-frame.height // blocks))
    tables = [frame.slice(k, size).to_arrow() for k in range(0, frame.height, size)]
    data = (
        ray.data.from_arrow(tables)
        .map_batches(
            route_batch,
            batch_format="pyarrow",
            batch_size=None,
            fn_kwargs={"curate": curate, "kind": ctx.kind, "parts": parts},
        )
        .groupby(PART, num_partitions=parts)
        .map_groups(
            exact_group,
            batch_format="pyarrow",
            fn_kwargs={
                "curate": curate,
                "ctx": replace(ctx, stats={}, clusters={}, signals=empty_signals()),
                "shard_dir": str(shard_dir),
                "segment": segment,
            },
        )
    )
    parts_out = [pl.from_arrow(t) for t in ray.get(data.to_arrow_refs())]
    parts_out = [p for p in parts_out if isinstance(p, pl.DataFrame) and p.width]
    survivors = pl.concat(parts_out, how="vertical_relaxed").sort(ORDER)
    for file in sorted(shard_dir.glob(f"grouped-counts-{segment:03d}-exact-*.json")):
        merge_stats(ctx.stats, json.loads(file.read_text())["stats"])
    files = sorted(shard_dir.glob(f"grouped-{segment:03d}-exact-*.parquet"))
    schema = dict(empty_decisions().schema)
    if files:
        found = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed").sort(ORDER)
        decided = found.drop(ORDER).cast(schema)  # type: ignore[arg-type]
    else:
        decided = pl.DataFrame(schema=schema)
    return StageOutput(
        survivors.select(frame.columns + [c for c in survivors.columns if c not in frame.columns]), decided
    )


def run_stages(
    frame: pl.DataFrame,
    curate: CurateConfig,
    ctx: StageContext,
    show_progress: bool = False,
    blocks: int = 2,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, Any]]]:
    """pipeline.run_stages on Ray: the same return value, the same decisions."""
    connect(curate.ray_address)
    if ORDER not in frame.columns:
        frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER))
    all_decisions: list[pl.DataFrame] = []
    all_signals: list[pl.DataFrame] = [empty_signals()]
    per_stage: dict[str, dict[str, Any]] = {}
    timings: list[dict[str, Any]] = []
    # every worker writes here: on a multi-node cluster the workspace is on storage all nodes share (as its
    # curation folders must be); without a workspace (tests, audit) a temporary folder on this machine
    root = Path(ctx.workspace.embedding_cache).parent if ctx.workspace is not None else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    shard_dir = Path(tempfile.mkdtemp(prefix="tunelab-ray-", dir=root))
    try:
        with progress(show_progress) as bar:
            task = bar.add_task("curate on ray", total=len(curate.stages), status="")
            for segment, (on_ray, names) in enumerate(segments(curate)):
                rows_in, clock = frame.height, time.perf_counter()
                bar.update(task, description=f"curate: {', '.join(names)}", status=f"{rows_in:,} rows")
                if on_ray:
                    frame, decided, signals, counts = _on_ray(
                        frame, names, curate, ctx, segment, blocks, shard_dir
                    )
                    timings.append(
                        {"stages": names, "on": "ray", "rows": rows_in, **counts.pop("_timing"),
                         "wall_s": round(time.perf_counter() - clock, 3)}
                    )  # fmt: skip
                    for name, out in zip(names, decided, strict=True):
                        all_decisions.append(out)
                        per_stage[name] = {
                            "in": counts.get(name, {}).get("in", 0),
                            "dropped": int((~out["kept"]).sum()),
                            # summed over the batches: worker-seconds, not wall time
                            "seconds": round(counts.get(name, {}).get("seconds", 0.0), 3),
                        }
                        if counts.get(name, {}).get("skipped"):
                            per_stage[name]["skipped"] = counts[name]["skipped"]
                    all_signals.extend(signals)
                    bar.advance(task, len(names))
                    continue
                for name in names:  # on the driver: the local function on the rows left, in local order
                    started, rows_in = time.perf_counter(), frame.height
                    if name == "exact" and frame.height:  # grouped on the cluster by its key
                        # (ray_minhash: only key hash, _order and length are shuffled)
                        out = ray_minhash.exact_narrow(frame, curate, ctx, blocks)
                    elif name == "minhash" and frame.height:  # every phase on the cluster
                        if "content_hash" not in frame.columns:
                            frame = with_content(frame, ctx.kind)  # as registry.run_stage adds them
                        out = ray_minhash.minhash_on_ray(frame, curate.minhash, ctx, blocks)
                    elif name in ray_groups.GROUPED and frame.height:  # narrow columns on the driver
                        out = ray_groups.run_grouped(name, frame, curate, ctx, blocks)
                    else:
                        out = registry.run_stage(name, frame, curate, ctx)
                    all_decisions.append(out.decisions)
                    if out.signals is not None:
                        all_signals.append(out.signals)
                    frame = out.frame
                    per_stage[name] = registry.stage_counts(out, rows_in, started)
                    bar.advance(task)
                # balance appends oversampled copies at the end: the order is now the frame's own
                frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER))
                timings.append(
                    {
                        "stages": names,
                        "on": "driver",
                        "rows": rows_in,
                        "wall_s": round(time.perf_counter() - clock, 3),
                    }
                )
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
    if "split" not in frame.columns:
        out = split.everything_trains(frame)
        all_decisions.append(out.decisions)
        frame = out.frame
    ctx.signals = pl.concat(all_signals, how="vertical_relaxed")
    ctx.stats["executor"] = {
        "name": "ray",
        "on_ray": [n for on_ray, names in segments(curate) for n in names if on_ray or n in GROUPED_ON_RAY],
        # semantic (embeddings in an actor pool), balance and split (narrow columns): executors/ray_groups.py
        "grouped_on_ray": [n for n in curate.stages if n in ray_groups.GROUPED],
        "note": "row-local stages' stats: counts summed over batches, other numbers from the first batch",
        # per run of stages: wall time; on Ray also send (driver frame -> object store), run (map_batches),
        # collect (survivors, decisions, signals back to the driver)
        "segments": timings,
    }
    return frame.drop(ORDER), pl.concat(all_decisions, how="vertical_relaxed"), per_stage


# ---------------------------------------------------------------- rows off the driver

# grouping stages that run over blocks with only narrow columns (or none) on the driver
BLOCK_GROUPED = ("exact", "minhash", "balance", "split")
# what the driver received of the rows in this process's last curate_blocks, per step: columns and rows
DRIVER_FETCHES = ray_groups.DRIVER_FETCHES


def off_driver(curate: CurateConfig) -> bool:
    """Whether every stage is row-local or one of BLOCK_GROUPED: then curate_blocks keeps the rows in the
    object store from the sharded read to the written outputs."""
    return all(registry.is_row_local(n, curate) or n in BLOCK_GROUPED for n in curate.stages)


_fetched = ray_groups.fetched


def peak_mib() -> float | None:
    """This process's peak resident memory so far (VmHWM, Linux), MiB; None elsewhere."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    return round(int(found[0]) / 1024, 1) if found else None


def read_block(cfg: DatasetConfig, file: str, file_index: int, many: bool) -> list[Any]:
    """One file through the loader (_load_file): (its rows as one Arrow block, left in the object store;
    what the driver needs: rows, read, quarantine, source, labels)."""
    part = _load_file(cfg, file, file_index, many)
    block = part.pop("frame")
    part["rows"] = 0 if block is None else block.num_rows
    return [block, part]


def first_block(
    table: Any,
    offset: int,
    pairs: dict[str, str],
    names: list[str],
    curate: CurateConfig,
    ctx: StageContext,
    dataset: DatasetConfig,
    shard_dir: str,
    samples_dir: str | None,
) -> list[Any]:
    """One read block: the loader's 0/1 <-> false/true pairing, `_order` from the block's offset in the
    source, its warehouse samples shard, the first row-local stages. Returns (the survivors, what the report
    needs: read labels and field lengths)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if pairs:
        frame = frame.with_columns(pl.col("label").replace(pairs))
    frame = frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + offset).alias(ORDER))
    if samples_dir is not None:
        samples = warehouse_samples(frame.drop(ORDER), dataset, curate)
        samples.write_parquet(Path(samples_dir) / f"samples-{offset:020d}.parquet")
    lengths = Lengths(dataset.kind)
    lengths.add(frame)
    labels = frame["label"].drop_nulls().cast(pl.String).to_list() if "label" in frame.columns else []
    meta = {"labels": dict(Counter(labels)), "lengths": lengths.parts}
    out = run_batch(frame.to_arrow(), names, curate, ctx, shard_dir, 0) if names else frame.to_arrow()
    return [out, meta]


def row_local_block(
    table: Any, names: list[str], curate: CurateConfig, ctx: StageContext, shard_dir: str, segment: int
) -> Any:
    return run_batch(table, names, curate, ctx, shard_dir, segment)


def content_block(table: Any, kind: str) -> Any:
    """`content` and `content_hash` added, as registry.run_stage adds them before a stage that needs them."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return with_content(frame, kind).to_arrow()


def drop_block(table: Any, orders: np.ndarray) -> Any:
    """The block without the rows `orders` (a plan's drops)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.filter(~pl.col(ORDER).is_in(pl.Series(orders, dtype=pl.Int64).implode())).to_arrow()


def head_block(table: Any) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.head(0)


def rows_of(table: Any) -> int:
    return int(table.num_rows)


def finish_block(
    table: Any, number: int, kind: str, columns: list[str], scratch: str, write: bool
) -> dict[str, Any]:
    """One surviving block to the outputs, written by the worker: its train/val part, its (sample_id,
    content_hash) for the data version, the terminal decisions when no split stage ran, its oversampled
    copies as warehouse samples. Returns counts, kept labels and the parts' field lengths."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    root = Path(scratch)
    if "content_hash" not in frame.columns:
        frame = with_content(frame, kind)
    if "split" not in frame.columns:  # no stage assigned train/val: the terminal step puts all in train
        out = split.everything_trains(frame)
        out.decisions.select(list(DECISION_SCHEMA)).cast(DECISION_SCHEMA).write_parquet(  # type: ignore[arg-type]
            root / "shards" / f"decisions-999-000-{number:020d}.parquet"
        )
        frame = out.frame
    frame.select("sample_id", "content_hash").write_parquet(root / "kept" / f"{number:06d}.parquet")
    kept_columns = [c for c in columns if c in frame.columns]
    meta: dict[str, Any] = {"lengths": {}, "rows": {}}
    for side in ("train", "val"):
        part = frame.filter(pl.col("split") == side).select(kept_columns)
        part.write_parquet(root / side / f"{number:06d}.parquet")
        lengths = Lengths(kind)
        lengths.add(part)
        meta["lengths"][side], meta["rows"][side] = lengths.parts, part.height
        if side == "train" and write:
            copies = part.filter(pl.col("sample_id").str.contains("#dup", literal=True))
            if copies.height:  # the warehouse keeps oversampled copies as samples too, as locally
                copies.write_parquet(root / "samples" / f"copies-{number:06d}.parquet")
    source = ~pl.col("sample_id").str.contains("#dup", literal=True)
    meta["kept"] = frame.filter(source).height
    meta["survivors"] = frame.height
    labels = frame["label"].drop_nulls().cast(pl.String).to_list() if "label" in frame.columns else []
    meta["labels"] = dict(Counter(labels))
    return meta


def cluster_rows_file(
    cfg: DatasetConfig, file: str, file_index: int, many: bool, wanted: list[str]
) -> pl.DataFrame:
    """The rows `wanted` (by sample id) of one source file, as the loader reads them: the report's largest
    clusters show the read text. Read again rather than keeping every read block in the object store for
    the whole run."""
    frame = _load_file(cfg, file, file_index, many)["frame"]
    if frame is None:
        return pl.DataFrame()
    found = pl.from_arrow(frame)
    assert isinstance(found, pl.DataFrame)
    return found.filter(pl.col("sample_id").is_in(pl.Series(wanted, dtype=pl.String).implode()))


def curate_blocks(
    dataset: DatasetConfig,
    curate: CurateConfig,
    ws: Workspace,
    write: bool,
    show_progress: bool,
    *,
    version: Callable[[pl.DataFrame, DatasetConfig, CurateConfig], str],
    new_id: Callable[[str, str, Workspace | None], str],
    output_meta: tuple[str, ...],
) -> CurationResult:
    """pipeline.curate_dataset on Ray without the rows on the driver (recipes for which off_driver holds).

    The pipeline hands in its data version, curation id and output columns, so every executor shares one
    definition of each."""
    connect(curate.ray_address)
    started = time.perf_counter()
    ctx = StageContext(
        kind=dataset.kind, dataset_name=dataset.name, cache_dir=ws.embedding_cache, workspace=ws,
        show_progress=show_progress,
    )  # fmt: skip
    root = Path(ws.embedding_cache).parent  # every worker writes here: storage all nodes share
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tunelab-ray-", dir=root))
    try:
        for sub in ("shards", "samples", "kept", "train", "val"):
            (scratch / sub).mkdir()
        return _curate_blocks(dataset, curate, ws, ctx, scratch, write, show_progress, started,
                              version, new_id, output_meta)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _curate_blocks(
    dataset: DatasetConfig,
    curate: CurateConfig,
    ws: Any,
    ctx: StageContext,
    scratch: Path,
    write: bool,
    show_progress: bool,
    started: float,
    version: Callable[[pl.DataFrame, DatasetConfig, CurateConfig], str],
    new_id: Callable[[str, str, Any], str],
    output_meta: tuple[str, ...],
) -> Any:
    import ray

    from tunelab.curate import pii
    from tunelab.curate.outputs import _curation_row
    from tunelab.curate.report import DEDUP_REASONS, build_report, report_markdown
    from tunelab.curate.result import CurationResult
    from tunelab.records.fields import CANONICAL_FIELDS
    from tunelab.records.loader import QUARANTINE_SCHEMA
    from tunelab.warehouse import store
    from tunelab.workspace import claim, release

    DRIVER_FETCHES.clear()
    kind = dataset.kind
    shard_dir = scratch / "shards"
    files = source_files(Path(dataset.path))
    many = len(files) > 1
    clock = time.perf_counter()
    with progress(show_progress) as bar:
        task = bar.add_task(f"ray: reading {len(files)} files", total=None, status="")
        reads = [
            ray.remote(read_block).options(num_returns=2).remote(dataset, str(f), i, many)
            for i, f in enumerate(files)
        ]
        metas = ray.get(
            [r[1] for r in reads]
        )  # counts, quarantine, labels: the rows stay in the object store
        bar.update(task, status="done")
    read = sum(m["read"] for m in metas)
    if read == 0:
        load_dataset_records(dataset)  # the loader's own message for an empty source
    quarantines = [pl.from_arrow(m["quarantine"]) for m in metas if m["quarantine"] is not None]
    quarantine = (
        pl.concat(quarantines, how="vertical_relaxed")
        if quarantines
        else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    )
    assert isinstance(quarantine, pl.DataFrame)
    loaded_refs = [r[0] for r, m in zip(reads, metas, strict=True) if m["rows"] or m["read"]]
    heights = [m["rows"] for m in metas if m["rows"] or m["read"]]
    read_files = [
        (i, str(f)) for (i, f), m in zip(enumerate(files), metas, strict=True) if m["rows"] or m["read"]
    ]
    del reads  # each read block is freed once its first pass has run (held by loaded_refs until then)
    offsets = np.cumsum([0, *heights[:-1]]).tolist()  # `_order` of each block's first row: the local frame's
    pairs = _unify_labels([label for m in metas for label in m["labels"]])
    source = _merged_source([m["source"] for m in metas], files)
    source["read_seconds"] = round(time.perf_counter() - clock, 3)
    source["rows_on_driver"] = False

    all_segments = segments(curate)
    first_local = bool(all_segments) and all_segments[0][0]
    batch_ctx = replace(ctx, stats={}, clusters={}, signals=empty_signals())
    per_stage: dict[str, dict[str, Any]] = {}
    timings: list[dict[str, Any]] = []
    parts = max(2, len(loaded_refs))

    # one remote function each, made once: per-block tasks in a loop share it
    tasks = {fn.__name__: ray.remote(fn) for fn in (rows_of, content_block, drop_block, cluster_rows_file)}

    def heights_of(refs: list[Any]) -> list[int]:
        return ray.get([tasks["rows_of"].remote(r) for r in refs])

    def record_local(names: list[str], segment: int) -> None:
        counts = _segment_counts(shard_dir, segment, ctx)
        for name in names:
            c = counts.get(name, {})
            per_stage[name] = {"in": c.get("in", 0), "dropped": c.get("dropped", 0),
                               "seconds": round(c.get("seconds", 0.0), 3)}  # fmt: skip
            if c.get("skipped"):
                per_stage[name]["skipped"] = c["skipped"]

    def write_decisions(frame: pl.DataFrame, segment: int, index: int) -> None:
        frame.select(list(DECISION_SCHEMA)).cast(DECISION_SCHEMA).write_parquet(  # type: ignore[arg-type]
            shard_dir / f"decisions-{segment:03d}-{index:03d}-{0:020d}.parquet"
        )

    with progress(show_progress) as bar:
        task = bar.add_task("curate on ray", total=len(curate.stages), status="")
        clock = time.perf_counter()
        names0 = all_segments[0][1] if first_local else []
        first = ray.remote(first_block).options(num_returns=2)
        firsts = [
            first.remote(ref, int(off), pairs, names0, curate, batch_ctx, dataset, str(shard_dir),
                         str(scratch / "samples") if write else None)
            for ref, off in zip(loaded_refs, offsets, strict=True)
        ]  # fmt: skip
        refs = [f[0] for f in firsts]
        first_metas = ray.get([f[1] for f in firsts])
        peaks = {"read + first stages": peak_mib()}
        del firsts, loaded_refs  # each step's blocks are freed when the next step's replace them
        if first_local:
            record_local(names0, 0)
            timings.append({"stages": names0, "on": "ray", "rows": sum(heights),
                            "wall_s": round(time.perf_counter() - clock, 3)})  # fmt: skip
            bar.advance(task, len(names0))
        for segment, (on_ray, names) in enumerate(all_segments):
            if segment == 0 and first_local:
                continue
            clock = time.perf_counter()
            if on_ray:
                task_fn = ray.remote(row_local_block)
                refs = [task_fn.remote(r, names, curate, batch_ctx, str(shard_dir), segment) for r in refs]
                ray.wait(refs, num_returns=len(refs), fetch_local=False)
                record_local(names, segment)
                timings.append({"stages": names, "on": "ray", "rows": per_stage[names[0]]["in"],
                                "wall_s": round(time.perf_counter() - clock, 3)})  # fmt: skip
                bar.advance(task, len(names))
                continue
            for index, name in enumerate(names):  # grouped: narrow columns or none on the driver
                started_stage = time.perf_counter()
                rows_in = sum(heights_of(refs))
                bar.update(task, description=f"curate: {name}", status=f"{rows_in:,} rows")
                head = (
                    pl.DataFrame(ray.get(ray.remote(head_block).remote(refs[0]))) if refs else pl.DataFrame()
                )
                if registry.stage(name).needs_content and "content_hash" not in head.columns and refs:
                    refs = [tasks["content_block"].remote(r, kind) for r in refs]
                    head = pl.DataFrame(ray.get(ray.remote(head_block).remote(refs[0])))
                skipped = None
                drops = np.zeros(0, dtype=np.int64)
                if name == "exact" and rows_in:
                    decided, drops = ray_minhash.exact_blocks(ray, refs, curate.exact, ctx, parts)
                elif name == "minhash" and rows_in >= 2:
                    decided, drops = ray_minhash.minhash_blocks(ray, refs, curate.minhash, ctx, parts)
                elif name == "balance" and rows_in:
                    out, new = ray_groups.balance_blocks(ray, refs, head, curate, ctx)
                    decided, skipped, refs = out.decisions, out.skipped, new or refs
                elif name == "split" and rows_in:
                    out, refs = ray_groups.split_blocks(ray, refs, head, curate, ctx)
                    decided, skipped = out.decisions, out.skipped
                else:  # no rows, or one (minhash compares nothing): the local stage on what there is
                    narrow = (
                        ray_groups.narrow_of(ray, refs, [c for c in head.columns if c != "split"])
                        if refs
                        else head
                    )
                    _fetched(name, narrow)
                    out = registry.run_stage(name, narrow.drop(ORDER) if ORDER in narrow.columns else narrow,
                                             curate, ctx)  # fmt: skip
                    decided, skipped = out.decisions, out.skipped
                    drop_ids = out.decisions.filter(~pl.col("kept"))["sample_id"]
                    if ORDER in narrow.columns:
                        drops = narrow.filter(pl.col("sample_id").is_in(drop_ids.implode()))[ORDER].to_numpy()
                if drops.size:
                    wanted = ray.put(np.sort(drops))
                    refs = [tasks["drop_block"].remote(r, wanted) for r in refs]
                write_decisions(decided, segment, index)
                per_stage[name] = {"in": rows_in, "dropped": int((~decided["kept"]).sum()),
                                   "seconds": round(time.perf_counter() - started_stage, 3)}  # fmt: skip
                if skipped:
                    per_stage[name]["skipped"] = skipped
                del decided
                peaks[name] = peak_mib()
                bar.advance(task)
            timings.append({"stages": names, "on": "driver plan, cluster rows",
                            "wall_s": round(time.perf_counter() - clock, 3)})  # fmt: skip

    # the outputs: every surviving block written by its worker
    clock = time.perf_counter()
    columns = list(dict.fromkeys((*output_meta, *CANONICAL_FIELDS[kind])))
    finish = ray.remote(finish_block)
    finished = ray.get([finish.remote(r, n, kind, columns, str(scratch), write) for n, r in enumerate(refs)])
    del refs
    decision_files = sorted(shard_dir.glob("decisions-*.parquet"))
    if not decision_files:
        write_decisions(empty_decisions(), 999, 999)
        decision_files = sorted(shard_dir.glob("decisions-*.parquet"))
    signal_files = sorted(shard_dir.glob("signals-*.parquet"))
    scan = pl.scan_parquet(decision_files)
    src = ~pl.col("sample_id").str.contains("#dup", literal=True)
    dropped = int(scan.filter(~pl.col("kept") & src).select(pl.col("sample_id").n_unique()).collect().item())
    finals = (
        scan.filter((pl.col("stage") == "final") & src)
        .select(pl.len().alias("n"), pl.col("sample_id").n_unique().alias("unique"))
        .collect()
    )
    kept = sum(m["kept"] for m in finished)
    survivors = sum(m["survivors"] for m in finished)
    if kept + dropped + quarantine.height != read or finals["n"][0] != kept or finals["unique"][0] != kept:
        raise RuntimeError(
            f"curation accounting broken: kept {kept} + dropped {dropped} + quarantined {quarantine.height} != "
            f"read {read} (final decisions: {finals['n'][0]}); this is a tunelab bug, please report it"
        )
    if "pii" in curate.stages and quarantine.height:
        quarantine = pii.masked_quarantine(quarantine, curate.pii)

    def summed(items: list[dict[str, int]]) -> dict[str, int]:
        total: Counter[str] = Counter()
        for item in items:
            total.update(item)
        return dict(sorted(total.items()))

    ctx.stats["labels"] = {"read": summed([m["labels"] for m in first_metas]),
                           "kept": summed([m["labels"] for m in finished])}  # fmt: skip
    ctx.stats["executor"] = {
        "name": "ray",
        "on_ray": [n for on_ray, names in all_segments for n in names if on_ray or n in GROUPED_ON_RAY],
        "grouped_on_ray": [n for n in curate.stages if n in ray_groups.GROUPED],
        "note": "row-local stages' stats: counts summed over batches, other numbers from the first batch",
        # the rows stayed in the object store from the read to the outputs; the driver held these columns
        "rows_on_driver": False,
        "segments": timings,
    }
    peaks["outputs by the workers, accounting"] = peak_mib()
    kept_ids = _fetched(
        "data_version",
        pl.concat(
            [pl.read_parquet(f) for f in sorted((scratch / "kept").glob("*.parquet"))], how="vertical_relaxed"
        ),
    )
    data_version = version(kept_ids, dataset, curate)
    del kept_ids
    curation_id = new_id(dataset.name, data_version, ws)

    # the report: reasons counted over the decision shards, the largest clusters' texts from the read blocks
    dups = scan.filter(
        pl.col("reason").is_in(DEDUP_REASONS) & pl.col("ref_sample_id").is_not_null()
    ).collect()
    top = (
        dups.group_by("ref_sample_id").len().sort(["len", "ref_sample_id"], descending=[True, False]).head(20)
    )
    wanted = top["ref_sample_id"].to_list()
    for ref in top["ref_sample_id"].to_list():  # report.largest_clusters shows 10 members a cluster, by score
        members = dups.filter(pl.col("ref_sample_id") == ref)
        if members.height > 10:  # ties at the 10th score: all of them (the report picks among them)
            tenth = members["score"].sort(descending=True, nulls_last=True)[9]
            members = members if tenth is None else members.filter(pl.col("score") >= tenth)
        wanted.extend(members["sample_id"].to_list())
    peaks["data version"] = peak_mib()
    # the read rows are gone from the object store: the few shown are read again from their files
    shown = (
        [tasks["cluster_rows_file"].remote(dataset, file, i, many, wanted) for i, file in read_files]
        if wanted
        else []
    )
    shown = [t for t in ray.get(shown) if t.height]
    cluster_rows = (
        _fetched("report clusters", pl.concat(shown, how="vertical_relaxed")) if shown else pl.DataFrame()
    )
    ctx.stats["executor"]["driver_fetches"] = list(DRIVER_FETCHES)
    # the driver's peak resident memory after each phase (VmHWM): where it grows; the last phases (streaming
    # the folder, the ingest) are added to the returned result's report after report.json is written
    ctx.stats["executor"]["driver_peak_mib"] = peaks
    result = CurationResult(
        curation_id=curation_id,
        out_dir=ws.curation_dir(curation_id),
        read=read,
        kept=kept,
        dropped=dropped,
        quarantined=quarantine.height,
        train_path=None,
        val_path=None,
        report={},
        data_version=data_version,
        oversampled=survivors - kept,
        decisions=dups,
        quarantine=quarantine,
    )
    report = build_report(result, dataset, cluster_rows, per_stage, ctx.stats, time.perf_counter() - started)
    reasons = (
        scan.filter(~pl.col("kept") | ((pl.col("stage") != "final") & pl.col("reason").is_not_null()))
        .group_by("stage", "reason", "kept")
        .len()
        .sort(["stage", "len"], descending=[False, True])
        .collect()
    )
    report["reasons"] = [
        {"stage": s, "reason": r, "kept": k, "count": int(n)} for s, r, k, n in reasons.iter_rows()
    ]
    for side in ("train", "val"):
        report["counts"][side] = sum(m["rows"][side] for m in finished)

    def lengths(parts_of: list[dict[str, list[np.ndarray]]]) -> dict[str, Any]:
        merged: dict[str, list[np.ndarray]] = {}
        for item in parts_of:
            for name, arrays in item.items():
                merged.setdefault(name, []).extend(arrays)
        return Lengths(kind, merged).stats()

    report["length_input"] = lengths([m["lengths"] for m in first_metas])
    report["length_output"] = lengths([m["lengths"][side] for m in finished for side in ("train", "val")])
    report["source"] = source
    result.report = report
    peaks["report"] = peak_mib()
    result.decisions = (
        empty_decisions()
    )  # in decisions.parquet and the warehouse (or below, when not written)
    timings.append({"stages": ["outputs"], "on": "ray", "wall_s": round(time.perf_counter() - clock, 3)})
    side_files = {side: sorted((scratch / side).glob("*.parquet")) for side in ("train", "val")}
    if not write:  # nothing written: everything in memory, as the local executor returns it
        for side, found in side_files.items():
            setattr(
                result,
                side,
                pl.concat([pl.read_parquet(f) for f in found], how="vertical_relaxed") if found else None,
            )
        result.decisions = pl.concat([pl.read_parquet(f) for f in decision_files], how="vertical_relaxed")
        signals = [pl.read_parquet(f) for f in signal_files]
        result.signals = pl.concat([empty_signals(), *signals], how="vertical_relaxed")
        ctx.signals = result.signals
        return result
    final = result.out_dir
    out = ws.pending_curation_dir(curation_id)
    claim(out)
    for side, found in side_files.items():
        # the driver streams the workers' parts into the one file per side: a block at a time, not the rows
        pl.scan_parquet(found).sink_parquet(out / f"{side}.parquet")
        pl.scan_parquet(found).sink_ndjson(out / f"{side}.jsonl")
    scan.sink_parquet(out / "decisions.parquet")
    quarantine.write_parquet(out / "quarantine.parquet")
    if signal_files:
        pl.scan_parquet(signal_files).sink_parquet(out / "signals.parquet")
    peaks["train/val/decisions/signals streamed into the folder"] = peak_mib()
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    store.ingest_curation(
        ws.warehouse, _curation_row(result, dataset, curate, final), str(scratch / "samples" / "*.parquet"),
        str(shard_dir / "decisions-*.parquet"), quarantine,
        str(shard_dir / "signals-*.parquet") if signal_files else None, memory_limit=INGEST_MEMORY,
    )  # fmt: skip
    peaks["warehouse ingest"] = peak_mib()
    os.replace(out, final)  # one rename: the folder appears complete, or not at all
    release(final)
    result.train_path, result.val_path = final / "train.parquet", final / "val.parquet"
    return result
