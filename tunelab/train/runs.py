"""What SFT and DPO runs share: run ids and folders, curated data, warehouse lifecycle, trainer args, saving."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tunelab.curate.pipeline import curate_for
from tunelab.errors import UserError
from tunelab.modeling import lengths
from tunelab.modeling.loading import (
    checkpointing_alias_ignored,
    device_training_args,
    has_gpu,
    quiet_libraries,
    torch_dtype,
)
from tunelab.records.config import DatasetConfig
from tunelab.train import distributed
from tunelab.train.callbacks import WarehouseLogCallback
from tunelab.train.config import TrainConfig, TrainerSettings
from tunelab.warehouse import store
from tunelab.workspace import Workspace, claim, release

if TYPE_CHECKING:
    from tunelab.recipe import Recipe

# inside WORKSPACE/runs/<run_id>/ (Workspace.run_dir): what one run writes
RUN_CARD = "run_card.json"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
MERGED_DIR = "merged"


@dataclass
class RunResult:
    run_id: str
    kind: str
    output_dir: Path
    adapter_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    merged_dir: Path | None = None


def new_run_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def require_train(recipe: Recipe) -> TrainConfig:
    if recipe.train is None:
        raise UserError(f"{recipe.name}: train: required to train (base_model, lora, sft, dpo)")
    return recipe.train


def git_sha() -> str | None:
    """The commit of the tunelab code that trained (None for an installed package outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def ensure_curation(
    dataset: DatasetConfig, recipe: Recipe, workspace: Workspace, curation_id: str | None, show_progress: bool
) -> str:
    """The curation to train on: the one asked for, else the newest of this dataset, else a fresh one."""
    db = workspace.warehouse
    if curation_id is not None:
        if not workspace.curation_split(curation_id, "train").is_file():
            raise UserError(f"--curation: no curated data for '{curation_id}' in {workspace.curations_dir}")
        return curation_id
    latest = store.latest_curation(db, dataset.name) if db.is_file() else None
    if latest is not None and workspace.curation_split(latest, "train").is_file():
        return latest
    eval_set = recipe.evaluate.eval_set if recipe.evaluate is not None else None
    # the dataset's own curate settings (train.dpo.curate for the DPO data), as `tunelab curate` uses
    return curate_for(recipe, dataset, workspace, eval_set, show_progress).curation_id


def read_split(workspace: Workspace, curation_id: str, split: str) -> pl.DataFrame:
    path = workspace.curation_split(curation_id, split)
    if not path.is_file():
        return pl.DataFrame()
    return pl.read_parquet(path)


def data_version(workspace: Workspace, curation_id: str) -> str | None:
    db = workspace.warehouse
    row = store.get_curation(db, curation_id) if db.is_file() else None
    return None if row is None else row.get("data_version")


@dataclass
class PreparedRun:
    """What SFT and DPO know before their trainer is built: the run row, its data, and what it resumes."""

    run: dict[str, Any]
    train_frame: pl.DataFrame
    val_frame: pl.DataFrame
    previous: dict[str, Any] | None
    # what measuring the rendered rows against max_length found, per split (fit_lengths)
    length_checks: list[lengths.LengthCheck] = field(default_factory=list)

    @property
    def resuming(self) -> bool:
        return self.previous is not None

    @property
    def output_dir(self) -> Path:
        return Path(self.run["output_dir"])

    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / CHECKPOINTS_DIR

    @property
    def has_eval(self) -> bool:
        return self.val_frame.height > 0

    def datasets(self, build: Callable[[pl.DataFrame], Any]) -> tuple[Any, Any | None]:
        """The trainer's datasets: `build` over the train split, and over the val split when it has rows."""
        return build(self.train_frame), build(self.val_frame) if self.has_eval else None


def fit_lengths(
    prepared: PreparedRun, train_data: Any, eval_data: Any | None, tokenizer: Any, settings: TrainerSettings
) -> tuple[Any, Any | None]:
    """The trainer's datasets without the rows that would keep no response token within max_length.

    trl would drop those rows silently (and with all of them gone fail with `num_samples=0`): here they are
    measured on the very dataset rows the trainer gets, dropped with a reason, counted in the run card and
    the run metrics, and said on stderr; truncated rows are counted too. No row left to train on is one
    line naming the p95 rendered length and the setting to raise."""
    kind = prepared.run["kind"]
    key = f"train.{kind}.max_length"
    max_length = settings.max_length
    fitted: list[Any] = []
    prepared.length_checks = []
    for split, data, frame in (
        ("train", train_data, prepared.train_frame),
        ("val", eval_data, prepared.val_frame),
    ):
        if data is None:
            fitted.append(None)
            continue
        measured = lengths.measure(data, tokenizer)
        ids = frame["sample_id"].cast(pl.String).to_list() if "sample_id" in frame.columns else []
        if len(ids) != len(data):
            # one example per assistant turn (a template without generation markers): examples, not rows
            ids = [f"{split}-example-{i}" for i in range(len(data))]
        found = lengths.check(split, measured, ids, max_length)
        prepared.length_checks.append(found)
        keep = (~measured.no_response(max_length)).nonzero()[0].tolist()
        if split == "train" and not keep:
            p95 = found.tokens["p95"]
            raise UserError(
                f"{key}: none of the {found.rows:,} training rows keeps a response token within "
                f"max_length {max_length} (rendered length p95 {p95:,.0f} tokens, max {found.tokens['max']:,.0f}); "
                f"raise {key} (e.g. to {int(p95) + 1}) or drop long rows with curate.length.max_tokens"
            )
        if len(keep) < len(data):
            data = data.select(keep)
            mask = pl.Series(measured.no_response(max_length)).not_()
            frame = frame.filter(mask) if frame.height == mask.len() else frame
            if split == "train":
                prepared.train_frame = frame
            else:
                prepared.val_frame = frame
        fitted.append(data if len(data) else None)
        if found.truncated or found.dropped:
            print(
                f"note: {key} {max_length}: {found.truncated:,} of {found.rows:,} {split} rows are longer and "
                f"get truncated; {found.dropped:,} keep no response token and are dropped, not trained on "
                f"(rendered length p95 {found.tokens['p95']:,.0f} tokens)",
                file=sys.stderr,
            )
    return fitted[0], fitted[1]


def length_metrics(prepared: PreparedRun) -> dict[str, float]:
    """The counts of fit_lengths as flat run metrics (the warehouse's runs.metrics)."""
    metrics: dict[str, float] = {}
    for found in prepared.length_checks:
        metrics[f"{found.split}_rows_truncated"] = float(found.truncated)
        metrics[f"{found.split}_rows_dropped_no_response"] = float(found.dropped)
        metrics[f"{found.split}_tokens_p95"] = found.tokens["p95"]
    if prepared.length_checks:
        metrics["max_length"] = float(prepared.length_checks[0].max_length)
    return metrics


def prepare_run(
    recipe: Recipe,
    workspace: Workspace,
    kind: str,
    dataset: DatasetConfig,
    curation_id: str | None,
    resume: str | None,
    show_progress: bool,
    base_model: Callable[[pl.DataFrame, dict[str, Any] | None], tuple[str, str | None]],
    parent_run_id: str | None = None,
    note: str | None = None,
) -> PreparedRun:
    """The one run set-up of SFT and DPO: resume target or new id, the curation and its splits, the run folder
    and the warehouse row to start. `base_model(train_frame, previous)` gives (base model, revision);
    `note` is the user's words about the run (`--note`), shown by `tunelab runs`.

    Under `accelerate launch`, rank 0 does all of this and the other ranks get its run row (one run id,
    one curation, one warehouse row); a mistake rank 0 reports ends the other ranks quietly (exit 2)."""
    quiet_libraries()  # in every process: the other ranks' loading bars would interleave with rank 0's
    if not distributed.is_main():
        status, payload = distributed.from_main(None)
        if status == "error":
            raise SystemExit(2)  # rank 0 prints the one line
        run, previous = payload
        train_frame = read_split(workspace, run["curation_id"], "train")
        return PreparedRun(run, train_frame, read_split(workspace, run["curation_id"], "val"), previous)
    try:
        prepared = _prepare_on_main(
            recipe,
            workspace,
            kind,
            dataset,
            curation_id,
            resume,
            show_progress,
            base_model,
            parent_run_id,
            note,
        )
    except BaseException as exc:
        if distributed.world_size() > 1:
            distributed.from_main(("error", str(exc)))
        raise
    if distributed.world_size() > 1:
        distributed.from_main(("ok", (prepared.run, prepared.previous)))
    return prepared


def _prepare_on_main(
    recipe: Recipe,
    workspace: Workspace,
    kind: str,
    dataset: DatasetConfig,
    curation_id: str | None,
    resume: str | None,
    show_progress: bool,
    base_model: Callable[[pl.DataFrame, dict[str, Any] | None], tuple[str, str | None]],
    parent_run_id: str | None,
    note: str | None,
) -> PreparedRun:
    workspace.ensure_writable()
    quiet_libraries()
    previous = resume_target(workspace.warehouse, resume, kind) if resume else None
    if previous is not None:
        run_id, curation_id = previous["run_id"], previous["curation_id"]
    else:
        run_id = new_run_id(kind)
        curation_id = ensure_curation(dataset, recipe, workspace, curation_id, show_progress)
    train_frame = read_split(workspace, curation_id, "train")
    val_frame = read_split(workspace, curation_id, "val")
    if train_frame.height == 0:
        raise UserError(f"curation {curation_id}: the train split is empty; nothing to train on")
    base, revision = base_model(train_frame, previous)
    out_dir = workspace.run_dir(run_id)
    claim(out_dir)  # this process writes the run; `tunelab doctor` can tell when it is gone
    run = {
        "run_id": run_id,
        "kind": kind,
        "curation_id": curation_id,
        "parent_run_id": parent_run_id,
        "base_model": base,
        "base_revision": revision,
        "recipe": recipe.as_record(),
        "git_sha": git_sha(),
        "output_dir": str(out_dir),
        "started_at": None,
        "note": note,
    }
    return PreparedRun(run, train_frame, val_frame, previous)


@contextmanager
def recipe_errors(recipe: Recipe) -> Iterator[None]:
    """A model or tokenizer that does not load is a mistake in this recipe: say which one."""
    try:
        yield
    except UserError as exc:
        raise UserError(f"{recipe.name}: {exc}") from None


def common_training_args(
    train_cfg: TrainConfig, settings: TrainerSettings, prepared: PreparedRun
) -> dict[str, Any]:
    """Trainer arguments both trainers take (SFTConfig / DPOConfig keywords), from the recipe plus the
    hardware; `report_to` passes the recipe's experiment trackers through (none: the warehouse only)."""
    has_eval = prepared.has_eval
    eval_steps = settings.eval_steps
    return {
        "output_dir": str(prepared.checkpoints_dir),
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        "per_device_train_batch_size": settings.batch_size,
        "per_device_eval_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "max_length": settings.max_length,
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "steps" if (eval_steps and has_eval) else "no",
        "eval_steps": eval_steps if has_eval else None,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "report_to": list(settings.report_to) or "none",
        "disable_tqdm": True,  # our progress display (tunelab.progress, on stderr) replaces it
        **device_training_args(train_cfg, settings.optim),
        # every LoRA weight takes part in each forward pass: DDP's search for unused ones is wasted work
        **({"ddp_find_unused_parameters": False} if distributed.world_size() > 1 else {}),
        **{
            key: value
            for key, value in (
                ("deepspeed", settings.deepspeed),
                ("fsdp", settings.fsdp),
                ("fsdp_config", settings.fsdp_config),
            )
            if value is not None
        },
    }


def quiet_trainer(trainer: Any) -> None:
    """With tqdm off, transformers prints every log dict to stdout; our progress and train_log carry them."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


@contextmanager
def warehouse_run(db: Path, run: dict[str, Any], resuming: bool) -> Iterator[None]:
    """Run row lifecycle: 'running' at start, 'failed' with the error on any exception (Ctrl-C included).
    Only rank 0 writes it (the other ranks of an `accelerate launch` train without touching the warehouse)."""
    if not distributed.is_main():
        yield
        return
    if resuming:
        store.reopen_run(db, run["run_id"])
    else:
        store.start_run(db, run)
    try:
        yield
    except BaseException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        store.finish_run(db, run["run_id"], "failed", error=f"{type(exc).__name__}: {message}".rstrip(": "))
        release(Path(run["output_dir"]))
        raise
    release(Path(run["output_dir"]))


def resume_target(db: Path, run_id: str, kind: str) -> dict[str, Any]:
    run = store.get_run(db, run_id) if db.is_file() else None
    if run is None:
        raise UserError(f"--resume: no run '{run_id}' in {db}")
    if run["kind"] != kind:
        raise UserError(f"--resume: run '{run_id}' is a {run['kind']} run, not {kind}")
    if run["status"] == "finished":
        raise UserError(f"--resume: run '{run_id}' already finished")
    return run


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint: trainer_state.json is written last, so a run killed mid-save leaves a
    folder without it, which must not be resumed from."""
    complete = [
        path
        for path in Path(output_dir).glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / "trainer_state.json").is_file()
    ]
    if not complete:
        return None
    return str(max(complete, key=lambda path: int(path.name.removeprefix("checkpoint-"))))


def checkpoint_step(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.removeprefix("checkpoint-")) if checkpoint else 0


def final_metrics(trainer: Any, train_output: Any, has_eval: bool) -> dict[str, Any]:
    metrics = {k: float(v) for k, v in (train_output.metrics or {}).items() if isinstance(v, int | float)}
    metrics["global_step"] = int(trainer.state.global_step)
    if has_eval:
        metrics.update({k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, int | float)})
    return metrics


def save_outputs(
    trainer: Any,
    tokenizer: Any,
    out_dir: Path,
    card: dict[str, Any],
    merge: bool,
    base_model: str,
    train_cfg: TrainConfig,
) -> tuple[Path, Path | None]:
    """Adapter + tokenizer + run card under out_dir; optionally a merged full model next to the adapter."""
    adapter_dir = out_dir / ADAPTER_DIR
    trainer.model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
    tokenizer.save_pretrained(str(adapter_dir))
    merged_dir = merge_adapter(base_model, adapter_dir, out_dir / MERGED_DIR, train_cfg) if merge else None
    card = {**card, "adapter_dir": str(adapter_dir), "merged_dir": str(merged_dir) if merged_dir else None}
    (out_dir / RUN_CARD).write_text(
        json.dumps(card, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    return adapter_dir, merged_dir


def merge_adapter(base_model: str, adapter_dir: Path, merged_dir: Path, train_cfg: TrainConfig) -> Path:
    """Merge into unquantized base weights: merging into 4-bit weights would round the adapter away."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch_dtype(train_cfg.compute_dtype) if has_gpu() else torch_dtype("float32")
    base = AutoModelForCausalLM.from_pretrained(
        base_model, dtype=dtype, revision=train_cfg.revision, trust_remote_code=train_cfg.trust_remote_code
    )
    with checkpointing_alias_ignored():
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(merged_dir))
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(merged_dir))
    return merged_dir


def to_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts() if frame.height else []


def train_from_checkpoint(
    trainer: Any, callback: WarehouseLogCallback, prepared: PreparedRun
) -> dict[str, Any]:
    """Train (from the last complete checkpoint when resuming) and return the final metrics."""
    quiet_trainer(trainer)
    checkpoints = prepared.checkpoints_dir
    checkpoint = last_checkpoint(checkpoints) if prepared.resuming else None
    if prepared.resuming and checkpoint is None:
        raise UserError(f"--resume: run {prepared.run['run_id']} has no complete checkpoint in {checkpoints}")
    try:
        with checkpointing_alias_ignored():
            output = trainer.train(resume_from_checkpoint=checkpoint)
            metrics = final_metrics(trainer, output, prepared.has_eval)
        metrics["resumed_from_step"] = checkpoint_step(checkpoint)
    finally:
        callback.close()
    return metrics


def count_4bit_modules(model: Any) -> int:
    """How many bitsandbytes 4-bit linear layers the trained model really holds (0 = not quantized)."""
    # peft's LoRA wrapper is also called Linear4bit: count bitsandbytes' own layers only
    return sum(
        1
        for module in model.modules()
        if type(module).__name__ == "Linear4bit" and type(module).__module__.startswith("bitsandbytes")
    )


def train_and_save(
    recipe: Recipe,
    workspace: Workspace,
    prepared: PreparedRun,
    trainer: Any,
    callback: WarehouseLogCallback,
    tokenizer: Any,
    merge: bool,
    **card_extra: Any,
) -> RunResult:
    """The end SFT and DPO share: train, save adapter (+ merged model) and run card, mark the run finished."""
    metrics = {**train_from_checkpoint(trainer, callback, prepared), **length_metrics(prepared)}
    metrics["world_size"] = float(distributed.world_size())  # processes that trained (accelerate launch)
    run, out_dir = prepared.run, prepared.output_dir
    card = {
        "run_id": run["run_id"],
        "kind": run["kind"],
        **card_extra,
        "curation_id": run["curation_id"],
        "data_version": data_version(workspace, run["curation_id"]),
        "base_model": run["base_model"],
        "train_rows": prepared.train_frame.height,
        "val_rows": prepared.val_frame.height,
        # rows cut at max_length and rows dropped for keeping no response token (fit_lengths)
        "lengths": [found.as_dict() for found in prepared.length_checks],
        "recipe": recipe.as_record(),
        "metrics": metrics,
        "linear4bit_modules": count_4bit_modules(trainer.model),
    }
    if not distributed.is_main():  # rank 0 saves the adapter (every rank holds the same weights after DDP)
        distributed.wait_for_main()
        return RunResult(run["run_id"], run["kind"], out_dir, out_dir / ADAPTER_DIR, metrics)
    adapter_dir, merged_dir = save_outputs(
        trainer, tokenizer, out_dir, card, merge, run["base_model"], require_train(recipe)
    )
    distributed.wait_for_main()
    store.finish_run(
        workspace.warehouse, run["run_id"], "finished", metrics=metrics, adapter_path=str(adapter_dir)
    )
    return RunResult(run["run_id"], run["kind"], out_dir, adapter_dir, metrics, merged_dir)


def log_callback(workspace: Workspace, prepared: PreparedRun, show_progress: bool) -> WarehouseLogCallback:
    """The callback streaming trainer logs to train_log and showing progress; a resumed run skips the steps
    it already logged."""
    db, run_id = workspace.warehouse, prepared.run["run_id"]
    return WarehouseLogCallback(
        db,
        run_id,
        show_progress=None if show_progress else False,
        skip_steps=store.logged_steps(db, run_id) if prepared.resuming else None,
        description=f"train {run_id} step",
    )
