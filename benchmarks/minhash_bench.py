"""MinHash near-dup stage vs datasketch and rensa, measured in the same run, on a corpus with real-copy noise.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/minhash_bench.py [--docs 100000] [--subset 10000]
        [--peer-docs N]   # documents the peers run on (default: all of --docs)

Corpus: seeded mixed Korean/English instruction-like documents (~1,200 characters; English words partly
capitalised, punctuation after some words) of which ~10% are edited copies of an earlier document (5-20%
of words replaced) and ~3% exact copies. Every copy then carries the noise real copies carry, each with
probability 1/2: doubled spaces, changed punctuation (marks dropped, added or swapped), changed case
(words upper/lower-cased, or the whole copy lower-cased).

Truth: all pairs with exact Jaccard >= 0.7 on character 5-grams of the *dedup key* (NFKC, lower-cased,
punctuation removed, whitespace collapsed: what datatrove's and text-dedup's MinHash compare), found by
prefix filtering and verified exactly, and the greedy keep-first drop set they imply. Quality is measured
on the first `--subset` documents: tunelab with the key switched off (raw text, the stage before the key)
and with the default key, datasketch and rensa on the same key.

Speed, end to end from the raw texts on `--peer-docs` documents: tunelab's stage (key + signatures + LSH +
exact verification); datasketch per-document MinHash + MinHashLSH (query, then insert: keep-first greedy);
rensa's batch Rust MinHash (`RMinHash.from_token_sets`) + `RMinHashLSH` 16x8 (query, then insert;
no verification). The peers get their keys from the same vectorised polars expression and their shingles
from a Python set comprehension (what their APIs take).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from tunelab.curate import minhash
from tunelab.curate.common import StageContext
from tunelab.curate.config import DedupKeySettings, MinhashSettings
from tunelab.curate.dedup_key import dedup_keys
from tunelab.textnorm import char_shingles, shingle_hashes

THRESHOLD = 0.7
NGRAM = 5
KEY = DedupKeySettings()
RAW = DedupKeySettings(unicode="none", lowercase=False, punctuation=False, whitespace=False)
PUNCT = [".", ",", "!", "?", ";", ":", "…", "~"]


def make_vocab(rng: np.random.Generator) -> np.ndarray:
    syllables = [chr(0xAC00 + i) for i in rng.choice(11172, 400, replace=False)]
    korean = ["".join(rng.choice(syllables, rng.integers(2, 5))) for _ in range(6000)]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    english = ["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(4000)]
    english = [w.capitalize() if k % 4 == 0 else w for k, w in enumerate(english)]
    return np.array(korean + english + ["설명해 주세요.", "Explain:", "### 답변", "- ", "1.", "?"])


def add_noise(words: list[str], rng: np.random.Generator) -> list[str]:
    """Doubled spaces, changed punctuation, changed case: each with probability 1/2."""
    if rng.random() < 0.5:  # punctuation: strip, add or swap marks after ~15% of words
        for k in np.flatnonzero(rng.random(len(words)) < 0.15):
            w = words[k].rstrip("".join(PUNCT))
            words[k] = w + (str(rng.choice(PUNCT)) if rng.random() < 0.6 else "")
    if rng.random() < 0.5:  # case
        if rng.random() < 0.3:
            words = [w.lower() for w in words]
        else:
            for k in np.flatnonzero(rng.random(len(words)) < 0.2):
                words[k] = words[k].upper() if rng.random() < 0.5 else words[k].lower()
    if rng.random() < 0.5:  # doubled spaces after ~20% of words
        words = [w + " " if rng.random() < 0.2 else w for w in words]
    return words


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = make_vocab(rng)
    lengths = rng.integers(150, 260, n_docs)
    word_ids = rng.integers(0, len(vocab), lengths.sum())
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    docs: list[str] = []
    kinds = rng.random(n_docs)
    for i in range(n_docs):
        if i > 10 and kinds[i] < 0.13:
            words = docs[int(rng.integers(0, i))].split(" ")
            if kinds[i] >= 0.03:  # edited copy
                rate = rng.uniform(0.05, 0.20)
                for k in np.flatnonzero(rng.random(len(words)) < rate):
                    words[k] = str(vocab[rng.integers(0, len(vocab))])
            docs.append(" ".join(add_noise(words, rng)))
        else:
            words = [str(w) for w in vocab[word_ids[bounds[i] : bounds[i + 1]]]]
            for k in np.flatnonzero(rng.random(len(words)) < 0.08):
                words[k] += str(rng.choice(PUNCT))
            docs.append(" ".join(words))
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
def run_tunelab(texts: list[str], key: DedupKeySettings = KEY) -> tuple[set[int], float, float]:
    frame = pl.DataFrame({"sample_id": [str(i) for i in range(len(texts))], "content": texts})
    cfg = MinhashSettings(threshold=THRESHOLD, ngram=NGRAM, key=key)
    start, cpu = time.perf_counter(), time.process_time()
    out = minhash.run(frame, cfg, StageContext()).decisions
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {int(s) for s in out.filter(~pl.col("kept"))["sample_id"]}, elapsed, cpu


def run_datasketch(texts: list[str]) -> tuple[set[int], float, float]:
    from datasketch import MinHash, MinHashLSH

    start, cpu = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    dropped = set()
    for i, text in enumerate(dedup_keys(texts, KEY)):
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in char_shingles(text, NGRAM)])
        if lsh.query(m):
            dropped.add(i)
        else:
            lsh.insert(str(i), m)
    return dropped, time.perf_counter() - start, time.process_time() - cpu


def run_rensa(texts: list[str]) -> tuple[set[int], float, float]:
    from rensa import RMinHash, RMinHashLSH

    start, cpu = time.perf_counter(), time.process_time()
    # rensa needs bands dividing num_perm; 16x8 puts the S-curve's midpoint at (1/16)**(1/8) = 0.71
    bands = 16
    hashes = RMinHash.from_token_sets((char_shingles(t, NGRAM) for t in dedup_keys(texts, KEY)), 128, 42)
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=128, num_bands=bands)
    # keep-first greedy like datasketch's: query the earlier kept rows, insert when nothing matches
    # (the one-shot matrix flags mark every member of a colliding group, the first one too)
    dropped = set()
    for i, m in enumerate(hashes):
        if lsh.query(m):
            dropped.add(i)
        else:
            lsh.insert(i, m)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return dropped, elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--subset", type=int, default=10_000)
    parser.add_argument("--peer-docs", type=int, default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    corpus = make_corpus(args.docs)
    subset = corpus[: args.subset]
    peer = corpus[: args.peer_docs or args.docs]
    mean_chars = sum(map(len, corpus)) / len(corpus)
    print(
        f"corpus: {len(corpus):,} docs, mean {mean_chars:,.0f} chars (built in {time.perf_counter() - t0:.1f}s)"
    )

    truth_pairs = exact_pairs(dedup_keys(subset, KEY), THRESHOLD)
    truth = greedy_drops(len(subset), truth_pairs)
    print(
        f"exact answer on {len(subset):,}: {len(truth_pairs):,} pairs with key Jaccard >= {THRESHOLD}, "
        f"{len(truth):,} drops"
    )
    quality = {
        "tunelab, raw text (no key)": run_tunelab(subset, RAW)[0],
        "tunelab, default key": run_tunelab(subset)[0],
        "datasketch on the key": run_datasketch(subset)[0],
        "rensa on the key": run_rensa(subset)[0],
    }
    print(f"quality on {len(subset):,} docs vs exact greedy drops on the key:")
    for name, got in quality.items():
        p, r, f = prf(got, truth)
        print(f"  {name:<28} P={p:.3f} R={r:.3f} F1={f:.3f}")

    bands, rows = minhash.band_params(THRESHOLD, 128)
    print(f"\nspeed end to end from raw text on {len(peer):,} docs (keys included):")
    timings = {
        f"tunelab ({bands}x{rows}, exact verify)": run_tunelab(peer),
        "datasketch MinHash+MinHashLSH": run_datasketch(peer),
        "rensa RMinHash + RMinHashLSH": run_rensa(peer),
    }
    base_wall = timings[next(iter(timings))][1]
    for name, (_, wall, cpu) in timings.items():
        print(
            f"  {name:<36} {len(peer) / wall:>9,.0f} docs/s wall ({wall:7.2f} s), "
            f"{len(peer) / cpu:>9,.0f} docs/CPU-s; tunelab is {wall / base_wall:5.1f}x faster"
        )
    f = prf(quality["tunelab, default key"], truth)[2]
    if f < 0.95:
        print("WARNING: F1 below the 0.95 target")


if __name__ == "__main__":
    main()
