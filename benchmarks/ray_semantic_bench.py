"""semantic, balance and split: the local stages against executors/ray_groups.py, same rows, same process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ray_semantic_bench.py [--rows 10000] [--blocks 4]
        [--num-cpus 2] [--address HOST:PORT] [--json out.json]

Data: benchmarks/curate_scale.py's generated SFT rows (Korean/English, ~250 characters, 2 % exact and
3 % edited copies, three labels), loaded with their content columns and a gapped `_order` (as after
row-local stages that dropped rows). Each side gets a fresh embedding cache, so both embed every text.

- semantic (use-v3, the stage's defaults): `semantic.run` (one process: embed + search + greedy keep)
  against `ray_groups.semantic_on_ray` (cache keys on the driver, the misses in the local stage's
  batches embedded by `map_batches` in an actor pool of up to --num-cpus actors, search + keep on the
  driver); embedding throughput
  (texts/s) on each side, and whether both give the same decisions and the same cache file.
- balance (cap + oversample) then split (stratified): `balance.run` + `split.run` on the full rows against
  `balance_on_ray` + `split_on_ray` (narrow columns to the driver, plan joined back on the cluster); the
  bytes per row the driver received for the decision, against the full rows a driver step holds.
`--chatbot /work/shared/data/songys__Chatbot_data/ChatbotData.csv` uses that file's first --rows
Korean Q/A pairs (Q + A as the content, its three labels) instead of the generated rows.
Without --address a local cluster is started (`ray start --head --num-cpus N`) and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from curate_scale import write_corpus
from ray_bench import start_cluster, stop_cluster

from tunelab.curate import balance, semantic, split
from tunelab.curate.common import StageContext, with_content
from tunelab.curate.config import CurateConfig
from tunelab.curate.executors import ray as ray_executor
from tunelab.curate.executors import ray_groups
from tunelab.embeddings.loader import cache_path
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records


def load(rows: int, tmp: Path) -> pl.DataFrame:
    data = tmp / f"rows-{rows}.jsonl"
    write_corpus(data, rows)
    frame = load_dataset_records(DatasetConfig(path=data, name="scale", kind="sft")).frame
    return with_content(frame, "sft").with_columns(_order=pl.int_range(pl.len(), dtype=pl.Int64) * 2)


def load_chatbot(path: Path, rows: int) -> pl.DataFrame:
    """songys/Chatbot_data (Korean Q/A, three labels) as the frame the stages see: real short Korean text."""
    raw = pl.read_csv(path, schema_overrides={"label": pl.String}).head(rows)  # one label is "2   "
    return raw.select(
        pl.format("chatbot:{}", pl.int_range(pl.len())).alias("sample_id"),
        pl.concat_str([pl.col("Q"), pl.col("A")], separator="\n").alias("content"),
        pl.col("label").cast(pl.String).str.strip_chars().alias("label"),
        (pl.int_range(pl.len(), dtype=pl.Int64) * 2).alias("_order"),
    )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def semantic_side(frame: pl.DataFrame, blocks: int, tmp: Path) -> dict:
    curate = CurateConfig.model_validate({})
    cfg = curate.semantic
    out: dict = {"rows": frame.height, "model": cfg.model}
    # warm-up: actors import tunelab and load the model outside the timings (cache in a throwaway folder)
    ray_groups.semantic_on_ray(frame.head(200), curate, StageContext(cache_dir=tmp / "warm"), blocks)
    semantic.embedder_for(cfg.model)
    local_ctx = StageContext(cache_dir=tmp / "local")
    clock = time.perf_counter()
    texts = frame["content"].fill_null("").to_list()
    vectors = semantic.embed(texts, cfg, local_ctx)
    out["local_embed_s"] = round(time.perf_counter() - clock, 2)
    local = semantic.decide(frame, vectors, cfg, local_ctx)
    out["local_stage_s"] = round(time.perf_counter() - clock, 2)
    ray_ctx = StageContext(cache_dir=tmp / "ray")
    clock = time.perf_counter()
    on_ray = ray_groups.semantic_on_ray(frame, curate, ray_ctx, blocks)
    out["ray_stage_s"] = round(time.perf_counter() - clock, 2)
    seen = ray_groups.DRIVER_FRAMES["semantic"]
    out["ray_embed_s"] = seen[
        "embed_seconds"
    ]  # keys + lookup + plan + actor pool + vectors back + cache write
    out["actors"] = seen["actors"]
    out["embedded"] = seen["embedded"]
    out["local_texts_per_s"] = round(seen["embedded"] / out["local_embed_s"], 1)
    out["ray_texts_per_s"] = round(seen["embedded"] / out["ray_embed_s"], 1)
    out["driver_bytes_per_row"] = seen["bytes_per_row"]  # (key, vector) of each embedded text, per row
    files = [cache_path(tmp / side, "use-v3", 512) for side in ("local", "ray")]
    stored = [np.load(f) for f in files]
    out["same_cache"] = bool(
        np.array_equal(stored[0]["keys"], stored[1]["keys"])
        and np.array_equal(stored[0]["vectors"], stored[1]["vectors"])
    )
    out["same_decisions"] = on_ray.decisions.equals(local.decisions) and on_ray.frame.equals(local.frame)
    out["dropped"] = local.decisions.height
    return out


def balance_split_side(frame: pl.DataFrame, blocks: int) -> dict:
    cap = int(frame.height * 0.3)
    curate = CurateConfig.model_validate(
        {
            "balance": {"label": "label", "max_per_label": cap, "oversample": True, "seed": 1},
            "split": {"val_ratio": 0.1, "stratify": "label", "seed": 2},
        }
    )
    out: dict = {"rows": frame.height, "cap": cap}
    ray_groups.balance_on_ray(frame.head(200), curate, StageContext(), blocks)  # warm-up
    clock = time.perf_counter()
    local_ctx = StageContext()
    b = balance.run(frame, curate.balance, local_ctx)
    local = split.run(b.frame, curate.split, local_ctx)
    out["local_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    ray_ctx = StageContext()
    rb = ray_groups.balance_on_ray(frame, curate, ray_ctx, blocks)
    ray_out = ray_groups.split_on_ray(rb.frame, curate, ray_ctx, blocks)
    out["ray_s"] = round(time.perf_counter() - clock, 2)
    out["oversampled"] = local_ctx.stats["balance"]["oversampled"]
    out["same"] = (
        rb.decisions.equals(b.decisions)
        and ray_out.decisions.equals(local.decisions)
        and ray_out.frame.drop("_order").equals(local.frame.drop("_order"))
        and ray_ctx.stats == local_ctx.stats
    )
    for stage in ("balance", "split"):
        seen = ray_groups.DRIVER_FRAMES[stage]
        out[f"{stage}_driver_columns"] = seen["columns"]
        out[f"{stage}_driver_bytes_per_row"] = seen["bytes_per_row"]
        out[f"{stage}_full_bytes_per_row"] = seen["full_bytes_per_row"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--address")
    parser.add_argument("--json")
    parser.add_argument(
        "--chatbot", type=Path, help="ChatbotData.csv: real Korean Q/A instead of generated rows"
    )
    args = parser.parse_args()
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "uptime_before": uptime()}
    head = None
    with tempfile.TemporaryDirectory(prefix="tlsem") as tmp_name:
        tmp = Path(tmp_name)
        address = args.address
        if address is None:
            head, address, result["cluster_start_s"] = start_cluster(
                args.num_cpus, tempfile.mkdtemp(prefix="tlr")
            )
        try:
            ray_executor.connect(address)
            frame = load_chatbot(args.chatbot, args.rows) if args.chatbot else load(args.rows, tmp)
            result["data"] = str(args.chatbot) if args.chatbot else "curate_scale.write_corpus"
            result["semantic"] = semantic_side(frame, args.blocks, tmp)
            print(json.dumps(result["semantic"]), flush=True)
            result["balance_split"] = balance_split_side(frame, args.blocks)
            print(json.dumps(result["balance_split"]), flush=True)
        finally:
            import ray

            ray.shutdown()
            if head is not None:
                stop_cluster(head)
    result["uptime_after"] = uptime()
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
