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

`--grouped` (default on) also times the grouping stages alone on the same rows, same process, after the
row-local stages would have run (the loaded frame with its content columns and a gapped `_order`):
minhash as the local stage / the old Ray path ran it (`minhash.run` in one process: the driver version is
exactly this call) against `ray_minhash.minhash_on_ray` (every phase on the cluster: per-phase wall time,
components rounds, bytes shuffled per row), and exact as `exact.run`, the whole-row Ray Data shuffle
(`ray.exact_on_ray`) and the narrow shuffle (`ray_minhash.exact_narrow`); all must give the same decisions.

`--driver-memory` instead measures the driver process's peak RSS (VmHWM of /proc/self/status in a fresh
process per run: unlike getrusage's ru_maxrss, which a child inherits from its parent's RSS at fork and keeps
across exec, VmHWM belongs to the new address space) for one written curation (write=True: outputs and the warehouse
ingest included) on the same data and cluster, one run after the other: the rows-on-driver path
(ray.prepare + pipeline.curate_frame + outputs.write_outputs, what every Ray curation did before
ray.curate_blocks, and what recipes with pairs / semantic / decontaminate / a tokenizer still do) and
ray.curate_blocks (the rows stay in the object store). Both curations' files must be equal.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ray_bench.py --driver-memory --rows 1000000 --files 4
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

import polars as pl
from curate_scale import write_corpus

from tunelab.curate import exact, minhash
from tunelab.curate.common import StageContext, with_content
from tunelab.curate.config import CurateConfig
from tunelab.curate.executors import ray as ray_executor
from tunelab.curate.executors import ray_minhash
from tunelab.curate.pipeline import curate_dataset
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records

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


def grouped_stages(rows: int, files: int, tmp: Path) -> dict:
    """minhash and exact alone, local vs on the cluster, on the same frame in the same process."""
    data = tmp / f"grouped-{rows}.jsonl"
    write_corpus(data, rows)
    frame = load_dataset_records(DatasetConfig(path=data, name="scale", kind="sft")).frame
    data.unlink()
    # `_order` with gaps, as after row-local stages that dropped rows
    frame = with_content(frame, "sft").with_columns(_order=pl.int_range(pl.len(), dtype=pl.Int64) * 2)
    curate = CurateConfig.model_validate({"exact": {"key": {}}})
    out: dict = {"rows": frame.height, "blocks": files}
    # warm-up on 2k rows: the workers import tunelab once, outside the timings
    ray_minhash.minhash_on_ray(frame.head(2000), curate.minhash, StageContext(), files)
    ray_minhash.exact_narrow(frame.head(2000), curate, StageContext(), files)

    clock = time.perf_counter()
    local_ctx = StageContext()
    local = minhash.run(frame, curate.minhash, local_ctx)
    out["minhash_local_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    ray_ctx = StageContext()
    on_ray = ray_minhash.minhash_on_ray(frame, curate.minhash, ray_ctx, files)
    out["minhash_ray_s"] = round(time.perf_counter() - clock, 2)
    info = ray_ctx.stats["minhash"].pop("ray")
    out["minhash_ray"] = info
    out["minhash_shuffled_bytes_per_row"] = {
        k: round(v / frame.height, 1) for k, v in info["shuffled_bytes"].items()
    }
    out["minhash_same"] = (
        on_ray.decisions.equals(local.decisions)
        and ray_ctx.clusters == local_ctx.clusters
        and ray_ctx.stats == local_ctx.stats
    )
    out["minhash_stats"] = local_ctx.stats["minhash"]

    clock = time.perf_counter()
    local = exact.run(frame, curate.exact, StageContext())
    out["exact_local_s"] = round(time.perf_counter() - clock, 2)
    whole = local  # the whole-row shuffle moves ~0.9 GB per 1M rows through Ray Data: 100k rows is enough
    if frame.height <= 200_000:
        with tempfile.TemporaryDirectory(prefix="tlex", dir=tmp) as shard_dir:
            clock = time.perf_counter()
            whole = ray_executor.exact_on_ray(frame, curate, StageContext(), 0, files, Path(shard_dir))
            out["exact_ray_whole_rows_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    narrow = ray_minhash.exact_narrow(frame, curate, StageContext(), files)
    out["exact_ray_narrow_s"] = round(time.perf_counter() - clock, 2)
    out["exact_whole_row_bytes"] = round(frame.to_arrow().nbytes / frame.height, 1)
    out["exact_narrow_row_bytes"] = 24
    out["exact_same"] = narrow.decisions.equals(local.decisions) and whole.decisions.equals(local.decisions)
    return out


def driver_child(mode: str, glob: str, address: str, ws: str, rows: int) -> None:
    """One written curation in this (fresh) process; prints its peak RSS and wall time as JSON."""

    def peak_kib() -> int:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))

    from tunelab.curate.outputs import write_outputs
    from tunelab.curate.pipeline import curate_frame
    from tunelab.workspace import Workspace

    dataset = DatasetConfig(path=Path(glob), name="scale", kind="sft")
    curate = CurateConfig.model_validate(
        {
            "stages": STAGES,
            "length": {"min_chars": {"response": 5}, "max_chars": {"response": 4000}},
            "balance": {"max_per_label": int(rows * 0.25)},
            "executor": "ray",
            "ray_address": address,
        }
    )
    ray_executor.connect(address)
    connected_kib = peak_kib()
    started = time.perf_counter()
    workspace = Workspace(Path(ws))
    phases = None
    if mode == "rows-on-driver":
        loaded, runner, samples_writer = ray_executor.prepare(dataset, curate, False)
        result = curate_frame(
            loaded.frame,
            loaded.quarantine,
            loaded.read,
            dataset,
            curate,
            workspace,
            None,
            False,
            runner=runner,
        )
        result.report["source"] = loaded.source
        write_outputs(result, dataset, curate, loaded.frame, workspace, samples_writer)
    else:
        result = curate_dataset(dataset, curate, workspace, show_progress=False)
        assert result.report["source"].get("rows_on_driver") is False
        phases = result.report["stage_stats"]["executor"]["driver_peak_mib"]
    peak = peak_kib()
    print(json.dumps({
        "mode": mode, "rows": rows, "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_gib": round(peak / 2**20, 3), "rss_after_connect_gib": round(connected_kib / 2**20, 3),
        "out_dir": str(result.out_dir), "read": result.read, "kept": result.kept,
        "peak_mib_after_phase": phases,
    }))  # fmt: skip


def driver_memory(rows: int, files: int, address: str, tmp: Path, modes: list[str]) -> dict:
    """Both paths, each in a fresh driver process, on the same shards and cluster."""
    data = tmp / f"mem-{rows}.jsonl"
    write_corpus(data, rows)
    glob = shards(data, tmp / f"mem-shards-{rows}", files)
    data.unlink()
    out: dict = {"rows": rows, "files": files, "uptime": subprocess.run(
        ["uptime"], capture_output=True, text=True).stdout.strip()}  # fmt: skip
    runs = []
    for mode in modes:
        done = subprocess.run(
            [sys.executable, __file__, "--driver-child", mode, "--data", str(glob), "--address", address,
             "--ws", str(tmp / "mem-ws"), "--rows", str(rows)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    out["runs"] = runs
    if len(runs) < 2:
        return out
    folders = [Path(r["out_dir"]) for r in runs]
    out["same_files"] = all(
        pl.read_parquet(folders[0] / name).equals(pl.read_parquet(folders[1] / name))
        for name in ("train.parquet", "val.parquet", "decisions.parquet", "quarantine.parquet")
    )
    out["peak_ratio_off_over_on"] = round(runs[1]["peak_rss_gib"] / runs[0]["peak_rss_gib"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--address", default=None, help="an existing cluster (else one is started here)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--grouped", default="on", choices=["on", "off", "only"])
    parser.add_argument("--driver-memory", action="store_true", help="driver peak RSS, both Ray paths")
    parser.add_argument("--modes", default="rows-on-driver,rows-off-driver", help="with --driver-memory")
    parser.add_argument("--driver-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ws", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver_child:
        driver_child(args.driver_child, args.data, args.address, args.ws, int(args.rows))
        return
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
                if args.driver_memory:
                    found = driver_memory(rows, args.files, address, Path(tmp), args.modes.split(","))
                    results.setdefault("driver_memory", []).append(found)
                    print(json.dumps(found, indent=1), flush=True)
                    continue
                if args.grouped != "off":
                    found = grouped_stages(rows, args.files, Path(tmp))
                    results.setdefault("grouped", []).append(found)
                    print(json.dumps(found, indent=1), flush=True)
                if args.grouped == "only":
                    continue
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
