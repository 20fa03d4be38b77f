"""The streaming executor (`curate.executor: stream`): one machine, bounded memory, the local decisions.

The local loop holds the whole source in one frame through every stage (1M rows of generated SFT data:
~3.3 GiB). Here only narrow columns stay in memory across batches:

- **Reading** goes batch by batch (`curate.stream_batch_rows`): a plain UTF-8 JSON-lines file by lines, a
  Parquet file by pyarrow record batches; each batch is handed to the tunelab loader (written to a scratch
  file), so parsing, the quarantine and the fast path are the loader's, and the batch's rows are renumbered
  to the whole file's (sample id, source row, source line). The loader pairs 0/1 with true/false over all
  labels: that pairing is found at the end from the distinct labels of every batch and applied whenever
  rows are read back. Other sources (CSV/TSV, compressed files, .json documents, other encodings,
  `dataset.records`, a datasets folder) go through the loader whole and are then curated in batches; the
  report's source notes say which.
- **Row-local stages** (schema, normalize, language, pii, quality, length without a tokenizer) run per
  batch with their own `run` (registry.run_stage); the survivors go to Parquet shards in a scratch folder
  with a hidden `_order` column (their position in the frame the local loop would see).
- **exact** groups narrow columns: (key hash as a uint64, keep rank) of every surviving row, in numpy;
  the sample ids of the drops and their representatives are read back from the shards.
- **minhash**: pass 1 sums the dedup keys' lengths so `minhash.scheme_for` picks the scheme the local
  stage picks for the same rows; pass 2 computes each batch's signatures with that scheme and its band keys
  (bands x 8 bytes per row stay in memory: 144 B at 18 bands); the candidate pairs (`star_pairs`, band by
  band), the components and the greedy verification are minhash.cluster's, the verification reading back
  only the keys of rows in a component. The keep rank and the split groups (ctx.clusters) are the local
  ones. Per band rather than all bands at once keeps star_pairs' sort at n keys instead of bands x n; it
  differs from the local grouping only if two different bands' 64-bit bucket keys collide.
- **balance** and **split** run their own `run` on (sample id, label / stratify column) in local order;
  oversampled copies become one more shard, as the local stage appends them.
- **Other stages** (pairs, semantic, decontaminate, split by golden document) hold their rows: the surviving
  rows are read into one frame, the stage's own `run` goes over it, and its output is cut into shards
  again. The report's `stage_stats.executor.in_memory` lists them. `curate.length.tokenizer` is refused (the
  tokenizer may be built from all texts, and the rendered-token count needs every kept row).
- **Outputs** are the local ones: train/val Parquet and JSON lines written from per-batch parts by polars'
  streaming sink, decisions, signals, quarantine, the report (its input/output length statistics from the
  per-row lengths, its largest clusters' texts read back by id), the data version, and the warehouse ingest
  with the samples as a Parquet glob (store.ingest_curation, DuckDB's memory limited to INGEST_MEMORY).
  Decisions and signals are one frame each, as the ingest takes them.
- Row-local stages' `stage_stats` are merged over batches as the Ray executor merges them (counts add up,
  other numbers from the first batch).
"""

from __future__ import annotations

import codecs
import itertools
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import xxhash

from tunelab.curate import balance, minhash, pii, registry, split
from tunelab.curate.common import (
    StageContext,
    StageOutput,
    decisions,
    empty_signals,
    longest_first_rank,
    with_content,
)
from tunelab.curate.config import CurateConfig
from tunelab.curate.dedup_key import dedup_keys, describe, key_expr
from tunelab.curate.executors.batches import INGEST_MEMORY, ORDER, Lengths, merge_stats
from tunelab.curate.outputs import _curation_row, warehouse_samples
from tunelab.curate.report import build_report, report_markdown
from tunelab.curate.result import CurationResult
from tunelab.errors import UserError
from tunelab.progress import progress
from tunelab.records.config import DatasetConfig
from tunelab.records.fields import CANONICAL_FIELDS
from tunelab.records.formats import format_by_name, is_hf_dataset
from tunelab.records.loader import (
    QUARANTINE_SCHEMA,
    LoadResult,
    _unify_labels,
    load_dataset_records,
    source_files,
)
from tunelab.warehouse import store
from tunelab.workspace import Workspace, claim, release

# stages run here on narrow columns; every other non-row-local stage holds its rows (in_memory)
NARROW = ("exact", "minhash", "balance", "split")
_COUNTED_NOTE = re.compile(r"(\d[\d,]*) (record|value)s?\b")


# ---------------------------------------------------------------- reading


@dataclass
class Reader:
    """The source in batches of canonical rows, numbered as the loader numbers the whole source."""

    dataset: DatasetConfig
    batch_rows: int
    scratch: Path
    read: int = 0
    labels: set[str] = field(default_factory=set)  # distinct labels of every batch (the 0/1 pairing)
    notes: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    def native(self, files: list[Path]) -> bool:
        cfg = self.dataset
        if cfg.records or (cfg.encoding and cfg.encoding.lower().replace("_", "-") not in ("utf-8", "utf8")):
            return False
        for file in files:
            named = format_by_name(file)
            if is_hf_dataset(file) or not file.is_file():
                return False
            if named == "parquet" and cfg.format in ("auto", "parquet"):
                continue
            if (
                named != "jsonl"
                or cfg.format not in ("auto", "jsonl")
                or file.suffix.lower() in (".gz", ".zst")
                or not _utf8(file)  # the loader would detect the encoding of the whole file
            ):
                return False
            with file.open("rb") as handle:
                first = handle.readline()
            # a BOM, a blank first line or a document over several lines: the loader sniffs the whole file
            if not first.startswith(b"{"):
                return False
            try:
                if not isinstance(json.loads(first), dict):
                    return False
            except ValueError:
                return False
        return True

    def __iter__(self) -> Iterator[LoadResult]:
        files = source_files(Path(self.dataset.path))
        if not self.native(files):
            yield from self._whole()
            return
        many = len(files) > 1
        for index, file in enumerate(files):
            batches = self._parquet(file) if format_by_name(file) == "parquet" else self._jsonl(file)
            for loaded in batches:
                frame = loaded.frame
                name = f"{self.dataset.name}:{index}-" if many else f"{self.dataset.name}:"
                frame = frame.with_columns(sample_id=pl.format(f"{name}{{}}", pl.col("source_row")))
                yield LoadResult(frame, loaded.quarantine, loaded.read, loaded.source)
        if self.read == 0:
            load_dataset_records(self.dataset)  # the loader's own message for an empty source
        self.source = {
            "format": ", ".join(dict.fromkeys(self.formats)) or None,
            "encoding": "utf-8" if any(f == "jsonl" for f in self.formats) else None,
            "notes": _merged_notes(self.notes),
        }
        if many:
            self.source["files"] = [str(f) for f in files]

    def _whole(self) -> Iterator[LoadResult]:
        loaded = load_dataset_records(self.dataset)
        self.read = loaded.read
        self.source = {
            **loaded.source,
            "notes": [
                *loaded.source.get("notes", []),
                "executor stream: this source was read whole by the loader (only plain UTF-8 JSON lines and "
                "Parquet are read in batches), then curated in batches",
            ],
        }
        frame = loaded.frame
        for start in range(0, max(frame.height, 1), self.batch_rows):
            quarantine = loaded.quarantine if start == 0 else loaded.quarantine.head(0)
            yield LoadResult(frame.slice(start, self.batch_rows), quarantine, 0, {})

    def _load(self, chunk: Path, file: Path, first: bool, fmt: str) -> LoadResult | None:
        cfg = self.dataset.model_copy(update={"path": chunk, "format": fmt})
        try:
            loaded = load_dataset_records(cfg, check_fields=first)
        except UserError as exc:
            if ": no records:" in str(exc):
                return None  # a batch of blank lines
            raise UserError(str(exc).replace(str(chunk), str(file))) from None
        self.notes += [n.replace(chunk.name, file.name) for n in loaded.source.get("notes", [])]
        self.formats.append(fmt)
        if "label" in loaded.frame.columns:
            self.labels.update(loaded.frame["label"].drop_nulls().unique().to_list())
        return loaded

    def _shifted(self, loaded: LoadResult, file: Path, rows: int, lines: int) -> LoadResult:
        """Row and line numbers of the batch as numbers of the whole file."""
        self.read += loaded.read
        frame = loaded.frame.with_columns(pl.col("source_row") + rows, pl.col("source_line") + lines)
        quarantine = loaded.quarantine.with_columns(
            pl.col("source_row") + rows, pl.col("source_line") + lines, source_file=pl.lit(str(file))
        )
        return LoadResult(frame, quarantine, loaded.read, {})

    def _jsonl(self, file: Path) -> Iterator[LoadResult]:
        chunk = self.scratch / "batch.jsonl"
        offset = 0
        with file.open("rb") as handle:
            for number in itertools.count():
                data = b"".join(itertools.islice(handle, self.batch_rows))
                if not data:
                    return
                chunk.write_bytes(data)
                loaded = self._load(chunk, file, number == 0, "jsonl")
                if loaded is not None:
                    # a JSON-lines record's row is its line index: both move by the lines before the batch
                    yield self._shifted(loaded, file, offset, offset)
                ends = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
                offset += ends + (0 if data.endswith((b"\n", b"\r")) else 1)

    def _parquet(self, file: Path) -> Iterator[LoadResult]:
        chunk = self.scratch / "batch.parquet"
        try:
            parquet = pq.ParquetFile(file)
        except Exception:  # corrupt: the loader says so in its own words
            load_dataset_records(self.dataset.model_copy(update={"path": file}))
            raise
        offset = 0
        for number, batch in enumerate(parquet.iter_batches(batch_size=self.batch_rows)):
            pq.write_table(pl.from_arrow(batch).to_arrow(), chunk)  # type: ignore[union-attr]
            loaded = self._load(chunk, file, number == 0, "parquet")
            if loaded is not None:
                yield self._shifted(loaded, file, offset, offset)
            offset += batch.num_rows


def _utf8(file: Path, block: int = 1 << 24) -> bool:
    """Whether the whole file decodes as UTF-8 (read in blocks). Batches are cut by lines, so a file the
    loader would read in another encoding, or with invalid bytes at some offset, is read whole instead."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with file.open("rb") as handle:
            while data := handle.read(block):
                decoder.decode(data)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _merged_notes(notes: list[str]) -> list[str]:
    """Per-batch notes as one: notes that differ only in their count ('source ids from 'id' (3 records)')
    are summed; the rest appear once."""
    merged: dict[str, list[Any]] = {}
    for note in notes:
        found = _COUNTED_NOTE.search(note)
        if found is None:
            merged.setdefault(note, [note, None, None])
            continue
        key = note[: found.start()] + "{}" + note[found.end() :].split("(", 1)[0]
        count = int(found.group(1).replace(",", ""))
        entry = merged.setdefault(key, [note, 0, found])
        entry[1] += count
    out = []
    for note, count, found in merged.values():
        if count is None:
            out.append(note)
        else:
            word = found.group(2) + ("" if count == 1 else "s")
            out.append(note[: found.start()] + f"{count:,} {word}" + note[found.end() :])
    return out


# ---------------------------------------------------------------- shards


@dataclass
class Shards:
    """The surviving rows as Parquet files in local order; `alive[_order]` says which rows are still kept."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    schema: dict[str, pl.DataType] = field(default_factory=dict)
    pairs: dict[str, str] = field(default_factory=dict)  # 0/1 -> false/true over the whole source
    written: int = 0

    def add(self, frame: pl.DataFrame) -> None:
        self.schema = dict(frame.schema)
        if frame.height:
            path = self.folder / f"rows-{self.written:06d}.parquet"
            self.written += 1
            frame.write_parquet(path)
            self.files.append(path)

    def fixed(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self.pairs and "label" in frame.columns:
            frame = frame.with_columns(pl.col("label").replace(self.pairs))
        return frame

    def frames(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """The alive rows of each shard, in order (with `_order`)."""
        wanted = (
            None if columns is None else [c for c in dict.fromkeys([*columns, ORDER]) if c in self.schema]
        )
        for path in self.files:
            frame = pl.read_parquet(path, columns=wanted)
            mask = self.alive[frame[ORDER].to_numpy()]
            if not mask.all():
                frame = frame.filter(pl.Series(mask))
            yield self.fixed(frame)

    def collect(self, columns: list[str] | None = None) -> pl.DataFrame:
        parts = list(self.frames(columns))
        if parts:
            return pl.concat(parts, how="vertical_relaxed")
        names = (
            self.schema
            if columns is None
            else [c for c in dict.fromkeys([*columns, ORDER]) if c in self.schema]
        )
        return pl.DataFrame(schema={c: self.schema[c] for c in names})

    def drop(self, orders: pl.Series | np.ndarray) -> None:
        self.alive[np.asarray(orders, dtype=np.int64)] = False

    def replace_all(self, frame: pl.DataFrame, batch_rows: int) -> None:
        """After a stage that held its rows: `frame` (with `_order`) is the new content, cut into shards."""
        if ORDER not in frame.columns:
            raise RuntimeError("a stage dropped the _order column; this is a tunelab bug, please report it")
        for path in self.files:
            path.unlink()
        self.files = []
        self.alive[:] = False
        self.alive[frame[ORDER].to_numpy()] = True
        for start in range(0, max(frame.height, 1), batch_rows):
            self.add(frame.slice(start, batch_rows))

    def rewrite(self, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        """Every shard through `fn` (a row-local stage after a grouping one), shard by shard."""
        old, self.files = self.files, []
        alive = np.zeros_like(self.alive)
        for path in old:
            frame = pl.read_parquet(path)
            frame = self.fixed(frame.filter(pl.Series(self.alive[frame[ORDER].to_numpy()])))
            frame = fn(frame)
            alive[frame[ORDER].to_numpy()] = True
            self.add(frame)
            path.unlink()
        self.alive = alive

    def append(self, frame: pl.DataFrame) -> None:
        """Rows with new `_order` numbers (balance's oversampled copies) after every other row."""
        start = self.alive.size
        frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER) + start)
        self.alive = np.concatenate([self.alive, np.ones(frame.height, dtype=bool)])
        self.add(frame)


# ---------------------------------------------------------------- per-stage bookkeeping


@dataclass
class Run:
    curate: CurateConfig
    ctx: StageContext
    decided: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    signals: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    per_stage: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_memory: list[str] = field(default_factory=list)

    def record(self, name: str, out: Any, rows_in: int, started: float) -> None:
        counts = registry.stage_counts(out, rows_in, started)
        into = self.per_stage.setdefault(name, {"in": 0, "dropped": 0, "seconds": 0.0})
        into["in"] += counts["in"]
        into["dropped"] += counts["dropped"]
        into["seconds"] = round(into["seconds"] + counts["seconds"], 3)
        if counts.get("skipped"):
            into["skipped"] = counts["skipped"]
        self.decided.setdefault(name, []).append(out.decisions)
        if out.signals is not None:
            self.signals.setdefault(name, []).append(out.signals)

    def row_local(self, frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
        """The row-local stages `names` on one batch, by their own `run`."""
        for name in names:
            if frame.height == 0:
                self.per_stage.setdefault(name, {"in": 0, "dropped": 0, "seconds": 0.0})
                continue
            batch_ctx = replace(self.ctx, stats={}, clusters={}, signals=empty_signals(), show_progress=False)
            started, rows_in = time.perf_counter(), frame.height
            out = registry.run_stage(name, frame, self.curate, batch_ctx)
            merge_stats(self.ctx.stats, batch_ctx.stats)
            self.record(name, out, rows_in, started)
            frame = out.frame
        return frame


def _ranks(lengths: np.ndarray | None, n: int) -> np.ndarray:
    """common.keep_order from the rows' lengths: 'first' (None) = position, 'longest' = most characters."""
    if lengths is None:
        return np.arange(n, dtype=np.int64)
    return longest_first_rank(lengths).to_numpy()


# ---------------------------------------------------------------- narrow stages


def exact_narrow(shards: Shards, run: Run) -> Any:
    """exact.run on (key hash as a uint64, keep rank), 16 bytes a row: the same representative (lowest rank
    of its key), ref_sample_id, copy count and evidence; sample ids are read back for the drops only."""
    cfg = run.curate.exact
    longest = cfg.keep == "longest"
    columns = ["content_hash"] + (["content"] if longest or cfg.key is not None else [])
    hashes, lengths, orders, sizes = [], [], [], []
    for frame in shards.frames(columns):
        if cfg.key is None:  # the hex digest read as the number it spells
            hashes.append(frame["content_hash"].str.to_integer(base=16, dtype=pl.UInt64).to_numpy())
        else:
            keys = dedup_keys(frame["content"], cfg.key)
            hashes.append(
                np.fromiter((xxhash.xxh64_intdigest(k.encode("utf-8")) for k in keys), np.uint64, len(keys))
            )
        if longest:
            lengths.append(frame["content"].str.len_chars().fill_null(0).to_numpy())
        orders.append(frame[ORDER].to_numpy())
        sizes.append(frame.height)
    n = sum(sizes)
    key = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    rank = _ranks(np.concatenate(lengths) if longest and n else None, n)
    order = np.lexsort((rank, key))  # by key, best rank first
    first = np.ones(n, dtype=bool)
    np.not_equal(key[order][1:], key[order][:-1], out=first[1:])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ref = np.empty(n, dtype=np.int64)
    ref[order] = order[starts][group]
    copies = np.empty(n, dtype=np.int64)
    copies[order] = np.diff(np.append(starts, n))[group]
    dropped = np.flatnonzero(ref != np.arange(n))
    ids = _ids_at(shards, np.unique(np.concatenate([dropped, ref[dropped]])), sizes)
    what = f"dedup key ({describe(cfg.key)})" if cfg.key is not None else "content hash"
    refs = [ids[int(r)] for r in ref[dropped]]
    run.ctx.stats["exact"] = {"dropped": int(dropped.size)}
    if n:
        shards.drop(np.concatenate(orders)[dropped])
    out = decisions(
        [ids[int(d)] for d in dropped], "exact", False, "exact_dup", ref_sample_id=refs,
        score=pl.Series([1.0] * dropped.size, dtype=pl.Float64),
        evidence=[f"same {what} as {r} ({c} copies)" for r, c in zip(refs, copies[dropped].tolist(), strict=True)],
    )  # fmt: skip
    return StageOutput(pl.DataFrame(), out)


def _ids_at(shards: Shards, positions: np.ndarray, sizes: list[int]) -> dict[int, str]:
    """The sample ids at these positions of the alive rows (the shards as the positions were counted)."""
    out: dict[int, str] = {}
    start = 0
    for frame, size in zip(shards.frames(["sample_id"]), sizes, strict=True):
        inside = positions[(positions >= start) & (positions < start + size)]
        if inside.size:
            out.update(zip(inside.tolist(), frame["sample_id"].gather(inside - start).to_list(), strict=True))
        start += size
    return out


def minhash_narrow(shards: Shards, run: Run) -> Any:
    """minhash.run over the shards: global scheme, band keys per batch, the local greedy clustering."""
    cfg = run.curate.minhash
    key = key_expr("content", cfg.key)
    total = docs = 0
    for frame in shards.frames(["content"]):  # pass 1: the scheme the local stage picks for these rows
        total += int(frame.select(key.str.len_chars().sum()).item() or 0)
        docs += frame.height
    scheme = minhash.scheme_for(total, docs, cfg.num_perm)
    bands, rows = minhash.band_params(cfg.threshold, cfg.num_perm)
    band_keys = np.empty((bands, docs), dtype=np.uint64)  # filled in place: no second copy to concatenate
    orders, lengths, sizes = [], [], []
    for frame in shards.frames(["content"]):  # pass 2: signatures -> band keys, per batch
        texts = dedup_keys(frame["content"], cfg.key)
        if texts:
            start = sum(sizes)
            sig = minhash.signatures(texts, cfg.ngram, cfg.num_perm, cfg.seed, scheme=scheme)
            band_keys[:, start : start + len(texts)] = minhash.band_keys(sig, bands, rows, cfg.seed)
            del sig
        orders.append(frame[ORDER].to_numpy())
        sizes.append(frame.height)
        if cfg.keep == "longest":
            lengths.append(frame["content"].str.len_chars().fill_null(0).to_numpy())
    n = sum(sizes)
    all_orders = np.concatenate(orders) if orders else np.zeros(0, dtype=np.int64)
    ref = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan)
    component = np.full(n, -1, dtype=np.int64)
    pairs = _pairs(band_keys, n)
    del band_keys
    if len(pairs):
        labels = minhash.components(n, pairs)
        in_component = np.bincount(labels)[labels] > 1
        involved = np.flatnonzero(in_component)
        texts = _involved_keys(shards, cfg, involved, sizes)
        sets = minhash.ShingleSets(texts, involved, cfg.ngram, cfg.seed)  # type: ignore[arg-type]
        rank = _ranks(np.concatenate(lengths) if cfg.keep == "longest" else None, n)
        pending = involved[np.lexsort((rank[involved], labels[involved]))]
        cuts = np.flatnonzero(labels[pending][1:] != labels[pending][:-1]) + 1
        for members in np.split(pending, cuts):  # the local stage's keep rule, one component at a time
            ref[members], score[members] = minhash.greedy_component(members, sets.jaccard, cfg.threshold)
        lowest = np.full(labels.max() + 1, n, dtype=np.int64)
        np.minimum.at(lowest, labels, np.arange(n, dtype=np.int64))
        component = np.where(in_component, lowest[labels], -1)  # named by its first row, as locally
    dropped = np.flatnonzero(ref >= 0)
    kept_in_component = np.flatnonzero((component >= 0) & (ref < 0))
    wanted = [dropped, ref[dropped], kept_in_component, component[kept_in_component]]
    ids = _ids_at(shards, np.unique(np.concatenate(wanted)), sizes)
    for doc in kept_in_component.tolist():
        run.ctx.clusters[ids[doc]] = minhash.cluster_label(ids[int(component[doc])])
    run.ctx.stats["minhash"] = {
        "bands_rows": [bands, rows],
        "candidate_pairs": int(len(pairs)),
        "dropped": int(dropped.size),
        "kept_in_clusters": int(kept_in_component.size),
    }
    if dropped.size == 0:
        return StageOutput(pl.DataFrame(), decisions([], "minhash", True))
    shards.drop(all_orders[dropped])
    out = decisions(
        [ids[d] for d in dropped.tolist()], "minhash", False, "near_dup_minhash",
        ref_sample_id=[ids[r] for r in ref[dropped].tolist()], score=pl.Series(score[dropped]),
        evidence=f"exact Jaccard of {cfg.ngram}-char shingles of the key ({describe(cfg.key)}) >= {cfg.threshold}",
    )  # fmt: skip
    return StageOutput(pl.DataFrame(), out)


def _pairs(keys: np.ndarray, n: int) -> np.ndarray:
    """minhash.star_pairs band by band, united: a bucket key is salted by its band, so a bucket never spans
    two bands (bar a 64-bit collision), and one band's sort needs n keys, not bands x n."""
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    packed = [
        p[:, 0] * n + p[:, 1] for p in (minhash.star_pairs(keys[b : b + 1]) for b in range(keys.shape[0]))
    ]
    found = np.unique(np.concatenate(packed)) if packed else np.zeros(0, dtype=np.int64)
    return np.stack([found // n, found % n], axis=1)


def _involved_keys(shards: Shards, cfg: Any, involved: np.ndarray, sizes: list[int]) -> dict[int, str]:
    """The dedup keys of the rows in a component, by position, read back from the shards."""
    out: dict[int, str] = {}
    start = 0
    for frame, size in zip(shards.frames(["content"]), sizes, strict=True):
        inside = involved[(involved >= start) & (involved < start + size)]
        if inside.size:
            texts = dedup_keys(frame["content"].gather(inside - start), cfg.key)
            out.update(zip(inside.tolist(), texts, strict=True))
        start += size
    return out


def balance_narrow(shards: Shards, run: Run) -> Any:
    """balance.run on (sample id, label): its drops, and its copies appended as one more shard."""
    cfg = run.curate.balance
    narrow = shards.collect(["sample_id", "label", cfg.label])
    out = balance.run(narrow, cfg, run.ctx)
    gone = out.decisions.filter(~pl.col("kept"))["sample_id"]
    if gone.len():
        shards.drop(narrow.filter(pl.col("sample_id").is_in(gone.implode()))[ORDER].to_numpy())
    dups = out.decisions.filter(pl.col("reason") == "oversampled")
    if dups.height:
        refs = dups["ref_sample_id"].unique().implode()
        sources = pl.concat([f.filter(pl.col("sample_id").is_in(refs)) for f in shards.frames()])
        copies = balance.expand(sources, out.decisions).slice(sources.height)
        shards.append(copies)
    return out


# ---------------------------------------------------------------- the run


def _scratch_root(ws: Workspace | None) -> Path | None:
    if ws is None:
        return None
    root = Path(ws.embedding_cache).parent  # the workspace's own disk, next to its curations
    root.mkdir(parents=True, exist_ok=True)
    return root


def curate_stream(
    dataset: DatasetConfig,
    curate: CurateConfig,
    ws: Workspace,
    eval_rows: tuple[list[str], list[str], list[str]] | None,
    write: bool,
    show_progress: bool,
    *,
    version: Callable[[pl.DataFrame, DatasetConfig, CurateConfig], str],
    new_id: Callable[[str, str, Workspace | None], str],
    output_meta: tuple[str, ...],
) -> CurationResult:
    """pipeline.curate_dataset for `curate.executor: stream` (the pipeline hands in its data version,
    curation id and output columns, so both executors share one definition of each)."""
    if curate.length.tokenizer:
        raise UserError(
            "curate.length.tokenizer: executor stream does not count tokens (the tokenizer may be built from "
            "every text, and the report renders every kept row); use curate.executor: local"
        )
    started = time.perf_counter()
    ctx = StageContext(
        kind=dataset.kind, dataset_name=dataset.name, cache_dir=ws.embedding_cache, workspace=ws,
        show_progress=show_progress,
    )  # fmt: skip
    if eval_rows is not None:
        ctx.eval_texts, ctx.eval_prompts, ctx.eval_ids = eval_rows
    scratch = Path(tempfile.mkdtemp(prefix="tunelab-stream-", dir=_scratch_root(ws)))
    try:
        return _curate(dataset, curate, ws, ctx, scratch, write, show_progress, started,
                       version, new_id, output_meta)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _curate(
    dataset: DatasetConfig,
    curate: CurateConfig,
    ws: Workspace,
    ctx: StageContext,
    scratch: Path,
    write: bool,
    show_progress: bool,
    started: float,
    version: Callable[[pl.DataFrame, DatasetConfig, CurateConfig], str],
    new_id: Callable[[str, str, Workspace | None], str],
    output_meta: tuple[str, ...],
) -> CurationResult:
    for sub in ("rows", "loaded", "samples", "train", "val"):
        (scratch / sub).mkdir()
    run = Run(curate, ctx)
    reader = Reader(dataset, curate.stream_batch_rows, scratch)
    shards = Shards(scratch / "rows")
    segments = registry.segments(curate)
    first_names = segments[0][1]  # schema is always first, and row-local
    needs_content = len(segments) > 1 and any(registry.stage(n).needs_content for n in segments[1][1][:1])
    quarantines: list[pl.DataFrame] = []
    read_labels: Counter[str] = Counter()
    lengths_in = Lengths(dataset.kind)
    orders = 0
    kept_orders: list[np.ndarray] = []
    with progress(show_progress) as bar:
        task = bar.add_task(f"stream: {', '.join(first_names)}", total=None, status="")
        for number, loaded in enumerate(reader):
            frame = loaded.frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER) + orders)
            orders += frame.height
            quarantines.append(loaded.quarantine)
            if "label" in frame.columns:
                read_labels.update(frame["label"].drop_nulls().to_list())
            lengths_in.add(frame)
            frame.drop(ORDER).write_parquet(scratch / "loaded" / f"{number:06d}.parquet")
            if write:  # the warehouse keeps every read row: its samples, as the local ingest computes them
                samples = warehouse_samples(frame.drop(ORDER), dataset, curate)
                samples.write_parquet(scratch / "samples" / f"{number:06d}.parquet")
            frame = run.row_local(frame, first_names)
            if needs_content and "content_hash" not in frame.columns:
                frame = with_content(frame, dataset.kind)
            shards.add(frame)
            kept_orders.append(frame[ORDER].to_numpy())
            bar.update(task, status=f"{orders:,} rows read")
    pairs = _unify_labels(list(reader.labels))
    shards.pairs = pairs
    shards.alive = np.zeros(orders, dtype=bool)
    if kept_orders:
        shards.alive[np.concatenate(kept_orders)] = True
    del kept_orders
    if pairs:
        read_labels = _mapped_counts(read_labels, pairs)
        if write:
            for path in sorted((scratch / "samples").glob("*.parquet")):
                shards.fixed(pl.read_parquet(path)).write_parquet(path)
    split_done = False
    val_of = np.zeros(0, dtype=bool)  # by _order, when the narrow split ran
    later = [(row_local, name) for row_local, names in segments[1:] for name in names]
    with progress(show_progress) as bar:
        task = bar.add_task("stream", total=len(later), status="")
        for row_local, name in later:
            rows_in, clock = int(shards.alive.sum()), time.perf_counter()
            bar.update(task, description=f"stream: {name}", status=f"{rows_in:,} rows")
            if row_local:  # after a grouping stage (rare: row-local stages usually come first)
                shards.rewrite(lambda frame, name=name: run.row_local(frame, [name]))
                bar.advance(task)
                continue
            if registry.stage(name).needs_content and "content_hash" not in shards.schema:
                shards.rewrite(
                    lambda frame: with_content(frame, dataset.kind)
                )  # as registry.run_stage adds them
            if name == "exact":
                out = exact_narrow(shards, run)
            elif name == "minhash":
                out = minhash_narrow(shards, run)
            elif name == "balance":
                out = balance_narrow(shards, run)
            elif name == "split" and split.group_by_for(curate.split, dataset.kind) == "none":
                split.check_stratify(pl.DataFrame(schema=shards.schema), curate.split)
                cols = ["sample_id"] + ([curate.split.stratify] if curate.split.stratify else [])
                narrow = shards.collect(cols)
                out = split.run(narrow.drop(ORDER), curate.split, ctx)
                val_of = np.zeros(shards.alive.size, dtype=bool)
                val_of[narrow[ORDER].to_numpy()] = (out.frame["split"] == "val").to_numpy()
                split_done = True
            else:  # this stage holds its rows: the stage's own run on all of them
                frame = shards.collect()
                out = registry.run_stage(name, frame, curate, ctx)
                shards.replace_all(out.frame, curate.stream_batch_rows)
                run.in_memory.append(name)
                split_done = split_done or "split" in out.frame.columns
            run.record(name, out, rows_in, clock)
            bar.advance(task)
    result = _finish(dataset, curate, ws, ctx, run, reader, shards, scratch, quarantines, read_labels,
                     lengths_in, val_of, split_done, write, started, version, new_id, output_meta)  # fmt: skip
    return result


def _mapped_counts(counts: Counter[str], pairs: dict[str, str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for label, n in counts.items():
        out[pairs.get(label, label)] += n
    return out


def _finish(
    dataset: DatasetConfig,
    curate: CurateConfig,
    ws: Workspace,
    ctx: StageContext,
    run: Run,
    reader: Reader,
    shards: Shards,
    scratch: Path,
    quarantines: list[pl.DataFrame],
    read_labels: Counter[str],
    lengths_in: Lengths,
    val_of: np.ndarray,
    split_done: bool,
    write: bool,
    started: float,
    version: Callable[[pl.DataFrame, DatasetConfig, CurateConfig], str],
    new_id: Callable[[str, str, Workspace | None], str],
    output_meta: tuple[str, ...],
) -> CurationResult:
    """The survivors, batch by batch, into train/val parts; then counts, version, report, files, warehouse."""
    kind = dataset.kind
    finals: list[pl.DataFrame] = []
    kept_rows: list[pl.DataFrame] = []  # (sample_id, content_hash): the data version
    kept_labels: Counter[str] = Counter()
    lengths = {"train": Lengths(kind), "val": Lengths(kind)}
    copies: list[pl.DataFrame] = []
    for number, frame in enumerate(shards.frames()):
        if "content_hash" not in frame.columns:
            frame = with_content(frame, kind)
        if "split" not in frame.columns:
            if split_done:
                side = np.where(val_of[frame[ORDER].to_numpy()], "val", "train")
                frame = frame.with_columns(split=pl.Series(side, dtype=pl.String))
            else:  # no stage assigned train/val: the terminal step puts all in train
                out = split.everything_trains(frame)
                finals.append(out.decisions)
                frame = out.frame
        kept_rows.append(frame.select("sample_id", pl.col("content_hash")))
        if "label" in frame.columns:
            kept_labels.update(frame["label"].drop_nulls().to_list())
        columns = [c for c in (*output_meta, *CANONICAL_FIELDS[kind]) if c in frame.columns]
        for side in ("train", "val"):
            part = frame.filter(pl.col("split") == side).select(columns)
            part.write_parquet(scratch / side / f"{number:06d}.parquet")
            lengths[side].add(part)
            if side == "train":
                copies.append(part.filter(pl.col("sample_id").str.contains("#dup", literal=True)))
    all_decisions = pl.concat([d for name in curate.stages for d in run.decided.get(name, [])] + finals)
    survivors = (
        pl.concat(kept_rows)
        if kept_rows
        else pl.DataFrame(schema={"sample_id": pl.String, "content_hash": pl.String})
    )
    quarantine = pl.concat([q.cast(QUARANTINE_SCHEMA) for q in quarantines])  # type: ignore[arg-type]
    kept, dropped, oversampled = _account(reader.read, survivors, all_decisions, quarantine.height)
    if "pii" in curate.stages and quarantine.height:
        quarantine = pii.masked_quarantine(quarantine, curate.pii)
    ctx.signals = pl.concat(
        [empty_signals()] + [s for name in curate.stages for s in run.signals.get(name, [])]
    )
    ctx.stats["labels"] = {
        "read": dict(sorted(read_labels.items())),
        "kept": dict(sorted(kept_labels.items())),
    }
    ctx.stats["executor"] = {
        "name": "stream",
        "batch_rows": curate.stream_batch_rows,
        "in_memory": run.in_memory,
        "note": "row-local stages' stats: counts summed over batches, other numbers from the first batch",
    }
    data_version = version(survivors, dataset, curate)
    del survivors, kept_rows
    curation_id = new_id(dataset.name, data_version, ws)
    parts = {side: sorted((scratch / side).glob("*.parquet")) for side in ("train", "val")}
    heights = {side: sum(pq.ParquetFile(f).metadata.num_rows for f in files) for side, files in parts.items()}
    result = CurationResult(
        curation_id=curation_id,
        out_dir=ws.curation_dir(curation_id),
        read=reader.read,
        kept=kept,
        dropped=dropped,
        quarantined=quarantine.height,
        train_path=None,
        val_path=None,
        report={},
        data_version=data_version,
        oversampled=oversampled,
        decisions=all_decisions,
        quarantine=quarantine,
        signals=ctx.signals,
    )
    report = build_report(
        result, dataset, _cluster_rows(all_decisions, scratch / "loaded"), run.per_stage, ctx.stats,
        time.perf_counter() - started,
    )  # fmt: skip
    report["counts"]["train"], report["counts"]["val"] = heights["train"], heights["val"]
    report["length_input"] = lengths_in.stats()
    train_val = Lengths(kind, {k: lengths["train"].parts.get(k, []) + lengths["val"].parts.get(k, [])
                               for k in CANONICAL_FIELDS[kind] if k in lengths["train"].parts})  # fmt: skip
    report["length_output"] = train_val.stats()
    report["source"] = {**reader.source, "executor": "stream", "batch_rows": curate.stream_batch_rows}
    result.report = report
    if not write:  # nothing written: the splits in memory, as the local executor returns them
        for side in ("train", "val"):
            frame = pl.concat([pl.read_parquet(f) for f in parts[side]]) if parts[side] else None
            setattr(result, side, frame)
        return result
    _write(result, dataset, curate, ws, parts, scratch, copies)
    return result


def _cluster_rows(all_decisions: pl.DataFrame, loaded: Path) -> pl.DataFrame:
    """The read rows report.largest_clusters shows (its top representatives and their members)."""
    from tunelab.curate.report import DEDUP_REASONS

    dups = all_decisions.filter(pl.col("reason").is_in(DEDUP_REASONS) & pl.col("ref_sample_id").is_not_null())
    files = sorted(loaded.glob("*.parquet"))
    if dups.height == 0 or not files:
        return pl.concat([pl.read_parquet(f).head(0) for f in files[:1]]) if files else pl.DataFrame()
    top = (
        dups.group_by("ref_sample_id").len().sort(["len", "ref_sample_id"], descending=[True, False]).head(20)
    )
    refs = top["ref_sample_id"]
    wanted = pl.concat([refs, dups.filter(pl.col("ref_sample_id").is_in(refs.implode()))["sample_id"]])
    return pl.scan_parquet(files).filter(pl.col("sample_id").is_in(wanted.implode())).collect()


def _account(
    read: int, survivors: pl.DataFrame, all_decisions: pl.DataFrame, quarantined: int
) -> tuple[int, int, int]:
    """pipeline._account on the survivors' ids: kept + dropped + quarantined == read, one final each."""
    source = ~pl.col("sample_id").str.contains("#dup", literal=True)
    dropped = all_decisions.filter(~pl.col("kept") & source)["sample_id"].n_unique()
    kept = survivors.filter(source).height
    finals = all_decisions.filter((pl.col("stage") == "final") & source)["sample_id"]
    if kept + dropped + quarantined != read or finals.n_unique() != kept or finals.len() != kept:
        raise RuntimeError(
            f"curation accounting broken: kept {kept} + dropped {dropped} + quarantined {quarantined} != read "
            f"{read} (final decisions: {finals.len()}); this is a tunelab bug, please report it"
        )
    return kept, dropped, survivors.height - kept


def _write(
    result: CurationResult,
    dataset: DatasetConfig,
    curate: CurateConfig,
    ws: Workspace,
    parts: dict[str, list[Path]],
    scratch: Path,
    copies: list[pl.DataFrame],
) -> None:
    """outputs.write_outputs with the splits sunk from their per-batch parts and the samples as a glob: the
    pending folder, one ingest transaction, one rename."""
    final = result.out_dir
    out = ws.pending_curation_dir(result.curation_id)
    claim(out)
    for side, files in parts.items():
        pl.scan_parquet(files).sink_parquet(out / f"{side}.parquet")
        pl.scan_parquet(files).sink_ndjson(out / f"{side}.jsonl")
    assert result.quarantine is not None
    result.decisions.write_parquet(out / "decisions.parquet")
    result.quarantine.write_parquet(out / "quarantine.parquet")
    if result.signals.height:
        result.signals.write_parquet(out / "signals.parquet")
    (out / "report.json").write_text(
        json.dumps(result.report, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    (out / "report.md").write_text(report_markdown(result.report), encoding="utf-8")
    samples = scratch / "samples"
    copied = pl.concat(copies, how="vertical_relaxed") if copies else pl.DataFrame()
    if copied.height:
        copied.write_parquet(samples / "copies.parquet")
    store.ingest_curation(
        ws.warehouse, _curation_row(result, dataset, curate, final), str(samples / "*.parquet"),
        result.decisions, result.quarantine, result.signals, memory_limit=INGEST_MEMORY,
    )  # fmt: skip
    os.replace(out, final)  # one rename: the folder appears complete, or not at all
    release(final)
    result.train_path, result.val_path = final / "train.parquet", final / "val.parquet"
