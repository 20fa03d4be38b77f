"""ROUGE-1/2/L + BLEU + chrF on 10k Korean pairs: tunelab's batch path vs the libraries' per-pair APIs.

Pairs: KorSTS train (../shared/data/kakaobrain__kor-nlu-datasets/KorSTS_sts-train.tsv), sentence1 as
reference and sentence2 as prediction, then the same rows swapped, until 10,000 pairs.
Baseline (same run, same tokenizers): `RougeScorer(["rouge1","rouge2","rougeL"], tokenizer=KiwiTokenizer())
.score(ref, pred)` per pair, `BLEU(tokenize="ko-mecab", effective_order=True).sentence_score` and
`CHRF().sentence_score` per pair, plus each corpus_score. Kiwi and MeCab are loaded before either clock
starts. Both paths must give identical numbers (checked).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/metrics_bench.py [--pairs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SPLITS: dict[str, tuple[float, float]] = {}  # name -> (wall s, process CPU s)
KORSTS = REPO.parent / "shared" / "data" / "kakaobrain__kor-nlu-datasets" / "KorSTS_sts-train.tsv"


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(began: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clock()
    return wall - began[0], cpu - began[1]


def load_pairs(n: int) -> tuple[list[str], list[str]]:
    frame = pl.read_csv(KORSTS, separator="\t", quote_char=None).drop_nulls(["sentence1", "sentence2"])
    refs = frame["sentence1"].to_list() + frame["sentence2"].to_list()
    preds = frame["sentence2"].to_list() + frame["sentence1"].to_list()
    return refs[:n], preds[:n]


def batch_path(refs: list[str], preds: list[str]) -> tuple[dict, dict]:
    from tunelab.evaluate.metrics import bleu_chrf_pairs, rouge_pairs
    from tunelab.evaluate.tokenizers import KiwiTokenizer

    began = clock()
    KiwiTokenizer().tokenize_many(list(dict.fromkeys([*refs, *preds])))
    SPLITS["batch: kiwi tokenization alone (a separate pass, for the breakdown)"] = since(began)
    began = clock()
    _, rouge = rouge_pairs(refs, preds, "kiwi")
    SPLITS["batch: ROUGE-1/2/L incl. kiwi"] = since(began)
    began = clock()
    sb = bleu_chrf_pairs(refs, preds)
    SPLITS["batch: BLEU + chrF"] = since(began)
    return rouge, sb


def per_pair_path(refs: list[str], preds: list[str]) -> tuple[dict, dict]:
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU, CHRF

    from tunelab.evaluate.tokenizers import KiwiTokenizer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=KiwiTokenizer())
    rouge: dict[str, list] = {"rouge1": [], "rouge2": [], "rougeL": []}
    began = clock()
    for ref, pred in zip(refs, preds, strict=True):
        for kind, score in scorer.score(ref, pred).items():
            rouge[kind].append(tuple(score))
    SPLITS["per-pair: rouge-score scorer.score"] = since(began)
    began = clock()
    sentence_bleu, chrf = BLEU(tokenize="ko-mecab", effective_order=True), CHRF()
    sb = {
        "bleu": [sentence_bleu.sentence_score(p, [r]).score for r, p in zip(refs, preds, strict=True)],
        "chrf": [chrf.sentence_score(p, [r]).score for r, p in zip(refs, preds, strict=True)],
        "bleu_corpus": BLEU(tokenize="ko-mecab").corpus_score(preds, [refs]).score,
        "chrf_corpus": CHRF().corpus_score(preds, [refs]).score,
    }
    SPLITS["per-pair: sacrebleu sentence_score + corpus_score"] = since(began)
    return rouge, sb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10_000)
    args = parser.parse_args()
    if not KORSTS.exists():
        sys.exit(f"{KORSTS} not found: the shared datasets folder is not mounted")
    refs, preds = load_pairs(args.pairs)
    warnings.simplefilter("ignore")  # KorSTS has a few lines of dashes: they warn (no tokens) on both paths
    from tunelab.evaluate.metrics import _sacrebleu_metric
    from tunelab.evaluate.tokenizers import kiwi_instance

    # model loads (~3 s) and Kiwi's first-use costs outside both clocks, on KorSTS dev sentences that are
    # not among the measured pairs (so no cache answers for either path later)
    warm = pl.read_csv(KORSTS.with_name("KorSTS_sts-dev.tsv"), separator="\t", quote_char=None)["sentence1"]
    warm = [text for text in warm.drop_nulls().to_list()[:500] if text not in set(refs) | set(preds)]
    kiwi_instance().tokenize(warm)
    for text in warm[:100]:
        kiwi_instance().tokenize(text)
    _sacrebleu_metric("bleu", "ko-mecab", True).tokenizer("준비")
    distinct = len(set(refs) | set(preds))
    print(
        f"{len(refs)} pairs, {distinct} distinct texts; os.cpu_count()={os.cpu_count()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"kiwi num_workers={os.environ.get('TUNELAB_KIWI_THREADS', '-1')} (-1 = all cores), "
        "rouge/sacrebleu scoring: 1 Python thread"
    )

    rouge_b, sb_b = batch_path(refs, preds)
    batch = [v for k, v in SPLITS.items() if k.startswith("batch") and "alone" not in k]
    batch_s, batch_cpu = sum(w for w, _ in batch), sum(c for _, c in batch)
    rouge_p, sb_p = per_pair_path(refs, preds)
    pair = [v for k, v in SPLITS.items() if k.startswith("per-pair")]
    pair_s, pair_cpu = sum(w for w, _ in pair), sum(c for _, c in pair)

    for kind in rouge_b:
        assert [tuple(float(x) for x in t) for t in rouge_b[kind]] == [
            tuple(float(x) for x in t) for t in rouge_p[kind]
        ], kind
    for key in ("bleu", "chrf", "bleu_corpus", "chrf_corpus"):
        assert sb_b[key] == sb_p[key], key
    # the machine is shared: wall time swings with other people's load; process CPU time swings less
    print(
        f"tunelab batch path (ROUGE-1/2/L + sentence/corpus BLEU + chrF): {batch_s:.2f} s wall, "
        f"{batch_cpu:.2f} s CPU  (goal < 10 s)"
    )
    print(
        f"libraries' per-pair APIs (rouge-score scorer.score + sacrebleu sentence_score): {pair_s:.2f} s wall, "
        f"{pair_cpu:.2f} s CPU"
    )
    for name, (wall, cpu) in SPLITS.items():
        print(f"  {name}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(
        f"ratio: batch path is {pair_s / batch_s:.2f}x faster (wall), {pair_cpu / batch_cpu:.2f}x (CPU); "
        f"identical values on all {len(refs)} pairs"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} vCPUs")


if __name__ == "__main__":
    main()
