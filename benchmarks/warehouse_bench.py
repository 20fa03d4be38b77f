"""Warehouse ingest speed: a 200k-sample curation through `store.ingest_curation` (one INSERT ... SELECT
over the Polars frame) against a baseline measured in the same run: the same decisions inserted with
DuckDB's `executemany` (row at a time). Also the latency of one `log_train` batch (open, one
transaction, close), which a training run pays every few logging steps.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/warehouse_bench.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

from tunelab.warehouse import store


def frames(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"bench:{i}" for i in range(n)]
    samples = pl.DataFrame({"sample_id": ids, "source_row": range(n), "prompt": [f"질문 {i}" for i in range(n)],
                            "response": [f"답변 {i} " * 10 for i in range(n)]})  # fmt: skip
    decisions = pl.DataFrame({"sample_id": ids, "stage": ["minhash"] * n, "kept": [i % 4 != 0 for i in range(n)],
                              "reason": [None if i % 4 else "near_dup_minhash" for i in range(n)],
                              "ref_sample_id": [None] * n, "score": [0.9] * n, "evidence": [None] * n})  # fmt: skip
    return samples, decisions


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    samples, decisions = frames(n)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        started = time.perf_counter()
        store.ingest_curation(db, {"curation_id": "c1", "dataset": "bench", "read": n}, samples, decisions,
                              pl.DataFrame())  # fmt: skip
        ours = time.perf_counter() - started

        baseline_n = min(n, 20_000)  # row-at-a-time is slow; time a slice and scale linearly
        con = duckdb.connect(str(Path(tmp) / "baseline.duckdb"))
        con.execute("CREATE TABLE decisions (curation_id VARCHAR, sample_id VARCHAR, stage VARCHAR, kept BOOLEAN, "
                    "reason VARCHAR, ref_sample_id VARCHAR, score DOUBLE, evidence VARCHAR)")  # fmt: skip
        rows = [("c1", *r) for r in decisions.head(baseline_n).iter_rows()]
        started = time.perf_counter()
        con.execute("BEGIN")
        con.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        baseline = (time.perf_counter() - started) * n / baseline_n
        con.close()

        store.start_run(db, {"run_id": "r1", "kind": "sft"})
        batches = 20
        started = time.perf_counter()
        for b in range(batches):
            store.log_train(db, "r1", [{"step": b * 10 + k, "loss": 1.0} for k in range(10)])
        per_batch = (time.perf_counter() - started) / batches

    print(f"ingest_curation: {n} samples + {n} decisions in {ours:.2f} s")
    print(f"baseline executemany (decisions only, scaled from {baseline_n}): {baseline:.2f} s")
    print(f"ratio baseline/ours: {baseline / ours:.1f}x")
    print(f"log_train batch of 10 rows (open + transaction + close): {per_batch * 1000:.0f} ms")


if __name__ == "__main__":
    main()
