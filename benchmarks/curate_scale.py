"""The full curation pipeline without the semantic stage on a large generated SFT file: wall time, peak RSS.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curate_scale.py [--rows 1000000] [--no-write]

The file: seeded Korean/English prompt/response rows (~250 characters), 2% exact copies, 3% edited
copies, 0.1% broken lines, three labels. Targets from issue 3: < 60 s and < 4 GiB at 1M rows.
Stage timings come from the curation report, so the loader's share is visible too.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from tunelab.curate.config import CurateConfig
from tunelab.curate.pipeline import curate_dataset
from tunelab.records.config import DatasetConfig


def write_corpus(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    syllables = [chr(0xAC00 + int(i)) for i in rng.choice(11172, 300, replace=False)]
    vocab = np.array(
        ["".join(rng.choice(syllables, int(rng.integers(2, 4)))) for _ in range(5000)]
        + ["".join(rng.choice(list("abcdefghij"), int(rng.integers(3, 8)))) for _ in range(2000)]
    )
    kinds = rng.random(rows)
    lengths = rng.integers(30, 70, rows)
    words = vocab[rng.integers(0, len(vocab), int(lengths.sum()))]
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    labels = rng.choice(["a", "b", "c"], rows, p=[0.6, 0.3, 0.1])
    lines: list[str] = []
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            if i > 10 and kinds[i] < 0.001:
                line = '{"prompt": "broken'
            elif i > 10 and kinds[i] < 0.021:
                line = lines[int(rng.integers(0, len(lines)))]
            elif i > 10 and kinds[i] < 0.051:
                row = json.loads(lines[int(rng.integers(0, len(lines)))])
                tokens = row["response"].split(" ")
                tokens[int(rng.integers(0, len(tokens)))] = str(vocab[int(rng.integers(0, len(vocab)))])
                row["response"] = " ".join(tokens)
                line = json.dumps(row, ensure_ascii=False)
            else:
                text = words[bounds[i] : bounds[i + 1]]
                cut = len(text) // 4
                line = json.dumps(
                    {
                        "prompt": " ".join(text[:cut]),
                        "response": " ".join(text[cut:]),
                        "label": str(labels[i]),
                    },
                    ensure_ascii=False,
                )
            if not line.startswith('{"prompt": "broken') and len(lines) < 50_000:
                lines.append(line)
            out.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="skip output files and the warehouse ingest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "scale.jsonl"
        t0 = time.perf_counter()
        write_corpus(data, args.rows)
        print(
            f"generated {args.rows:,} rows ({data.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - t0:.1f}s"
        )
        curate = CurateConfig.model_validate(
            {
                "stages": ["schema", "normalize", "length", "exact", "minhash", "balance", "split"],
                "length": {"min_chars": {"response": 5}, "max_chars": {"response": 4000}},
                "balance": {"max_per_label": int(args.rows * 0.25)},
            }
        )
        dataset = DatasetConfig(path=data, name="scale", kind="sft")
        start = time.perf_counter()
        result = curate_dataset(
            dataset,
            curate,
            Path(tmp) / "ws",
            write=not args.no_write,
            show_progress=False,
        )
        wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"read {result.read:,} kept {result.kept:,} dropped {result.dropped:,} quarantined {result.quarantined:,}"
    )
    for stage in result.report["stages"]:
        print(
            f"  {stage['stage']:<10} in {stage['in']:>9,}  dropped {stage['dropped']:>8,}  {stage['seconds']:>7.2f}s"
        )
    stage_seconds = sum(s["seconds"] for s in result.report["stages"])
    print(
        f"stages {stage_seconds:.1f}s; load + accounting + report{' + writing + warehouse' if not args.no_write else ''} "
        f"{wall - stage_seconds:.1f}s"
    )
    print(f"wall {wall:.1f}s (target < 60 s), peak RSS {peak_gib:.2f} GiB (target < 4 GiB)")


if __name__ == "__main__":
    main()
