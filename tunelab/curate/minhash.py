"""Near-duplicate removal with MinHash LSH, vectorised over the whole batch.

Sketch: one-permutation hashing (OPH) with optimal densification (Shrivastava 2017): every character
n-gram is hashed once, its top bits pick one of `num_perm` bins and the bin keeps its minimum.
`num_perm` true permutations cost num_perm hash-ops per shingle; OPH costs one and estimates Jaccard
with the same variance, and its estimates agree with datasketch's (tests/test_curate_stages.py,
test_vectorised_minhash_agrees_with_datasketch). benchmarks/minhash_bench.py measures the stage's speed
and its precision/recall against exact Jaccard, beside datasketch's per-document MinHash + MinHashLSH.
Bands/rows come from datasketch's `optimal_param`, weighted towards recall because every candidate
pair is verified with exact Jaccard on the shingle sets before anything is dropped.

Signatures and verification both work on the dedup key (tunelab/curate/dedup_key.py: NFKC, lower-cased,
punctuation removed, whitespace collapsed by default): copies that differ only in spacing, punctuation or
case are the same key. The stage's output frame keeps the original text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, keep_order, survivors
from tunelab.curate.config import MinhashSettings
from tunelab.curate.dedup_key import dedup_keys, describe
from tunelab.textnorm import shingle_hashes, window_hashes

EMPTY = np.uint32(0xFFFFFFFF)
# ~1M characters per chunk keeps every pass's arrays in L2/L3: 2-3x faster than 8k-document chunks
CHUNK_CHARS = 1_000_000
# recall-weighted banding (18x7 at t=0.7, 128 perms): verification restores precision
FALSE_POSITIVE_WEIGHT = 0.2
FALSE_NEGATIVE_WEIGHT = 0.8


def scheme_for(total_chars: int, docs: int, num_perm: int) -> str:
    """'permutation' or 'oph', from the mean text length of ALL the texts that will be compared.

    Short texts (chat turns, titles) fill few OPH bins and densification dominates; true permutations cost
    shingles x num_perm, which is small exactly when texts are short. Signatures are only comparable within
    one scheme, so an executor that computes them batch by batch picks the scheme once from the global
    mean (total_chars / docs) and passes it to every `signatures` call.
    """
    return "permutation" if docs and total_chars / docs < num_perm else "oph"


def signatures(
    texts: list[str], ngram: int = 5, num_perm: int = 128, seed: int = 1, scheme: str | None = None
) -> np.ndarray:
    """(len(texts), num_perm) uint32 signatures; identical shingle sets give identical rows.

    `scheme` None: chosen from these texts (`scheme_for`); batch-wise callers pass the global choice."""
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    probes = _probe_table(num_perm, seed)
    if scheme is None:
        scheme = scheme_for(sum(len(t) for t in texts), len(texts), num_perm)
    if scheme == "permutation":
        return _permutation_signatures(texts, ngram, num_perm, seed)
    ends = np.cumsum(np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts)))
    cuts = np.unique(np.searchsorted(ends, np.arange(CHUNK_CHARS, ends[-1] if len(ends) else 0, CHUNK_CHARS)))
    bounds = [0, *[int(c) + 1 for c in cuts if c + 1 < len(texts)], len(texts)]
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end > begin:
            out[begin:end] = _chunk_signatures(texts[begin:end], ngram, num_perm, seed, probes)
    return out


def _chunk_signatures(
    texts: list[str], ngram: int, num_perm: int, seed: int, probes: np.ndarray
) -> np.ndarray:
    h, starts, counts = window_hashes(texts, ngram, seed)
    docs = len(texts)
    owned = np.diff(np.append(starts, h.size))  # windows per text, valid ones first
    top = h
    if num_perm & (num_perm - 1) == 0:
        bins = top >> np.uint32(32 - int(np.log2(num_perm)))
    else:
        bins = ((top.astype(np.uint64) * np.uint64(num_perm)) >> np.uint64(32)).astype(np.uint32)
    slot = np.repeat(np.arange(docs, dtype=np.int64) * num_perm, owned)
    np.add(slot, bins, out=slot, casting="unsafe")
    values = top
    # windows that straddle a separator get the EMPTY value: they can never lower a bin's minimum
    invalid = owned - counts
    if invalid.sum():
        first_invalid = np.repeat(starts + counts, invalid)
        within = np.arange(invalid.sum(), dtype=np.int64) - np.repeat(np.cumsum(invalid) - invalid, invalid)
        values[first_invalid + within] = EMPTY
    sig = np.full(docs * num_perm, EMPTY, dtype=np.uint32)
    np.minimum.at(sig, slot, values)
    return _densify(sig.reshape(docs, num_perm), probes)


def _permutation_signatures(texts: list[str], ngram: int, num_perm: int, seed: int) -> np.ndarray:
    """Classic MinHash: num_perm hash functions a*x+b mod 2**32 over each text's shingle hashes."""
    hashes, counts = shingle_hashes(texts, ngram, seed)
    rng = np.random.default_rng(seed + 104729)
    a = (rng.integers(0, 2**32, num_perm, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
    b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    block = max(1, 4_000_000 // max(hashes.size, 1))
    for p in range(0, num_perm, block):
        permuted = hashes[None, :] * a[p : p + block, None] + b[p : p + block, None]
        _fmix_rows(permuted)
        out[:, p : p + block] = np.minimum.reduceat(permuted, starts, axis=1).T
    return out


def _fmix_rows(h: np.ndarray) -> None:
    # a*x+b alone is linear; the finaliser makes the minimum behave like a random permutation's
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)


def _probe_table(num_perm: int, seed: int, attempts: int = 64) -> np.ndarray:
    """Bin k's t-th fallback bin; shared by all documents so densified bins still collide consistently."""
    rng = np.random.default_rng(seed + 7919)
    return rng.integers(0, num_perm, size=(num_perm, attempts), dtype=np.int64)


def _densify(sig: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Optimal densification: an empty bin borrows the value of the first non-empty bin on its probe path."""
    docs, num_perm = sig.shape
    original = sig.reshape(-1).copy()
    flat = sig.reshape(-1)
    empty = np.flatnonzero(original == EMPTY)
    row_base = empty - empty % num_perm
    col = empty % num_perm
    for attempt in range(probes.shape[1]):
        if empty.size == 0:
            break
        values = original[row_base + probes[col, attempt]]
        found = values != EMPTY
        flat[empty[found]] = values[found]
        keep = ~found
        empty, row_base, col = empty[keep], row_base[keep], col[keep]
    if empty.size:
        # docs with a handful of shingles: fall back to the document's minimum (still a function of the set)
        flat[empty] = original.reshape(docs, num_perm).min(axis=1)[empty // num_perm]
    return sig


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


@functools.lru_cache(maxsize=64)
def band_params(threshold: float, num_perm: int) -> tuple[int, int]:
    from datasketch.lsh import _optimal_param

    bands, rows = _optimal_param(threshold, num_perm, FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT)
    return int(bands), int(rows)


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, seed: int = 1) -> np.ndarray:
    """(m, 2) int64 pairs (doc, bucket root) sharing a band bucket; each bucket is a star around its lowest doc.

    One argsort of (band-salted) bucket keys in numpy: a polars window over doc x band rows was the
    stage's largest cost at 200k documents.
    """
    n = sig.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    return star_pairs(band_keys(sig, bands, rows, seed))


def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int = 1) -> np.ndarray:
    """(bands, n) uint64 bucket keys, band-major; a row's keys depend on its signature alone, so batches
    can be keyed apart and concatenated along axis 1 (what a batch-wise or distributed executor shuffles)."""
    n = sig.shape[0]
    rng = np.random.default_rng(seed + 31)
    weights = rng.integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
    salts = rng.integers(1, 2**63, size=bands, dtype=np.uint64)
    # band by band into a band-major array: a (n, bands, rows) uint64 temporary was 1 GB per million docs
    keys = np.empty((bands, n), dtype=np.uint64)
    for band in range(bands):
        block = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
        np.sum(block * weights, axis=1, dtype=np.uint64, out=keys[band])  # wraps mod 2**64 on purpose
    keys ^= salts[:, None]  # the same rows in two different bands are different buckets
    keys *= np.uint64(0x9E3779B97F4A7C15)
    return keys


def star_pairs(keys: np.ndarray) -> np.ndarray:
    """(m, 2) int64 unique pairs (doc, bucket root) from (bands, n) band keys: each bucket is a star
    around its lowest doc (row index along axis 1)."""
    n = keys.shape[1]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    flat = keys.reshape(-1)
    order = np.argsort(flat)  # unstable is 5x faster on uint64; roots come from a min-reduce instead
    sorted_keys = flat[order]
    starts_run = np.empty(order.size, dtype=bool)
    starts_run[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts_run[1:])
    run_starts = np.flatnonzero(starts_run)
    docs = order % n
    roots = np.minimum.reduceat(docs, run_starts)[np.cumsum(starts_run) - 1]
    member = docs != roots
    if not member.any():
        return np.zeros((0, 2), dtype=np.int64)
    packed = np.unique(docs[member].astype(np.int64) * n + roots[member])
    return np.stack([packed // n, packed % n], axis=1)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


class ShingleSets:
    """Exact shingle-hash sets of the docs in candidate pairs, made unique per doc on first use.

    One global sort of all involved shingles cost more than the whole signature pass; most docs are
    compared once or twice, so sorting each doc's ~1k hashes lazily is cheaper.
    """

    def __init__(self, texts: list[str], docs: np.ndarray, ngram: int, seed: int) -> None:
        hashes, counts = shingle_hashes([texts[i] for i in docs], ngram, seed)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        self._slices = {int(d): (int(offsets[k]), int(offsets[k + 1])) for k, d in enumerate(docs)}
        self._hashes = hashes
        self._unique: dict[int, np.ndarray] = {}

    def get(self, doc: int) -> np.ndarray:
        found = self._unique.get(doc)
        if found is None:
            begin, end = self._slices[doc]
            ordered = np.sort(self._hashes[begin:end])
            keep = np.empty(ordered.size, dtype=bool)
            keep[:1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
            # np.unique hashes instead of sorting in numpy 2.x: 5x slower on arrays this small
            found = self._unique[doc] = ordered[keep]
        return found

    def jaccard(self, a: int, b: int) -> float:
        x, y = self.get(a), self.get(b)
        inter = np.intersect1d(x, y, assume_unique=True).size
        union = x.size + y.size - inter
        return inter / union if union else 1.0


def greedy_component(
    members: np.ndarray, jaccard: Callable[[int, int], float], threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The keep rule over ONE LSH component, `members` in rank order (best first): the best-ranked pending
    doc becomes a representative, every other pending doc whose exact Jaccard with it is >= threshold is
    dropped with it as ref; the rest stay pending for the next representative. No chains: a doc is only
    ever compared with representatives. Both executors call this (local `cluster`, the Ray executor per
    component), so the same component gives the same representative, ref and score everywhere.

    Returns (ref, score) aligned with `members`: ref = the representative's doc id or -1 (kept)."""
    ref = np.full(members.size, -1, dtype=np.int64)
    score = np.full(members.size, np.nan)
    pending = np.arange(members.size)
    while pending.size > 1:
        rep = members[pending[0]]
        rest = pending[1:]
        matched = np.zeros(rest.size, dtype=bool)
        for k, pos in enumerate(rest):
            j = jaccard(int(members[pos]), int(rep))
            if j >= threshold:
                ref[pos], score[pos], matched[k] = rep, j, True
        pending = rest[~matched]
    return ref, score


def cluster(
    texts: list[str], sig: np.ndarray, settings: MinhashSettings, rank: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Greedy clustering without chains: within each LSH component, in rank order, a doc is dropped when its
    exact Jaccard with an earlier representative is >= threshold, else it becomes a representative
    (`greedy_component`).

    Returns (ref, score, n_candidate_pairs, component): ref[i] = representative doc index or -1 (kept),
    score = exact Jaccard, component[i] = the lowest doc index of i's LSH component (-1 when the doc
    collided with nothing): a label that does not depend on how components are numbered, so a distributed
    executor, which knows each component by its lowest row, names it the same.
    """
    n = len(texts)
    ref = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan)
    bands, rows = band_params(settings.threshold, settings.num_perm)
    pairs = candidate_pairs(sig, bands, rows, settings.seed)
    if len(pairs) == 0:
        return ref, score, 0, np.full(n, -1, dtype=np.int64)
    labels = components(n, pairs)
    sizes = np.bincount(labels)
    involved = np.flatnonzero(sizes[labels] > 1)
    sets = ShingleSets(texts, involved, settings.ngram, settings.seed)
    lowest = np.full(sizes.size, n, dtype=np.int64)
    np.minimum.at(lowest, labels, np.arange(n, dtype=np.int64))
    pending = involved[np.lexsort((rank[involved], labels[involved]))]
    comp = labels[pending]
    cuts = np.flatnonzero(comp[1:] != comp[:-1]) + 1
    for members in np.split(pending, cuts):
        ref[members], score[members] = greedy_component(members, sets.jaccard, settings.threshold)
    return ref, score, len(pairs), np.where(sizes[labels] > 1, lowest[labels], -1)


def cluster_label(first_sample_id: str) -> str:
    """split's group label of a component's kept rows: named by its first row's sample id, which every
    executor knows the same way (component numbers differ between executors)."""
    return f"minhash:{first_sample_id}"


def run(frame: pl.DataFrame, cfg: MinhashSettings, ctx: StageContext) -> StageOutput:
    """Decisions for `frame` (needs sample_id and content): near_dup_minhash drops with ref + exact Jaccard
    of the rows' dedup keys."""
    texts = dedup_keys(frame["content"], cfg.key)
    sig = signatures(texts, cfg.ngram, cfg.num_perm, cfg.seed)
    rank = keep_order(frame, cfg.keep, frame["content"]).to_numpy()
    ref, score, pairs, component = cluster(texts, sig, cfg, rank)
    return outcome(frame, cfg, ctx, ref, score, pairs, component)


def outcome(
    frame: pl.DataFrame,
    cfg: MinhashSettings,
    ctx: StageContext,
    ref: np.ndarray,
    score: np.ndarray,
    pairs: int,
    component: np.ndarray,
) -> StageOutput:
    """The stage's output from `cluster`'s arrays (positions in `frame`): decisions, split groups in
    ctx.clusters and the report's numbers. Shared with the Ray executor, which computes the arrays on the
    cluster."""
    dropped = np.flatnonzero(ref >= 0)
    ids = frame["sample_id"]
    # kept members of one LSH component (similar, under the threshold) must land on one side of the split
    kept_in_component = np.flatnonzero((component >= 0) & (ref < 0))
    for doc in kept_in_component:
        ctx.clusters[ids[int(doc)]] = cluster_label(ids[int(component[doc])])
    ctx.stats["minhash"] = {
        "bands_rows": list(band_params(cfg.threshold, cfg.num_perm)),
        "candidate_pairs": int(pairs),
        "dropped": int(dropped.size),
        "kept_in_clusters": int(kept_in_component.size),
    }
    if dropped.size == 0:
        return StageOutput(frame, decisions([], "minhash", True))
    out = decisions(
        ids.gather(dropped),
        "minhash",
        False,
        "near_dup_minhash",
        ref_sample_id=ids.gather(ref[dropped]),
        score=pl.Series(score[dropped]),
        evidence=f"exact Jaccard of {cfg.ngram}-char shingles of the key ({describe(cfg.key)}) >= {cfg.threshold}",
    )
    return survivors(frame, out)
