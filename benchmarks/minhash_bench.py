"""MinHash near-dup stage vs datasketch's per-document MinHash + MinHashLSH, measured in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/minhash_bench.py [--docs 100000] [--subset 10000]

Corpus: seeded mixed Korean/English instruction-like documents (~1,200 characters) of which ~10% are
edited copies (5-20% of words replaced) and ~3% exact copies of earlier documents. Quality is measured on
the first `--subset` documents against the exact answer: all pairs with exact Jaccard >= 0.7 on character
5-grams (found by prefix filtering, then verified exactly), and the greedy keep-first drop set they imply.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import polars as pl

from tunelab.curate import minhash
from tunelab.curate.common import StageContext
from tunelab.curate.config import MinhashSettings
from tunelab.textnorm import char_shingles, shingle_hashes

THRESHOLD = 0.7
NGRAM = 5


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    syllables = [chr(0xAC00 + i) for i in rng.choice(11172, 400, replace=False)]
    korean = ["".join(rng.choice(syllables, rng.integers(2, 5))) for _ in range(6000)]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    english = ["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(4000)]
    vocab = np.array(korean + english + ["설명해 주세요.", "Explain:", "### 답변", "- ", "1.", "?"])
    lengths = rng.integers(150, 260, n_docs)
    word_ids = rng.integers(0, len(vocab), lengths.sum())
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    docs: list[str] = []
    kinds = rng.random(n_docs)
    for i in range(n_docs):
        if i > 10 and kinds[i] < 0.03:
            docs.append(docs[int(rng.integers(0, i))])
        elif i > 10 and kinds[i] < 0.13:
            words = docs[int(rng.integers(0, i))].split(" ")
            rate = rng.uniform(0.05, 0.20)
            hit = np.flatnonzero(rng.random(len(words)) < rate)
            for k in hit:
                words[k] = str(vocab[rng.integers(0, len(vocab))])
            docs.append(" ".join(words))
        else:
            docs.append(" ".join(vocab[word_ids[bounds[i] : bounds[i + 1]]]))
    return docs


def exact_pairs(texts: list[str], threshold: float) -> dict[tuple[int, int], float]:
    """All pairs (i < j) with exact Jaccard >= threshold, by prefix filtering (no false negatives)."""
    hashes, counts = shingle_hashes(texts, NGRAM, seed=12345)
    owner = np.repeat(np.arange(len(texts)), counts)
    table = pl.DataFrame({"doc": owner, "h": hashes}).unique()
    freq = table.group_by("h").len()
    table = table.join(freq, on="h").sort(["doc", "len", "h"])
    table = table.with_columns(pos=pl.int_range(pl.len()).over("doc"), size=pl.len().over("doc"))
    prefix = table.filter(pl.col("pos") < pl.col("size") - (pl.col("size") * threshold).ceil() + 1)
    cands = (
        prefix.select("h", "doc")
        .join(prefix.select("h", other="doc"), on="h")
        .filter(pl.col("doc") < pl.col("other"))
        .select("doc", "other")
        .unique()
    )
    sets = {d: set(g["h"].to_list()) for (d,), g in table.select("doc", "h").group_by("doc")}
    out = {}
    for a, b in cands.iter_rows():
        inter = len(sets[a] & sets[b])
        j = inter / (len(sets[a]) + len(sets[b]) - inter)
        if j >= threshold:
            out[(a, b)] = j
    return out


def greedy_drops(n: int, pairs: dict[tuple[int, int], float]) -> set[int]:
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(b, []).append(a)
    dropped: set[int] = set()
    for i in range(n):
        if any(j not in dropped for j in neighbours.get(i, [])):
            dropped.add(i)
    return dropped


def prf(predicted: set[int], truth: set[int]) -> tuple[float, float, float]:
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 1.0
    r = tp / len(truth) if truth else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


# the machine is shared: CPU seconds of this process are reported beside wall seconds
def run_tunelab(texts: list[str]) -> tuple[set[int], float, float]:
    frame = pl.DataFrame({"sample_id": [str(i) for i in range(len(texts))], "content": texts})
    start, cpu = time.perf_counter(), time.process_time()
    out = minhash.run(frame, MinhashSettings(threshold=THRESHOLD, ngram=NGRAM), StageContext()).decisions
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {int(s) for s in out.filter(~pl.col("kept"))["sample_id"]}, elapsed, cpu


def run_datasketch(texts: list[str]) -> tuple[set[int], float, float]:
    from datasketch import MinHash, MinHashLSH

    start, cpu = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    dropped = set()
    for i, text in enumerate(texts):
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in char_shingles(text, NGRAM)])
        if lsh.query(m):
            dropped.add(i)
        else:
            lsh.insert(str(i), m)
    return dropped, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--subset", type=int, default=10_000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    corpus = make_corpus(args.docs)
    subset = corpus[: args.subset]
    mean_chars = sum(map(len, corpus)) / len(corpus)
    print(
        f"corpus: {len(corpus):,} docs, mean {mean_chars:,.0f} chars (built in {time.perf_counter() - t0:.1f}s)"
    )

    truth_pairs = exact_pairs(subset, THRESHOLD)
    truth = greedy_drops(len(subset), truth_pairs)
    print(
        f"exact answer on {len(subset):,}: {len(truth_pairs):,} pairs with J >= {THRESHOLD}, {len(truth):,} drops"
    )

    _, full_s, full_cpu = run_tunelab(corpus)
    ours, ours_sub_s, _ = run_tunelab(subset)
    theirs, theirs_s, theirs_cpu = run_datasketch(subset)
    bands, rows = minhash.band_params(THRESHOLD, 128)
    ours_rate, theirs_rate = len(corpus) / full_s, len(subset) / theirs_s
    p, r, f = prf(ours, truth)
    dp, dr, df = prf(theirs, truth)
    print(
        f"tunelab minhash  ({bands}x{rows}, exact verify): {ours_rate:,.0f} docs/s wall, "
        f"{len(corpus) / full_cpu:,.0f} docs/CPU-s on {len(corpus):,} ({full_s:.2f}s); "
        f"{len(subset) / ours_sub_s:,.0f} docs/s on {len(subset):,}"
    )
    print(
        f"datasketch MinHash+MinHashLSH (per document): {theirs_rate:,.0f} docs/s wall, "
        f"{len(subset) / theirs_cpu:,.0f} docs/CPU-s on {len(subset):,}"
    )
    print(
        f"throughput ratio tunelab/datasketch: {ours_rate / theirs_rate:,.1f}x wall, "
        f"{(len(corpus) / full_cpu) / (len(subset) / theirs_cpu):,.1f}x CPU"
    )
    print(
        f"quality on {len(subset):,} vs exact greedy drops: tunelab P={p:.3f} R={r:.3f} F1={f:.3f}; "
        f"datasketch P={dp:.3f} R={dr:.3f} F1={df:.3f}"
    )
    if not math.isfinite(f) or f < 0.95:
        print("WARNING: F1 below the 0.95 target")


if __name__ == "__main__":
    main()
