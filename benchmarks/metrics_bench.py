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
SPLITS: dict[str, float] = {}
KORSTS = REPO.parent / "shared" / "data" / "kakaobrain__kor-nlu-datasets" / "KorSTS_sts-train.tsv"


def load_pairs(n: int) -> tuple[list[str], list[str]]:
    frame = pl.read_csv(KORSTS, separator="\t", quote_char=None).drop_nulls(["sentence1", "sentence2"])
    refs = frame["sentence1"].to_list() + frame["sentence2"].to_list()
    preds = frame["sentence2"].to_list() + frame["sentence1"].to_list()
    return refs[:n], preds[:n]


def batch_path(refs: list[str], preds: list[str]) -> tuple[dict, dict]:
    from tunelab.evaluate.metrics import bleu_chrf_pairs, rouge_pairs
    from tunelab.evaluate.tokenizers import KiwiTokenizer

    began = time.perf_counter()
    KiwiTokenizer().tokenize_many(list(dict.fromkeys([*refs, *preds])))
    SPLITS["batch: kiwi tokenization alone (a separate pass, for the breakdown)"] = (
        time.perf_counter() - began
    )
    began = time.perf_counter()
    _, rouge = rouge_pairs(refs, preds, "kiwi")
    SPLITS["batch: ROUGE-1/2/L incl. kiwi"] = time.perf_counter() - began
    began = time.perf_counter()
    sb = bleu_chrf_pairs(refs, preds)
    SPLITS["batch: BLEU + chrF"] = time.perf_counter() - began
    return rouge, sb


def per_pair_path(refs: list[str], preds: list[str]) -> tuple[dict, dict]:
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU, CHRF

    from tunelab.evaluate.tokenizers import KiwiTokenizer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=KiwiTokenizer())
    rouge: dict[str, list] = {"rouge1": [], "rouge2": [], "rougeL": []}
    began = time.perf_counter()
    for ref, pred in zip(refs, preds, strict=True):
        for kind, score in scorer.score(ref, pred).items():
            rouge[kind].append(tuple(score))
    SPLITS["per-pair: rouge-score scorer.score"] = time.perf_counter() - began
    began = time.perf_counter()
    sentence_bleu, chrf = BLEU(tokenize="ko-mecab", effective_order=True), CHRF()
    sb = {
        "bleu": [sentence_bleu.sentence_score(p, [r]).score for r, p in zip(refs, preds, strict=True)],
        "chrf": [chrf.sentence_score(p, [r]).score for r, p in zip(refs, preds, strict=True)],
        "bleu_corpus": BLEU(tokenize="ko-mecab").corpus_score(preds, [refs]).score,
        "chrf_corpus": CHRF().corpus_score(preds, [refs]).score,
    }
    SPLITS["per-pair: sacrebleu sentence_score + corpus_score"] = time.perf_counter() - began
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

    kiwi_instance().tokenize("준비")  # model load (~3 s) outside both clocks
    _sacrebleu_metric("bleu", "ko-mecab", True).tokenizer("준비")
    distinct = len(set(refs) | set(preds))
    print(
        f"{len(refs)} pairs, {distinct} distinct texts; os.cpu_count()={os.cpu_count()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"kiwi num_workers={os.environ.get('TUNELAB_KIWI_THREADS', '-1')} (-1 = all cores), "
        "rouge/sacrebleu scoring: 1 Python thread"
    )

    rouge_b, sb_b = batch_path(refs, preds)
    batch_s = sum(v for k, v in SPLITS.items() if k.startswith("batch") and "alone" not in k)
    began = time.perf_counter()
    rouge_p, sb_p = per_pair_path(refs, preds)
    pair_s = time.perf_counter() - began

    for kind in rouge_b:
        assert [tuple(float(x) for x in t) for t in rouge_b[kind]] == [
            tuple(float(x) for x in t) for t in rouge_p[kind]
        ], kind
    for key in ("bleu", "chrf", "bleu_corpus", "chrf_corpus"):
        assert sb_b[key] == sb_p[key], key
    print(f"tunelab batch path (ROUGE-1/2/L + sentence/corpus BLEU + chrF): {batch_s:.2f} s  (goal < 10 s)")
    print(f"libraries' per-pair APIs (rouge-score scorer.score + sacrebleu sentence_score): {pair_s:.2f} s")
    for name, seconds in SPLITS.items():
        print(f"  {name}: {seconds:.2f} s")
    print(f"ratio: batch path is {pair_s / batch_s:.2f}x faster; identical values on all {len(refs)} pairs")


if __name__ == "__main__":
    main()
