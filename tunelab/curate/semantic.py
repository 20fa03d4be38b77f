"""Semantic near-dup stage: cosine of sentence embeddings against rows already kept, searched blockwise.

Embeddings come from `tunelab.embeddings` (default: multilingual USE v3 int8 ONNX, offline) and are
cached by content hash under WORKSPACE/cache/embeddings. Rows are visited in keep order (first|longest);
a row is dropped when its cosine with some kept row is >= threshold, and `ref_sample_id` is that kept row
-- kept rows are never dropped later, so there are no chains.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, keep_order, survivors
from tunelab.curate.config import SemanticSettings
from tunelab.embeddings.loader import embed_cached, load_embedder


@lru_cache(maxsize=2)
def embedder_for(name: str) -> Any:
    return load_embedder(name)


def embed(texts: list[str], cfg: SemanticSettings, ctx: StageContext) -> np.ndarray:
    return embed_cached(
        embedder_for(cfg.model),
        texts,
        ctx.cache_dir,
        batch_size=cfg.batch_size,
        show_progress=ctx.show_progress,
    )


def greedy_near_dups(
    vectors: np.ndarray, order: np.ndarray, threshold: float, block_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """ref[i] = index of the kept row row i duplicates (or -1), and its cosine, visiting rows in `order`.

    Memory is O(block_size x kept) per product; kept vectors live in one growing float32 matrix.
    """
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


def run(frame: pl.DataFrame, cfg: SemanticSettings, ctx: StageContext) -> StageOutput:
    """near_dup_semantic drops with ref_sample_id = the kept row and score = cosine."""
    texts = frame["content"].fill_null("").to_list()
    vectors = embed(texts, cfg, ctx)
    order = np.argsort(keep_order(frame, cfg.keep, frame["content"]).to_numpy(), kind="stable")
    ref, score = greedy_near_dups(vectors, order, cfg.threshold, cfg.block_size)
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
