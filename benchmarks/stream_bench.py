"""Peak memory and wall time of `curate.executor: stream` at 1M, 3M, 10M rows, beside the local executor.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stream_bench.py [--sizes 1000000,3000000,10000000]
        [--local-sizes 1000000,3000000] [--corpus-dir /tmp/stream_bench] [--batch-rows 100000]

The corpus is curate_scale.write_corpus (seeded Korean/English SFT rows of ~250 characters, 2% exact
copies, 3% edited copies, 0.1% broken lines, three labels); 10M rows take ~4.3 GB of disk, written under
/tmp and deleted afterwards unless --corpus-dir names a folder that already holds them (then kept).
Stages: schema, normalize, length, exact, minhash, balance, split - curate_scale's set: exact + minhash +
split, without quality/language (the slowest row-local stages: they would measure the stages, not the
executor) and without semantic. Every measurement is a fresh subprocess that curates with writing and the
warehouse ingest, and reports its own peak RSS (getrusage RUSAGE_SELF ru_maxrss) and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ["schema", "normalize", "length", "exact", "minhash", "balance", "split"]


def child(corpus: Path, rows: int, executor: str, batch_rows: int) -> None:
    """One curation in this process; prints one JSON line with its numbers."""
    from tunelab.curate.config import CurateConfig
    from tunelab.curate.pipeline import curate_dataset
    from tunelab.records.config import DatasetConfig

    curate = CurateConfig.model_validate(
        {
            "stages": STAGES,
            "length": {"min_chars": {"response": 5}, "max_chars": {"response": 4000}},
            "balance": {"max_per_label": int(rows * 0.25)},
            "executor": executor,
            "stream_batch_rows": batch_rows,
        }
    )
    dataset = DatasetConfig(path=corpus, name="scale", kind="sft")
    with tempfile.TemporaryDirectory(dir=corpus.parent) as tmp:
        started = time.perf_counter()
        result = curate_dataset(dataset, curate, Path(tmp) / "ws", show_progress=False)
        wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    print(
        json.dumps(
            {
                "executor": executor,
                "rows": rows,
                "read": result.read,
                "kept": result.kept,
                "dropped": result.dropped,
                "quarantined": result.quarantined,
                "data_version": result.data_version,
                "wall_s": round(wall, 1),
                "peak_gib": round(peak, 3),
                "stages": {s["stage"]: round(s["seconds"], 1) for s in result.report["stages"]},
            }
        ),
        flush=True,
    )


def corpus_for(folder: Path, rows: int) -> Path:
    from curate_scale import write_corpus  # run as a script: benchmarks/ is on sys.path

    path = folder / f"corpus-{rows}.jsonl"
    if not path.exists():
        started = time.perf_counter()
        write_corpus(path.with_suffix(".tmp"), rows)
        path.with_suffix(".tmp").rename(path)
        print(f"generated {rows:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def measure(corpus: Path, rows: int, executor: str, batch_rows: int, out: Path | None) -> dict | None:
    """The child in a fresh interpreter; its JSON line, or None when it failed (said on stderr)."""
    command = [sys.executable, __file__, "--child", str(corpus), "--rows", str(rows), "--executor", executor,
               "--batch-rows", str(batch_rows)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        print(f"{executor} {rows:,}: exit {done.returncode}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    found = json.loads(done.stdout.strip().splitlines()[-1])
    with os.popen("uptime") as uptime:
        found["uptime"] = uptime.read().strip()
    print(json.dumps(found), flush=True)
    if out is not None:
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(found) + "\n")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--executor", default="stream", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--local-sizes", default="1000000,3000000")
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument(
        "--corpus-dir", type=Path, help="keep the generated corpora here (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, help="append each measurement as a JSON line to this file")
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.rows, args.executor, args.batch_rows)
        return
    folder = args.corpus_dir or Path(tempfile.mkdtemp(prefix="stream-bench-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    local = {int(s) for s in args.local_sizes.split(",") if s}
    found: dict[tuple[str, int], dict] = {}
    try:
        for rows in sizes:
            corpus = corpus_for(folder, rows)
            for executor in ("stream", "local") if rows in local else ("stream",):
                result = measure(corpus, rows, executor, args.batch_rows, args.out)
                if result is not None:
                    found[(executor, rows)] = result
            if args.corpus_dir is None:
                corpus.unlink()
    finally:
        if args.corpus_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    base = found.get(("stream", sizes[0]))
    for (executor, rows), r in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ratio = f"  peak / peak(stream {sizes[0]:,}) {r['peak_gib'] / base['peak_gib']:.2f}" if base else ""
        print(f"{executor:<7}{rows:>12,}  wall {r['wall_s']:>8.1f} s  peak {r['peak_gib']:6.2f} GiB{ratio}")


if __name__ == "__main__":
    main()
