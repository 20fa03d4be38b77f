"""Overhead of `run_sft` (rendering, warehouse logging, progress, run card) over a bare trl SFTTrainer.

Same tiny model, same curated rows, same SFTConfig, measured in one process and interleaved so machine
load hits both alike. Prints steps/s of each (from the trainer's own train_runtime, and end to end) and
the ratio; goal: ≤ 5 % overhead in the training loop. logging_steps=1 is the worst case for our
callback (a warehouse row every step, flushed every 10).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_overhead.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def bare_sft(model_dir: Path, workspace: Path, recipe, curation: str) -> tuple[float, float, float]:
    """The same training with nothing of ours but the data files: trl + peft straight from their docs."""
    import polars as pl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    started, cpu_started = time.perf_counter(), time.process_time()
    settings, lora = recipe.train.sft, recipe.train.lora
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)

    def messages(frame: pl.DataFrame) -> Dataset:
        return Dataset.from_list(
            [
                {
                    "messages": [
                        {"role": "system", "content": r["system"]},
                        {"role": "user", "content": r["prompt"]},
                        {"role": "assistant", "content": r["response"]},
                    ]
                }  # fmt: skip
                for r in frame.to_dicts()
            ]
        )

    folder = workspace / "curations" / curation
    out = Path(tempfile.mkdtemp(dir=workspace))
    config = SFTConfig(
        output_dir=str(out), max_steps=settings.max_steps, learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler, warmup_steps=settings.warmup_ratio,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.batch_size,
        max_length=settings.max_length, logging_steps=settings.logging_steps, save_strategy="steps",
        save_steps=settings.save_steps, eval_strategy="no", seed=settings.seed, data_seed=settings.seed,
        report_to="none", use_cpu=True, bf16=False, optim="adamw_torch", activation_checkpointing=False,
        assistant_only_loss=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=messages(pl.read_parquet(folder / "train.parquet")),
        eval_dataset=messages(pl.read_parquet(folder / "val.parquet")),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),  # fmt: skip
    )
    # with tqdm off, transformers prints every log dict to stdout; run_sft removes that printer too
    trainer.remove_callback(PrinterCallback)
    output = trainer.train()
    trainer.evaluate()
    trainer.model.save_pretrained(str(out / "adapter"))
    tokenizer.save_pretrained(str(out / "adapter"))
    return output.metrics["train_runtime"], time.perf_counter() - started, time.process_time() - cpu_started


def ours(model_dir: Path, workspace: Path, recipe, curation: str) -> tuple[float, float, float]:
    from tunelab.train.sft import run_sft

    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_sft(recipe, workspace, curation_id=curation, show_progress=False)
    return result.metrics["train_runtime"], time.perf_counter() - started, time.process_time() - cpu_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import transformers
    from test_train_sft import build_test_model, make_recipe, persona_rows, write_curation

    transformers.logging.set_verbosity_error()
    root = Path(tempfile.mkdtemp(prefix="tunelab-train-bench-"))
    model_dir = build_test_model(root)
    workspace = root / "ws"
    curation = write_curation(workspace, "bench", persona_rows() * 3)
    recipe = make_recipe(str(model_dir), max_steps=args.steps, save_steps=10_000)

    ours(model_dir, workspace, recipe, curation)  # warm-up: imports, first-call costs, the warehouse file
    bare_sft(model_dir, workspace, recipe, curation)
    timings: dict[str, list[tuple[float, float, float]]] = {"bare": [], "ours": []}
    for _ in range(args.repeats):
        timings["bare"].append(bare_sft(model_dir, workspace, recipe, curation))
        timings["ours"].append(ours(model_dir, workspace, recipe, curation))

    def median(name: str, index: int) -> float:
        return statistics.median(t[index] for t in timings[name])

    print(f"tiny Llama, {args.steps} steps, batch {recipe.train.sft.batch_size}, logging every step, "
          f"median of {args.repeats}")  # fmt: skip
    for label, index in (
        ("training loop (train_runtime)", 0),
        ("end to end, wall", 1),
        ("end to end, CPU", 2),
    ):
        bare, mine = median("bare", index), median("ours", index)
        print(
            f"{label:32s} bare {args.steps / bare:7.2f} steps/s   run_sft {args.steps / mine:7.2f} steps/s   "
            f"overhead {100 * (mine / bare - 1):+6.1f} %"
        )


if __name__ == "__main__":
    main()
