"""How the default near-dup thresholds were chosen: calibrated on labelled Korean pairs, reported on held-back ones.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_defaults.py [--data ../shared/data] [--target 0.9]

Calibration pairs (train splits only): KorSTS train (5,749 pairs; a duplicate = score >= 4, "near-
paraphrase") and songys Question_pair kor_pair_train (6,888; a duplicate = is_duplicate 0, the file's
inverted label). For MinHash (exact Jaccard of character 5-grams of the dedup key, what the stage verifies)
and for each built-in embedding model (cosine), `tunelab.curate.calibrate.choose` picks the lowest
threshold whose precision on the train pairs is >= --target there and at every higher threshold. Precision
and recall at that threshold are then reported on the held-back splits: KorSTS dev and test, Question_pair
kor_Pair_test. Also printed: the old defaults (MinHash 0.7, semantic 0.9) on the same splits.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunelab.curate import calibrate as cal  # noqa: E402
from tunelab.curate.config import MinhashSettings, SemanticSettings  # noqa: E402

KORSTS = "kakaobrain__kor-nlu-datasets/KorSTS_sts-{split}.tsv"
QP_TRAIN = "songys__Question_pair/kor_pair_train.csv"
QP_TEST = "songys__Question_pair/kor_Pair_test.csv"
OLD = {"minhash": 0.7, "use-v3": 0.9, "e5-small": 0.9}


def korsts(data: Path, split: str) -> cal.Pairs:
    with (data / KORSTS.format(split=split)).open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return cal.Pairs([r[5] for r in rows], [r[6] for r in rows], np.array([float(r[4]) >= 4 for r in rows]))


def question_pairs(path: Path) -> cal.Pairs:
    with path.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return cal.Pairs(
        [r["question1"] for r in rows],
        [r["question2"] for r in rows],
        np.array([r["is_duplicate"].strip() == "0" for r in rows]),
    )


def concat(*parts: cal.Pairs) -> cal.Pairs:
    return cal.Pairs(
        [t for p in parts for t in p.text_a],
        [t for p in parts for t in p.text_b],
        np.concatenate([p.positive for p in parts]),
    )


def similarity(method: str, pairs: cal.Pairs, cache: Path) -> np.ndarray:
    if method == "minhash":
        return cal.jaccard_pairs(pairs.text_a, pairs.text_b, MinhashSettings())
    return cal.cosine_pairs(pairs.text_a, pairs.text_b, SemanticSettings(model=method, threshold=0.9), cache)


def fmt(row: cal.ThresholdRow) -> str:
    precision = "   -" if row.precision is None else f"{row.precision:.3f}"
    return f"P {precision} R {row.recall:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tunelab-calibration-cache"))
    args = parser.parse_args()
    if not (args.data / KORSTS.format(split="train")).exists():
        sys.exit(f"KorSTS not found under {args.data} (pass --data)")
    train = {"KorSTS train": korsts(args.data, "train"), "QP train": question_pairs(args.data / QP_TRAIN)}
    held = {
        "KorSTS dev": korsts(args.data, "dev"),
        "KorSTS test": korsts(args.data, "test"),
        "QP test": question_pairs(args.data / QP_TEST),
    }
    both = concat(*train.values())
    print(
        f"calibration: {len(both):,} train pairs ({both.positive.sum():,} duplicates), target precision {args.target}"
    )
    for method in ("minhash", "use-v3", "e5-small"):
        sims = similarity(method, both, args.cache)
        chosen = cal.choose(sims, both.positive, args.target)
        if chosen is None:
            print(f"{method}: no threshold reaches {args.target} on train")
            continue
        print(f"\n{method}: threshold {chosen.threshold:g} (train {fmt(chosen)}, F1 {chosen.f1:.3f})")
        for name, pairs in held.items():
            s = similarity(method, pairs, args.cache)
            new, old = (
                cal.row_at(s, pairs.positive, chosen.threshold),
                cal.row_at(s, pairs.positive, OLD[method]),
            )
            print(
                f"  {name:<12} {len(pairs):>5,} pairs ({pairs.positive.sum():>4,} dup): at {chosen.threshold:g} "
                f"{fmt(new)} | old default {OLD[method]:g} {fmt(old)}"
            )


if __name__ == "__main__":
    main()
