"""Semantic near-dup neighbour search: brute force vs usearch / faiss-cpu / hnswlib candidates, same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/semantic_search_bench.py [--sizes 10000,100000]
        [--libraries usearch,faiss,hnswlib] [--brute-max 100000] [--scale 1000000]

Vectors: seeded 512-d unit vectors (use-v3's size) with structure like real embeddings -- 2,000 topic
centres, each row = 0.55 x its centre + noise, so rows of a topic have cosine ~0.3 -- and ~10% planted
near-duplicates of earlier rows (cosine 0.80-0.99 to their source; some copies of copies). Threshold 0.85
(use-v3's default), keep order = row order.

For each size: brute force (tunelab's blockwise greedy, exact), and for each library the candidate
neighbours (HNSW, 1 thread, k=16 re-asked with 4x k for rows whose list is full, f16/f32 vectors) fed to
the same exact-cosine greedy; reported: build + search seconds, the whole greedy, drop recall and
precision against brute force, and the index's memory. `--scale N`: the semantic stage itself (`semantic.run`)
on N rows whose embeddings are all in the cache (synthetic vectors written to a cache file first): wall
time and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunelab.curate import semantic  # noqa: E402

DIM = 512
THRESHOLD = 0.85


def make_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        noise = rng.standard_normal((hi - lo, dim)).astype(np.float32) / np.sqrt(dim)
        out[lo:hi] = 0.55 * centres[rng.integers(0, len(centres), hi - lo)] + 0.835 * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    copies = np.flatnonzero(rng.random(n) < 0.10)
    copies = copies[copies > 10]
    sources = (rng.random(copies.size) * copies).astype(np.int64)  # an earlier row (maybe itself a copy)
    target = rng.uniform(0.80, 0.99, copies.size).astype(np.float32)  # cosine to the source
    noise = rng.standard_normal((copies.size, dim)).astype(np.float32)
    for k in range(copies.size):  # in order: a copy of a copy copies the copy as it is by then
        src = out[sources[k]]
        e = noise[k] - (noise[k] @ src) * src
        e /= np.linalg.norm(e)
        out[copies[k]] = target[k] * src + np.sqrt(1 - target[k] ** 2) * e
    return out


def drops_quality(ref: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    got, want = ref >= 0, truth >= 0
    tp = int((got & want).sum())
    return tp / max(int(want.sum()), 1), tp / max(int(got.sum()), 1)


def greedy_with(library: str, vectors: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, float]:
    """The stage's ANN greedy with candidates from `library`: (ref, seconds for index + search + greedy)."""
    start = time.perf_counter()
    ref, _ = semantic.ann_near_dups(vectors, order, THRESHOLD, library)
    return ref, time.perf_counter() - start


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def scale_run(n: int, sample: int = 2000) -> None:
    """semantic.run on n rows whose embeddings are all cached (cache load + search): wall time and peak RSS;
    then the neighbour search alone, and its candidate-pair recall against brute force for `sample` rows
    (every row with cosine >= threshold to a sampled row, by one exact product against all n)."""
    import polars as pl

    from tunelab.curate.common import StageContext
    from tunelab.curate.config import SemanticSettings
    from tunelab.embeddings.loader import _cache_file, text_key

    start = time.perf_counter()
    texts = [f"synthetic row {i}" for i in range(n)]
    embedder = semantic.LengthBucketed(semantic.embedder_for("use-v3"))
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder)
        vectors = make_vectors(n, seed=1)
        keys = np.array([int(text_key(embedder.name, t), 16) for t in texts], dtype=np.uint64)
        np.savez(_cache_file(cache, embedder), keys=keys, vectors=vectors)
        del vectors, keys
        print(f"\nscale: {n:,} rows, vectors + cache written in {time.perf_counter() - start:.1f} s; "
              f"peak RSS so far {peak_rss_gib():.2f} GiB")  # fmt: skip
        frame = pl.DataFrame({"sample_id": [str(i) for i in range(n)], "content": texts})
        start = time.perf_counter()
        out = semantic.run(frame, SemanticSettings(threshold=THRESHOLD), StageContext(cache_dir=cache))
        wall = time.perf_counter() - start
    print(
        f"semantic.run on {n:,} rows, embeddings all cached: {wall:.1f} s wall, {out.decisions.height:,} drops, "
        f"peak RSS {peak_rss_gib():.2f} GiB (the whole process)"
    )
    vectors = make_vectors(n, seed=1)
    start = time.perf_counter()
    rows, cols = semantic.knn_candidates(vectors, THRESHOLD)
    search = time.perf_counter() - start
    found = set(zip(rows.tolist(), cols.tolist(), strict=True))
    probe = np.random.default_rng(7).choice(n, sample, replace=False)
    want = got = 0
    for lo in range(0, sample, 500):
        block = probe[lo : lo + 500]
        sims = vectors[block] @ vectors.T
        sims[np.arange(block.size), block] = -1
        for r, c in zip(*np.nonzero(sims >= THRESHOLD), strict=True):
            i, j = int(block[r]), int(c)
            want += 1
            got += (i, j) in found or (j, i) in found
    print(
        f"neighbour search alone on {n:,}: {search:.1f} s; candidate pairs of {sample:,} sampled rows vs brute "
        f"force: recall {got / max(want, 1):.4f} ({got:,} of {want:,} pairs with cosine >= {THRESHOLD})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--libraries", default="usearch,faiss,hnswlib,faiss-ivf")
    parser.add_argument("--brute-max", type=int, default=100_000)
    parser.add_argument("--scale", type=int, default=0)
    args = parser.parse_args()
    for n in [int(s) for s in args.sizes.split(",") if s]:
        vectors = make_vectors(n)
        order = np.arange(n)
        print(f"\n{n:,} vectors x {DIM}, threshold {THRESHOLD}")
        truth = None
        if n <= args.brute_max:
            start = time.perf_counter()
            truth, _ = semantic.exact_near_dups(vectors, order, THRESHOLD)
            brute = time.perf_counter() - start
            print(f"  {'brute force (exact)':<22} {brute:8.2f} s total, {int((truth >= 0).sum()):,} drops")
        for library in args.libraries.split(","):
            ref, total = greedy_with(library, vectors, order)
            line = f"  {library:<22} {total:8.2f} s total, {int((ref >= 0).sum()):,} drops"
            if truth is not None:
                recall, precision = drops_quality(ref, truth)
                line += f"; vs brute force: recall {recall:.4f}, precision {precision:.4f}, {brute / total:.1f}x faster"
            print(line)
    if args.scale:
        scale_run(args.scale)


if __name__ == "__main__":
    main()
