"""Semantic near-dup stage: cosine of sentence embeddings against rows already kept.

Embeddings come from `tunelab.embeddings` (default: multilingual USE v3 int8 ONNX, offline) and are
cached by content hash under WORKSPACE/cache/embeddings. Rows are visited in keep order (first|longest);
a row is dropped when its cosine with some kept row is >= threshold, and `ref_sample_id` is that kept row
-- kept rows are never dropped later, so there are no chains. Rows are embedded within a token budget
(`max_tokens`, head + tail), in batches of similar length. Below `exact_below` rows every row is compared
with every kept row (blockwise brute force); above, an IVF index (faiss) proposes candidate neighbours,
each is checked with the exact cosine, and the same greedy rule runs over them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, keep_order, survivors
from tunelab.curate.config import SemanticSettings
from tunelab.embeddings.loader import embed_cached, load_embedder

# characters per token of the budget: e5-small's (XLM-R) SentencePiece on the Korean KULLM instruction rows
# gives 147.5 tokens for 419.7 characters. Counting real tokens costs as much as embedding (1,900 rows/s
# with offsets, one core) and use-v3 tokenises inside its ONNX graph, so the budget is applied as characters.
CHARS_PER_TOKEN = 2.7
# share of the budget kept from the row's start, the rest from its end: 0.5 measured best of 0.33/0.5/0.75
# (recall of planted copies vs same-prompt rows merged, docs/curate.md)
HEAD_SHARE = 0.5
# neighbour search (benchmarks/semantic_search_bench.py): brute force below EXACT_BELOW rows (faster there),
# an approximate index above
EXACT_BELOW = 5_000
ANN_K = 16
ANN_MAX_K = 256
ANN_MARGIN = 0.02  # approximate cosines (f32; f16 in usearch) are within ~1e-3 of the exact ones
ANN_CONNECTIVITY = 16
ANN_EXPANSION_ADD = 64
ANN_EXPANSION_SEARCH = 64
# IVF (faiss-ivf): ~4 sqrt(n) lists, k-means of 5 iterations on <= 64 rows per list, 8 lists probed per row
IVF_LISTS_PER_SQRT = 4
IVF_TRAIN_ITERATIONS = 5
IVF_TRAIN_POINTS_PER_LIST = 64
IVF_PROBES = 8
# faiss-cpu's IVF, picked by benchmarks/semantic_search_bench.py: at 50k rows it beat brute force 2.4x while
# the HNSW libraries (usearch, faiss HNSW, hnswlib) were 2-3x *slower* than brute force; usearch also crashes
# the process when imported before onnxruntime
ANN_LIBRARY = "faiss-ivf"
ANN_THREADS = 1  # the shared 2-vCPU machine: see DEFAULT_THREADS in embeddings/loader.py


@lru_cache(maxsize=2)
def embedder_for(name: str) -> Any:
    return load_embedder(name)


def budget_texts(texts: list[str], max_tokens: int | None) -> list[str]:
    """Rows longer than the budget keep their head (HEAD_SHARE of it) and their tail, joined by a space.

    The embedder's cost grows faster than the row's length (benchmarks/semantic_throughput_bench.py);
    near-duplicates share their start and end as much as their middle, and keeping the tail means two rows
    with one prompt and different responses still embed differently.
    """
    if max_tokens is None:
        return texts
    limit = int(max_tokens * CHARS_PER_TOKEN)
    head = int(limit * HEAD_SHARE)
    tail = limit - head
    return [t if len(t) <= limit else t[:head] + " " + t[len(t) - tail :] for t in texts]


class LengthBucketed:
    """An embedder whose batches hold rows of similar length (less padding), results in the caller's order."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        order = np.argsort(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
        vectors = self.inner.encode(
            [texts[i] for i in order], batch_size=batch_size, show_progress=show_progress
        )
        out = np.empty_like(vectors)
        out[order] = vectors
        return out


def embed(texts: list[str], cfg: SemanticSettings, ctx: StageContext) -> np.ndarray:
    """Vectors of `texts` within the row budget, cached by (model, budgeted text) under ctx.cache_dir: audit,
    curate and evaluate runs over the same rows with the same model reuse them."""
    return embed_cached(
        LengthBucketed(embedder_for(cfg.model)),
        budget_texts(texts, cfg.max_tokens),
        ctx.cache_dir,
        batch_size=cfg.batch_size,
        show_progress=ctx.show_progress,
    )


def greedy_near_dups(
    vectors: np.ndarray,
    order: np.ndarray,
    threshold: float,
    block_size: int = 4096,
    search: str = "auto",
    exact_below: int = EXACT_BELOW,
) -> tuple[np.ndarray, np.ndarray]:
    """ref[i] = index of the kept row row i duplicates (or -1), and its cosine, visiting rows in `order`.

    search="exact" (or "auto" under `exact_below` rows): every row against every kept row, blockwise.
    search="ann" (or "auto" from `exact_below` rows): candidate neighbours from an approximate index (faiss
    IVF by default), each checked with the exact cosine, then the same greedy rule (ann_near_dups).
    """
    n = vectors.shape[0]
    if n >= 2 and (search == "ann" or (search == "auto" and n >= exact_below)):
        return ann_near_dups(vectors, order, threshold)
    return exact_near_dups(vectors, order, threshold, block_size)


def exact_near_dups(
    vectors: np.ndarray, order: np.ndarray, threshold: float, block_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """The brute-force greedy: O(n x kept) dot products, O(block_size x kept) memory per product; kept
    vectors live in one growing float32 matrix."""
    n = vectors.shape[0]
    ref = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan)
    kept_rows = np.zeros(0, dtype=np.int64)
    for begin in range(0, n, block_size):
        block = order[begin : begin + block_size]
        vecs = vectors[block]
        best = np.full(block.size, -np.inf, dtype=np.float32)
        best_at = np.full(block.size, -1, dtype=np.int64)
        for kb in range(0, kept_rows.size, block_size):
            sims = vecs @ vectors[kept_rows[kb : kb + block_size]].T
            arg = sims.argmax(axis=1)
            top = sims[np.arange(block.size), arg]
            better = top > best
            best[better], best_at[better] = top[better], kept_rows[kb + arg[better]]
        dup = best >= threshold
        ref[block[dup]], score[block[dup]] = best_at[dup], best[dup]
        # inside the block: a row may duplicate an earlier row of the same block that is itself kept
        alive = np.flatnonzero(~dup)
        if alive.size > 1:
            inner = vecs[alive] @ vecs[alive].T
            np.fill_diagonal(inner, -np.inf)
            inner[np.triu_indices(alive.size)] = -np.inf  # only earlier rows count
            suspects = np.flatnonzero(inner.max(axis=1) >= threshold)
            dropped_local: set[int] = set()
            for s in suspects:  # few rows; sequential because "earlier and kept" depends on earlier choices
                candidates = np.flatnonzero(inner[s] >= threshold)
                candidates = [c for c in candidates if c not in dropped_local]
                if candidates:
                    c = max(candidates, key=lambda k: inner[s, k])
                    row = block[alive[s]]
                    ref[row], score[row] = block[alive[c]], float(inner[s, c])
                    dropped_local.add(int(s))
            keep_local = np.array([k for k in range(alive.size) if k not in dropped_local], dtype=np.int64)
            kept_rows = np.concatenate([kept_rows, block[alive[keep_local]]])
        else:
            kept_rows = np.concatenate([kept_rows, block[alive]])
    return ref, score


def index_search(vectors: np.ndarray, library: str = ANN_LIBRARY) -> Callable[[np.ndarray, int], tuple]:
    """An approximate index (inner product) over `vectors` and its k-nearest search: (keys, approximate
    cosines). faiss-ivf is the stage's; the HNSW ones (hnswlib, faiss, usearch) stay for the benchmark."""
    n, dim = vectors.shape
    m, ef_add, ef = ANN_CONNECTIVITY, ANN_EXPANSION_ADD, ANN_EXPANSION_SEARCH
    if library == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=max(n, 1), ef_construction=ef_add, M=m)
        index.set_num_threads(ANN_THREADS)
        index.add_items(vectors, np.arange(n))

        def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            index.set_ef(max(ef, k))
            keys, distances = index.knn_query(queries, k)
            return keys.astype(np.int64), 1.0 - distances

        return search
    if library == "faiss":
        import faiss

        faiss.omp_set_num_threads(ANN_THREADS)
        flat = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        flat.hnsw.efConstruction = ef_add
        flat.add(np.ascontiguousarray(vectors, dtype=np.float32))

        def search_faiss(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            flat.hnsw.efSearch = max(ef, k)
            sims, keys = flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)
            return keys.astype(np.int64), sims

        return search_faiss
    if library == "faiss-ivf":
        import faiss

        faiss.omp_set_num_threads(ANN_THREADS)
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = max(1, min(int(IVF_LISTS_PER_SQRT * np.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = IVF_TRAIN_ITERATIONS
        ivf.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST
        ivf.train(data)  # k-means on a sample of IVF_TRAIN_POINTS_PER_LIST x nlist rows
        ivf.add(data)
        ivf.nprobe = min(IVF_PROBES, nlist)

        def search_ivf(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            sims, keys = ivf.search(np.ascontiguousarray(queries, dtype=np.float32), k)
            return keys.astype(np.int64), np.where(keys >= 0, sims, -np.inf)

        return search_ivf
    if library == "usearch":
        # usearch imported before onnxruntime segfaults the process (usearch 2.26, onnxruntime 1.32): load
        # onnxruntime first when it is installed
        try:
            import onnxruntime  # noqa: F401
        except ModuleNotFoundError:
            pass
        from usearch.index import Index

        usearch_index = Index(ndim=dim, metric="ip", dtype="f16", connectivity=m, expansion_add=ef_add,
                              expansion_search=ef)  # fmt: skip
        usearch_index.add(np.arange(n, dtype=np.uint64), vectors, threads=ANN_THREADS)

        def search_usearch(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            found = usearch_index.search(queries, k, threads=ANN_THREADS)
            keys = found.keys.astype(np.int64)
            return np.where(keys < n, keys, -1), 1.0 - found.distances

        return search_usearch
    raise ValueError(f"unknown ANN library {library!r}")


def knn_candidates(
    vectors: np.ndarray, threshold: float, library: str = ANN_LIBRARY
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, neighbours) of every pair the index proposes with approximate cosine >= threshold - margin.

    k = ANN_K first; rows whose k-th neighbour still clears the bar are asked again with 4x k (up to
    ANN_MAX_K): a cluster of many copies must not hide its representative.
    """
    n = vectors.shape[0]
    search = index_search(vectors, library)
    bar = threshold - ANN_MARGIN
    rows_out, cols_out = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    pending, k = np.arange(n), ANN_K
    while pending.size:
        keys, sims = search(vectors[pending], min(k, n))
        ok = (sims >= bar) & (keys != pending[:, None]) & (keys >= 0)
        r, c = np.nonzero(ok)
        rows_out.append(pending[r])
        cols_out.append(keys[r, c])
        if k >= min(ANN_MAX_K, n):
            break
        pending, k = pending[sims[:, -1] >= bar], k * 4  # the list may have been cut short: ask again
    return np.concatenate(rows_out), np.concatenate(cols_out)


def ann_near_dups(
    vectors: np.ndarray, order: np.ndarray, threshold: float, library: str = ANN_LIBRARY
) -> tuple[np.ndarray, np.ndarray]:
    """The greedy rule of exact_near_dups over the index's candidate pairs: a row is dropped when an *earlier
    kept* row has exact cosine >= threshold with it (ref = the most similar such row); kept rows never drop."""
    n = vectors.shape[0]
    ref = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan)
    rows, cols = knn_candidates(vectors, threshold, library)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # both directions (i found j, or j found i), the later row first: (later, earlier) pairs, unique
    later = np.where(rank[rows] > rank[cols], rows, cols)
    earlier = np.where(rank[rows] > rank[cols], cols, rows)
    packed = np.unique(later * n + earlier)
    later, earlier = packed // n, packed % n
    sims = np.empty(later.size, dtype=np.float32)
    for lo in range(0, later.size, 1 << 18):  # the exact cosine, in chunks
        sims[lo : lo + (1 << 18)] = np.einsum(
            "ij,ij->i", vectors[later[lo : lo + (1 << 18)]], vectors[earlier[lo : lo + (1 << 18)]]
        )
    keep = sims >= threshold
    later, earlier, sims = later[keep], earlier[keep], sims[keep]
    by_row = np.lexsort((-sims, rank[later]))  # rows in keep order, their candidates most similar first
    later, earlier, sims = later[by_row], earlier[by_row], sims[by_row]
    starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]]) if later.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], later.size].astype(np.int64)
    kept = np.ones(n, dtype=bool)
    # sequential: whether an earlier row is kept depends on the rows before it. Only rows with a candidate
    # above the threshold are visited (a few % of a corpus); the inner loop usually stops at its first pair.
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        for m in range(a, b):
            if kept[earlier[m]]:
                row = later[m]
                kept[row], ref[row], score[row] = False, earlier[m], float(sims[m])
                break
    return ref, score


def run(frame: pl.DataFrame, cfg: SemanticSettings, ctx: StageContext) -> StageOutput:
    """near_dup_semantic drops with ref_sample_id = the kept row and score = cosine."""
    texts = frame["content"].fill_null("").to_list()
    return decide(frame, embed(texts, cfg, ctx), cfg, ctx)


def encode_plan(keys: np.ndarray, lengths: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch, position) of each miss key (unique, sorted as np.unique gives them) as the local stage encodes
    them: embed_cached hands the misses over in key order, LengthBucketed sorts them stably by length and
    cuts batches of `batch_size`. use-v3 quantises activations per batch (int8), so a row's vector depends
    on its batch-mates (up to 0.03 apart, measured): the Ray executor encodes exactly these batches."""
    order = np.argsort(lengths, kind="stable")  # keys arrive sorted: ties stay in key order, as locally
    position = np.empty(keys.size, dtype=np.int64)
    position[order] = np.arange(keys.size)
    return position // batch_size, position


def decide(frame: pl.DataFrame, vectors: np.ndarray, cfg: SemanticSettings, ctx: StageContext) -> StageOutput:
    """The global half of the stage, shared by both executors: the neighbour search and greedy keep over
    every row's vector (row i of `vectors` is row i of `frame`)."""
    order = np.argsort(keep_order(frame, cfg.keep, frame["content"]).to_numpy(), kind="stable")
    ref, score = greedy_near_dups(vectors, order, cfg.threshold, cfg.block_size, cfg.search, cfg.exact_below)
    dropped = np.flatnonzero(ref >= 0)
    ctx.stats["semantic"] = {"model": cfg.model, "threshold": cfg.threshold, "dropped": int(dropped.size)}
    ids = frame["sample_id"]
    out = decisions(
        ids.gather(dropped),
        "semantic",
        False,
        "near_dup_semantic",
        ref_sample_id=ids.gather(ref[dropped]),
        score=pl.Series(score[dropped].astype(np.float64)),
        evidence=f"cosine ({cfg.model}) >= {cfg.threshold}",
    )
    return survivors(frame, out)
