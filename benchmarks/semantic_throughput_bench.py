"""Semantic stage throughput on real instruction rows vs short sentences, and what each token budget costs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/semantic_throughput_bench.py [--data ../shared/data]
        [--budgets none,128,96,64,48,32] [--model use-v3]

Rows: short = unique KorSTS dev+test sentences (~30 characters); instruction rows = HRC (Korean human-rights
Q/A, public) question + "\\n" + answer (~430 characters). Each budget runs the semantic stage (embedding
with no cache + neighbour search) on both sets back to back, twice, and reports the best rows/s of each
and their ratio (the machine is shared: the ratio from one back-to-back pair is the trustworthy figure).

Recall cost, on labelled pairs: 300 HRC rows get an edited copy (10-20% of words replaced by words of other
rows: positives), and each HRC question also appears with its *other* answer (the ChatGPT one: a
same-prompt, different-response row that must stay). At the model's default threshold: recall = planted
copies dropped against their original; false drops = drops of any other row (the other-answer rows
included, counted apart).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunelab.curate import semantic  # noqa: E402
from tunelab.curate.common import StageContext  # noqa: E402
from tunelab.curate.config import SemanticSettings  # noqa: E402

HRC = "human-rights-corpus__HRC/humane_right_copus_v1.jsonl.json"
KORSTS = "kakaobrain__kor-nlu-datasets/KorSTS_sts-{split}.tsv"


def short_sentences(data: Path) -> list[str]:
    out: list[str] = []
    for split in ("dev", "test"):
        with (data / KORSTS.format(split=split)).open(encoding="utf-8") as f:
            for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
                out += [r[5], r[6]]
    return list(dict.fromkeys(out))


def hrc_rows(data: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (data / HRC).open(encoding="utf-8")]
    rows = [r for r in rows if r.get("상담례, 결정례 기반 답변") and r.get("ChatGPT API 답변")]
    main = [r["질의"].strip() + "\n" + r["상담례, 결정례 기반 답변"].strip() for r in rows]
    other = [r["질의"].strip() + "\n" + r["ChatGPT API 답변"].strip() for r in rows]
    return main, other


def edited(text: str, donors: list[str], rng: np.random.Generator) -> str:
    words = text.split(" ")
    rate = rng.uniform(0.10, 0.20)
    for k in np.flatnonzero(rng.random(len(words)) < rate):
        donor = donors[int(rng.integers(0, len(donors)))].split(" ")
        words[k] = donor[int(rng.integers(0, len(donor)))]
    return " ".join(words)


def stage_rate(texts: list[str], cfg: SemanticSettings) -> float:
    frame = pl.DataFrame({"sample_id": [str(i) for i in range(len(texts))], "content": texts})
    start = time.perf_counter()
    semantic.run(frame, cfg, StageContext())  # no cache: every row is embedded
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--budgets", default="none,128,96,64,48,32")
    parser.add_argument("--model", default="use-v3")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tunelab-throughput-cache"))
    parser.add_argument("--head-share", type=float, default=semantic.HEAD_SHARE)
    parser.add_argument("--no-speed", action="store_true", help="recall cost only")
    args = parser.parse_args()
    semantic.HEAD_SHARE = args.head_share
    if not (args.data / HRC).exists():
        sys.exit(f"HRC not found under {args.data} (pass --data)")
    budgets = [None if b == "none" else int(b) for b in args.budgets.split(",")]
    short = short_sentences(args.data)[: args.rows]
    main_rows, other_rows = hrc_rows(args.data)
    long = main_rows[: args.rows]
    print(
        f"short: {len(short):,} KorSTS sentences, mean {np.mean([len(t) for t in short]):.0f} chars; "
        f"instruction rows: {len(long):,} HRC Q+A, mean {np.mean([len(t) for t in long]):.0f} chars; model {args.model}, head share {args.head_share}"
    )
    semantic.embedder_for(args.model).encode(short[:64])  # load + warm up outside the timings

    rng = np.random.default_rng(0)
    planted = rng.choice(len(main_rows), 300, replace=False)
    corpus = main_rows + other_rows + [edited(main_rows[i], main_rows, rng) for i in planted]
    n = len(main_rows)
    copy_of = {2 * n + k: int(i) for k, i in enumerate(planted)}

    print(f"{'budget':>8} {'chars':>6} {'short/s':>8} {'instr/s':>8} {'ratio':>6} | "
          f"{'recall':>6} {'false drops':>11} {'other-answer drops':>18}")  # fmt: skip
    for budget in budgets:
        cfg = SemanticSettings(model=args.model, max_tokens=budget)
        best_short = best_long = 0.0
        ratios = []
        for _ in range(0 if args.no_speed else 2):
            s, lr = stage_rate(short, cfg), stage_rate(long, cfg)
            best_short, best_long = max(best_short, s), max(best_long, lr)
            ratios.append(lr / s)
        frame = pl.DataFrame({"sample_id": [str(i) for i in range(len(corpus))], "content": corpus})
        out = semantic.run(frame, cfg, StageContext(cache_dir=args.cache)).decisions
        drops = {int(s): int(r) for s, r in out.select("sample_id", "ref_sample_id").iter_rows()}
        recall = np.mean([drops.get(c) == o for c, o in copy_of.items()])
        false = sum(1 for s in drops if s not in copy_of)
        other = sum(1 for s in drops if n <= s < 2 * n)
        chars = "-" if budget is None else str(int(budget * semantic.CHARS_PER_TOKEN))
        print(
            f"{budget or 'none':>8} {chars:>6} {best_short:>8,.0f} {best_long:>8,.0f} {max(ratios or [0]):>5.2f}x | "
            f"{recall:>6.3f} {false:>11,} {other:>18,}"
        )
    print(f"(threshold {SemanticSettings(model=args.model).threshold}; {len(copy_of)} planted copies, "
          f"{n:,} other-answer rows, {len(corpus):,} rows in the recall corpus)")  # fmt: skip


if __name__ == "__main__":
    main()
