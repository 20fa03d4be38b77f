"""QLoRA / LoRA supervised fine-tuning with trl's SFTTrainer, configured from the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import UserError
from tunelab.train import runs

if TYPE_CHECKING:
    from tunelab.recipe import Recipe


def sft_dataset(frame: Any, kind: str, tokenizer: Any, system_prompt: str | None) -> Any:
    from datasets import Dataset

    from tunelab.train.render import sft_example

    return Dataset.from_list(
        [sft_example(row, kind, tokenizer, system_prompt) for row in runs.to_rows(frame)]
    )


def training_texts(frame: Any, kind: str) -> list[str]:
    """Texts for the tiny model's tokenizer: every field the chat template will show it."""
    from tunelab.train.render import prompt_messages, target_text

    texts: list[str] = []
    for row in runs.to_rows(frame):
        texts.extend(m["content"] for m in prompt_messages(row, kind))
        texts.append(target_text(row, kind))
    return texts


def run_sft(
    recipe: Recipe,
    workspace: Path,
    curation_id: str | None = None,
    resume: str | None = None,
    merge: bool = False,
    show_progress: bool = True,
) -> runs.RunResult:
    """Train an SFT adapter on a curation of recipe.dataset; `resume` is the id of an interrupted run."""
    from tunelab.recipe import warehouse_path

    train_cfg = runs.require_train(recipe)
    runs.quiet_libraries()
    workspace = Path(workspace)
    db = warehouse_path(workspace)
    kind = recipe.dataset.kind
    if kind not in ("sft", "raft"):
        raise UserError(
            f"{runs.recipe_name(recipe)}: dataset.kind: SFT trains on kind sft or raft, not {kind}"
        )

    previous = runs.resume_target(db, resume, "sft") if resume else None
    if previous is not None:
        run_id, curation_id = resume, previous["curation_id"]
    else:
        run_id = runs.new_run_id("sft")
        curation_id = runs.ensure_curation(recipe.dataset, recipe, workspace, curation_id, show_progress)
    train_frame = runs.read_split(workspace, curation_id, "train")
    val_frame = runs.read_split(workspace, curation_id, "val")
    if train_frame.height == 0:
        raise UserError(f"curation {curation_id}: the train split is empty; nothing to train on")

    from tunelab.train.model import resolve_base_model

    if previous is not None:  # the checkpoint's adapter belongs to the base it was trained on
        base_model = previous["base_model"]
    else:
        base_model = resolve_base_model(train_cfg, workspace, training_texts(train_frame, kind))
    out_dir = runs.run_dir(workspace, run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = {
        "run_id": run_id,
        "kind": "sft",
        "curation_id": curation_id,
        "parent_run_id": None,
        "base_model": base_model,
        "base_revision": train_cfg.revision,
        "recipe": recipe.raw,
        "git_sha": runs.git_sha(),
        "output_dir": str(out_dir),
        "started_at": None,
    }
    with runs.warehouse_run(db, run, resuming=previous is not None):
        return _train(
            recipe, workspace, run, train_frame, val_frame, previous is not None, merge, show_progress
        )


def _train(
    recipe: Recipe,
    workspace: Path,
    run: dict[str, Any],
    train_frame: Any,
    val_frame: Any,
    resuming: bool,
    merge: bool,
    show_progress: bool,
) -> runs.RunResult:
    from trl import SFTConfig, SFTTrainer

    from tunelab.recipe import warehouse_path
    from tunelab.train.model import load_model_and_tokenizer, lora_config
    from tunelab.train.render import has_generation_markers

    train_cfg = runs.require_train(recipe)
    settings = train_cfg.sft
    db = warehouse_path(workspace)
    out_dir = Path(run["output_dir"])
    kind = recipe.dataset.kind
    try:
        model, tokenizer = load_model_and_tokenizer(run["base_model"], train_cfg)
    except UserError as exc:
        raise UserError(f"{runs.recipe_name(recipe)}: {exc}") from None
    train_data = sft_dataset(train_frame, kind, tokenizer, settings.system_prompt)
    has_eval = val_frame.height > 0
    eval_data = sft_dataset(val_frame, kind, tokenizer, settings.system_prompt) if has_eval else None
    config = SFTConfig(
        **runs.common_training_args(train_cfg, settings, out_dir / "checkpoints", has_eval),
        assistant_only_loss=settings.assistant_only_loss and has_generation_markers(tokenizer),
    )
    callback = runs.log_callback(db, run, show_progress, resuming)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=lora_config(train_cfg),
        callbacks=[callback],
    )
    metrics = runs.train_from_checkpoint(trainer, callback, run["run_id"], out_dir, resuming, has_eval)
    return runs.complete_run(
        recipe, workspace, run, trainer, tokenizer, metrics, (train_frame, val_frame), merge
    )
