"""songys Question_pair through the dedup stages: recall and precision of merged pairs, with 95 % intervals.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/question_pair_quality.py [--data ../shared/data]

Every question of a file becomes one row and the stage runs over all of them; a labelled pair counts as
merged when both questions end with the same representative (tests/test_curate_quality.py measures a subset
the same way). `is_duplicate` 0 means the two questions ARE the same question. Pairs identical after
normalisation are left out. Prints the docs/curate.md table rows for the train and the held-back test file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from tunelab.curate import calibrate as cal
from tunelab.curate import minhash, semantic
from tunelab.curate.common import StageContext
from tunelab.curate.config import DedupKeySettings, MinhashSettings, SemanticSettings
from tunelab.textnorm import normalize_expr

FILES = ("kor_pair_train.csv", "kor_Pair_test.csv")
RAW = DedupKeySettings(unicode="none", lowercase=False, punctuation=False, whitespace=False)
SETTINGS = [
    ("MinHash 3-grams t=0.5, raw text", "minhash", MinhashSettings(ngram=3, threshold=0.5, key=RAW)),
    ("MinHash 3-grams t=0.5, dedup key", "minhash", MinhashSettings(ngram=3, threshold=0.5)),
    ("MinHash default (5-grams, key, t=0.7)", "minhash", MinhashSettings()),
    ("semantic use-v3 t=0.8", "semantic", SemanticSettings(threshold=0.8)),
    ("semantic use-v3 t=0.85 (default)", "semantic", SemanticSettings()),
    ("semantic use-v3 t=0.9", "semantic", SemanticSettings(threshold=0.9)),
]


def merged(pairs: pl.DataFrame, frame: pl.DataFrame, decisions: pl.DataFrame) -> np.ndarray:
    sample_of = dict(zip(frame["content"].to_list(), frame["sample_id"].to_list(), strict=True))
    rep = dict(decisions.select("sample_id", "ref_sample_id").iter_rows())

    def root(text: str) -> str:
        return rep.get(sample_of[text], sample_of[text])

    return np.array([root(a) == root(b) for a, b in zip(pairs["q1"], pairs["q2"], strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    parser.add_argument("--cache", type=Path, default=Path("tunelab-workspace/cache/embeddings"))
    args = parser.parse_args()
    ctx = StageContext(cache_dir=args.cache)
    for name in FILES:
        pairs = (
            pl.read_csv(args.data / "songys__Question_pair" / name, infer_schema=False)
            .rename(lambda c: c.lstrip("\ufeff"))
            .with_columns(normalize_expr("question1").alias("q1"), normalize_expr("question2").alias("q2"))
            .filter(pl.col("q1") != pl.col("q2"))
            .with_columns(same=pl.col("is_duplicate").str.strip_chars() == "0")
        )
        texts = pl.concat([pairs["q1"], pairs["q2"]]).unique(maintain_order=True)
        frame = pl.DataFrame({"sample_id": [f"q:{i}" for i in range(len(texts))], "content": texts})
        same = pairs["same"].to_numpy()
        print(f"## {name}: {pairs.height:,} pairs, {int(same.sum()):,} duplicates, {frame.height:,} rows")
        for label, stage, cfg in SETTINGS:
            module = minhash if stage == "minhash" else semantic
            hit = merged(pairs, frame, module.run(frame, cfg, ctx).decisions)
            tp, n_pos, n_merged = int((hit & same).sum()), int(same.sum()), int(hit.sum())
            r_lo, r_hi = cal.wilson_interval(tp, n_pos)
            p_lo, p_hi = cal.wilson_interval(tp, n_merged)
            print(
                f"| {label} | {tp / n_pos:.3f} [{r_lo:.2f}, {r_hi:.2f}] | "
                f"{tp / max(n_merged, 1):.3f} [{p_lo:.2f}, {p_hi:.2f}] ({n_merged:,}) |"
            )


if __name__ == "__main__":
    main()
