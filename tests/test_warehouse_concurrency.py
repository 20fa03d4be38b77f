"""Real processes against one warehouse file: a writer and a reader at once, and a SIGKILL mid-ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tunelab.warehouse import store
from tunelab.warehouse.connection import WarehouseBusyError, with_lock_retry

ROOT = Path(__file__).resolve().parents[1]
TABLES = (
    "schema_version", "datasets", "curations", "samples", "decisions", "quarantine", "runs", "train_log",
    "evals", "predictions", "scores", "eval_metrics", "reviews",
)  # fmt: skip

WRITER = """
import sys, time
from pathlib import Path
from tunelab.warehouse import store
db, seconds = Path(sys.argv[1]), float(sys.argv[2])
batches, step, end = 0, 0, time.monotonic() + seconds
while time.monotonic() < end:
    store.log_train(db, "run-1", [{"step": step + k, "loss": 1.0 / (step + k + 1)} for k in range(5)])
    step += 5
    batches += 1
print(batches, step, flush=True)
"""

READER = """
import json, sys, time
from pathlib import Path
from tunelab.warehouse import store
db, seconds = Path(sys.argv[1]), float(sys.argv[2])
counts, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    frame = store.query(db, "SELECT count(*) AS n, max(step) AS top FROM train_log WHERE run_id = ?", ["run-1"])
    counts.append(frame["n"][0])
print(json.dumps(counts), flush=True)
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env["TUNELAB_LOCK_TIMEOUT"] = "30"
    return env


def test_writer_and_reader_processes_at_once(tmp_path: Path) -> None:
    db = tmp_path / "tunelab.duckdb"
    store.start_run(db, {"run_id": "run-1", "kind": "sft"})
    seconds = "4"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), seconds], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_env(), text=True,
    )  # fmt: skip
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(db), seconds], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_env(), text=True,
    )  # fmt: skip
    writer_out, writer_err = writer.communicate(timeout=120)
    reader_out, reader_err = reader.communicate(timeout=120)
    assert writer.returncode == 0, writer_err
    assert reader.returncode == 0, reader_err
    batches, rows = map(int, writer_out.split())
    counts = json.loads(reader_out)
    assert batches >= 5 and rows == 5 * batches
    assert len(counts) >= 3
    assert counts == sorted(counts), "a reader saw the row count shrink"
    assert all(n % 5 == 0 for n in counts), "a reader saw part of a batch"
    # the reader really ran while the writer wrote, not before or after it
    assert len(set(counts)) >= 2, counts
    assert store.query(db, "SELECT count(*) AS n FROM train_log")["n"][0] == rows


def test_lock_wait_times_out_with_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "tunelab.duckdb"
    store.start_run(db, {"run_id": "run-1", "kind": "sft"})
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
         "time.sleep(30)", str(db)],
        stdout=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError, match="locked by another process for more than 0.5 s"):
            with_lock_retry(db, lambda: duckdb.connect(str(db), read_only=True), timeout_s=0.5)
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    # once the holder is gone the same call succeeds
    assert store.get_run(db, "run-1")["status"] == "running"


def big_ingest_child(kill_point: str) -> str:
    return textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import polars as pl
        from tunelab.warehouse import store
        n = int(sys.argv[2])
        ids = [f"big:{{i}}" for i in range(n)]
        samples = pl.DataFrame({{"sample_id": ids, "prompt": ["p" * 50] * n, "response": ["r" * 200] * n}})
        decisions = pl.DataFrame({{"sample_id": ids, "stage": ["minhash"] * n, "kept": [False] * n,
                                  "reason": ["near_dup_minhash"] * n, "ref_sample_id": ids, "score": [0.9] * n,
                                  "evidence": ["jaccard=0.9"] * n}})
        original = store._insert_frame
        def insert_then_signal(con, table, frame, constants):
            original(con, table, frame, constants)
            if table == {kill_point!r}:
                print("inside", flush=True)
                time.sleep(120)
        store._insert_frame = insert_then_signal
        store.ingest_curation(Path(sys.argv[1]), {{"curation_id": "big", "dataset": "big", "read": n}},
                              samples, decisions, pl.DataFrame())
        print("committed", flush=True)
        """
    )


def committed_small_curation(db: Path) -> None:
    store.ingest_curation(
        db,
        {"curation_id": "small", "dataset": "small", "read": 2, "kept": 2},
        pl.DataFrame({"sample_id": ["small:0", "small:1"], "prompt": ["a", "b"], "response": ["x", "y"]}),
        pl.DataFrame(
            {"sample_id": ["small:0", "small:1"], "stage": ["final", "final"], "kept": [True, True]}
        ),
        pl.DataFrame(),
    )
    store.start_run(db, {"run_id": "run-1", "kind": "sft", "curation_id": "small"})
    store.log_train(db, "run-1", [{"step": 1, "loss": 2.0}])


def assert_intact_without_big(db: Path) -> None:
    """Every table reads fully, the earlier commits are there, and not one row of the killed ingest."""
    for table in TABLES:
        frame = store.query(db, f"SELECT * FROM {table}")  # reads every row: a torn file would raise here
        counted = store.query(db, f"SELECT count(*) AS n FROM {table}")["n"][0]
        assert frame.height == counted, table
    big_rows = store.query(
        db,
        "SELECT (SELECT count(*) FROM curations WHERE curation_id = 'big') AS c, "
        "(SELECT count(*) FROM samples WHERE curation_id = 'big') AS s, "
        "(SELECT count(*) FROM decisions WHERE curation_id = 'big') AS d, "
        "(SELECT count(*) FROM datasets WHERE name = 'big') AS ds",
    ).row(0)
    assert big_rows == (0, 0, 0, 0)
    assert store.query(db, "SELECT count(*) AS n FROM samples WHERE curation_id = 'small'")["n"][0] == 2
    assert store.query(db, "SELECT count(*) AS n FROM decisions")["n"][0] == 2
    assert store.get_run(db, "run-1")["curation_id"] == "small"


@pytest.mark.parametrize("kill_point", ["decisions", "samples"])
def test_sigkill_mid_ingest_leaves_no_partial_rows(tmp_path: Path, kill_point: str) -> None:
    db = tmp_path / "tunelab.duckdb"
    committed_small_curation(db)
    n = 200_000
    child = subprocess.Popen(
        [sys.executable, "-c", big_ingest_child(kill_point), str(db), str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    try:
        line = child.stdout.readline().strip()
        assert line == "inside", child.stderr.read()
        # the rows are in the open transaction (and partly in the file's blocks) when the process dies
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert_intact_without_big(db)
    # the file still takes writes, and the same id can be ingested for real now
    store.ingest_curation(
        db,
        {"curation_id": "big", "dataset": "big", "read": 3},
        pl.DataFrame({"sample_id": ["big:0", "big:1", "big:2"]}),
        pl.DataFrame({"sample_id": ["big:0", "big:1", "big:2"], "stage": ["final"] * 3, "kept": [True] * 3}),
        pl.DataFrame(),
    )
    assert store.query(db, "SELECT count(*) AS n FROM decisions WHERE curation_id = 'big'")["n"][0] == 3


def test_sigkill_at_a_random_moment_is_all_or_nothing(tmp_path: Path) -> None:
    """No hook: kill a plain ingest after a delay; either the whole curation is there or none of it."""
    db = tmp_path / "tunelab.duckdb"
    committed_small_curation(db)
    n = 200_000
    code = big_ingest_child("never")
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_env(),
    )  # fmt: skip
    time.sleep(2.5)  # imports take ~1.5 s; the ingest runs for about a second after that
    os.kill(child.pid, signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    counts = store.query(
        db,
        "SELECT (SELECT count(*) FROM curations WHERE curation_id = 'big') AS c, "
        "(SELECT count(*) FROM samples WHERE curation_id = 'big') AS s, "
        "(SELECT count(*) FROM decisions WHERE curation_id = 'big') AS d",
    ).row(0)
    assert counts in ((0, 0, 0), (1, n, n)), counts
    if "committed" in out:
        assert counts == (1, n, n)
    for table in TABLES:
        store.query(db, f"SELECT * FROM {table}")


def test_threads_of_one_process_read_and_write_at_once(tmp_path: Path) -> None:
    """The dashboard's case: Streamlit sessions are threads; one saves a review while others query."""
    import threading

    db = tmp_path / "tunelab.duckdb"
    store.start_run(db, {"run_id": "run-1", "kind": "sft"})
    one_prediction = pl.DataFrame(
        {"model": ["sft"], "run_id": ["run-1"], "sample_id": ["s:0"], "prediction": ["a"]}
    )
    store.ingest_eval(
        db, {"eval_id": "e1", "eval_set": "x", "created_at": "2026-12-01T00:00:00"}, one_prediction,
        pl.DataFrame(schema={"model": str, "sample_id": str, "metric": str, "value": float}),
        pl.DataFrame(schema={"model": str, "metric": str, "value": float}),
    )  # fmt: skip
    errors: list[str] = []
    counts: list[int] = []
    written = []
    end = time.monotonic() + 2

    def read() -> None:
        try:
            while time.monotonic() < end:
                counts.append(store.query(db, "SELECT count(*) AS n FROM reviews")["n"][0])
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            errors.append(repr(exc))

    def write() -> None:
        try:
            while time.monotonic() < end:
                store.add_review(db, "e1", "sft", "s:0", 1, f"review {len(written)}")
                written.append(1)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=read), threading.Thread(target=read), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert written and counts
    assert store.query(db, "SELECT count(*) AS n FROM reviews")["n"][0] == len(written)
