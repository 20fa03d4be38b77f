"""`accelerate launch --multi_gpu --num_processes 2 -m tunelab train sft` on a CPU-only machine: two
processes train one run.

Why not `--cpu`: accelerate 1.x starts several CPU processes only through mpirun (`--cpu` alone runs one
process); `--multi_gpu` starts them with torchrun, and with no GPU each process trains on the CPU over gloo —
the same code path a multi-GPU machine takes, with nccl. Data parallel: rank 0 curates, picks the run id, writes the warehouse and saves the adapter;
rank 1 trains its half of every batch and writes nothing. The run is recorded once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.warehouse import store

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_record_one_run(tmp_path: Path) -> None:
    if not ACCELERATE.is_file():
        pytest.skip(f"accelerate's launcher not found beside {sys.executable}")
    rows = [
        {"prompt": f"{i}번째 질문: 오늘 서울 날씨 어때요?", "response": f"맑아요, {i}도 정도예요."}
        for i in range(40)
    ]
    (tmp_path / "data.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    (tmp_path / "recipe.yaml").write_text(
        "dataset: {path: data.jsonl, name: weather}\n"
        "curate: {stages: [schema, exact, split]}\n"
        "train: {base_model: tunelab-tiny, quantization: none, compute_dtype: float32,\n"
        "        lora: {r: 8, alpha: 16, dropout: 0.0},\n"
        "        sft: {max_steps: 4, batch_size: 4, max_length: 64, logging_steps: 1, save_steps: 1000}}\n",
        encoding="utf-8",
    )
    workspace = tmp_path / "ws"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
         "-m", "tunelab", "train", "sft", str(tmp_path / "recipe.yaml"), "-w", str(workspace),
         "--note", "two ranks"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    run_id = done.stdout.strip()
    assert done.stdout == run_id + "\n" and run_id.startswith("sft-")  # printed once, by rank 0

    db = workspace / "tunelab.duckdb"
    runs = store.query(db, "SELECT run_id, status, note, metrics FROM runs")
    assert runs["run_id"].to_list() == [run_id] and runs["status"].to_list() == ["finished"]
    assert runs["note"].to_list() == ["two ranks"]
    assert json.loads(runs["metrics"][0])["world_size"] == 2.0
    assert store.query(db, "SELECT count(*) AS n FROM curations")["n"][0] == 1  # curated once, by rank 0
    logged = store.query(db, "SELECT step, epoch FROM train_log WHERE loss IS NOT NULL ORDER BY step")
    assert logged["step"].to_list() == [1, 2, 3, 4]  # each step logged once, not once per rank
    # the ranks split the data: a step takes 2 x 4 of the 36 train rows (5 steps an epoch), where one
    # process would take 4 (9 steps an epoch, epoch 0.44 at step 4)
    assert logged["epoch"].to_list() == pytest.approx([0.2, 0.4, 0.6, 0.8])
    adapter = workspace / "runs" / run_id / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    card = json.loads((workspace / "runs" / run_id / "run_card.json").read_text(encoding="utf-8"))
    assert card["metrics"]["world_size"] == 2.0 and card["metrics"]["global_step"] == 4
