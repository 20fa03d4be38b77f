"""The Ray executor against the local one on this machine, same data, same process: wall time, where it goes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ray_bench.py [--rows 100000,1000000] [--files 4]
        [--num-cpus 2] [--address HOST:PORT] [--json out.json]

Data: benchmarks/curate_scale.py's generated SFT rows (Korean/English, ~250 characters, 2 % exact and 3 %
edited copies, 0.1 % broken lines, three labels), cut into `--files` JSONL shards that both executors read
as one glob. Stages: everything but semantic (schema, normalize, language, pii, quality, length, exact,
minhash, balance, split). Without --address the script starts a local cluster (`ray start --head --block
--num-cpus N`, own temp dir) and stops it by its process group at the end; its start-up is timed apart.

Per size it prints: local wall and per-stage seconds; Ray wall split into connect, read (one task per
file + frames to the driver), each run of stages (on Ray: send = frame to the object store, run =
map_batches, collect = survivors/decisions/signals back; on the driver: the local stage functions), and
the rest (accounting, report); and whether both produced the same decisions (they must).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from curate_scale import write_corpus

from tunelab.curate.config import CurateConfig
from tunelab.curate.executors import ray as ray_executor
from tunelab.curate.pipeline import curate_dataset
from tunelab.records.config import DatasetConfig

STAGES = [
    "schema",
    "normalize",
    "language",
    "pii",
    "quality",
    "length",
    "exact",
    "minhash",
    "balance",
    "split",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(num_cpus: int, temp_dir: str) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    started = time.perf_counter()
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus", str(num_cpus),
            "--port", str(port), "--ray-client-server-port", str(free_port()), "--include-dashboard=false",
            "--temp-dir", temp_dir, "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        start_new_session=True,
    )  # fmt: skip
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if head.poll() is not None:
                raise SystemExit("ray start --head failed") from None
            time.sleep(0.25)
    return head, f"127.0.0.1:{port}", time.perf_counter() - started


def stop_cluster(head: subprocess.Popen) -> None:
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()


def shards(source: Path, folder: Path, files: int) -> Path:
    lines = source.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // files)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(files):
        (folder / f"part-{k:03d}.jsonl").write_bytes(b"".join(lines[k * size : (k + 1) * size]))
    return folder / "part-*.jsonl"


def one_size(rows: int, files: int, address: str, tmp: Path) -> dict:
    data = tmp / f"scale-{rows}.jsonl"
    write_corpus(data, rows)
    glob = shards(data, tmp / f"shards-{rows}", files)
    data.unlink()
    dataset = DatasetConfig(path=glob, name="scale", kind="sft")
    curate = CurateConfig.model_validate(
        {
            "stages": STAGES,
            "length": {"min_chars": {"response": 5}, "max_chars": {"response": 4000}},
            "balance": {"max_per_label": int(rows * 0.25)},
        }
    )
    started = time.perf_counter()
    local = curate_dataset(dataset, curate, tmp / "ws", write=False, show_progress=False)
    local_wall = time.perf_counter() - started
    on_ray = curate.model_copy(update={"executor": "ray", "ray_address": address})
    started = time.perf_counter()
    ray = curate_dataset(dataset, on_ray, tmp / "ws", write=False, show_progress=False)
    ray_wall = time.perf_counter() - started
    segments = ray.report["stage_stats"]["executor"]["segments"]
    same = (
        ray.decisions.equals(local.decisions)
        and ray.train.equals(local.train)
        and ray.val.equals(local.val)
        and ray.data_version == local.data_version
    )
    return {
        "rows": rows,
        "files": files,
        "local_wall_s": round(local_wall, 2),
        "local_stages": {s["stage"]: s["seconds"] for s in local.report["stages"]},
        "ray_wall_s": round(ray_wall, 2),
        "ray_stages": {s["stage"]: s["seconds"] for s in ray.report["stages"]},  # row-local: worker-seconds
        "ray_read_s": ray.report["source"]["read_seconds"],
        "ray_segments": segments,
        "ray_rest_s": round(
            ray_wall - ray.report["source"]["read_seconds"] - sum(s["wall_s"] for s in segments), 2
        ),
        "ratio_ray_over_local": round(ray_wall / local_wall, 2),
        "same_decisions": same,
        "read": local.read,
        "kept": local.kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--address", default=None, help="an existing cluster (else one is started here)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict = {"cpus_here": os.cpu_count(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="tlrb") as tmp:
        head = None
        address = args.address
        if address is None:
            head, address, results["cluster_start_s"] = start_cluster(args.num_cpus, str(Path(tmp) / "ray"))
            print(
                f"ray start --head --num-cpus {args.num_cpus}: {results['cluster_start_s']:.1f}s", flush=True
            )
        try:
            started = time.perf_counter()
            ray_executor.connect(address)
            results["connect_s"] = round(time.perf_counter() - started, 2)
            print(f"ray.init(address): {results['connect_s']:.1f}s", flush=True)
            for rows in (int(r) for r in args.rows.split(",")):
                found = one_size(rows, args.files, address, Path(tmp))
                results["sizes"].append(found)
                print(json.dumps(found, indent=1), flush=True)
        finally:
            import ray

            ray.shutdown()
            if head is not None:
                stop_cluster(head)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
