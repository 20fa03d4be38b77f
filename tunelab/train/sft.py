"""QLoRA / LoRA supervised fine-tuning with trl's SFTTrainer, configured from the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import UserError
from tunelab.train import runs
from tunelab.workspace import Workspace, as_workspace

if TYPE_CHECKING:
    from tunelab.recipe import Recipe


def sft_dataset(frame: Any, kind: str, tokenizer: Any, system_prompt: str | None) -> Any:
    from datasets import Dataset

    from tunelab.modeling.chat import sft_example

    return Dataset.from_list(
        [sft_example(row, kind, tokenizer, system_prompt) for row in runs.to_rows(frame)]
    )


def training_texts(frame: Any, kind: str) -> list[str]:
    """Texts for the tiny model's tokenizer: every field the chat template will show it."""
    from tunelab.modeling.chat import prompt_messages, target_text

    texts: list[str] = []
    for row in runs.to_rows(frame):
        texts.extend(m["content"] for m in prompt_messages(row, kind))
        texts.append(target_text(row, kind))
    return texts


def run_sft(
    recipe: Recipe,
    workspace: Workspace | Path,
    curation_id: str | None = None,
    resume: str | None = None,
    merge: bool = False,
    show_progress: bool = True,
) -> runs.RunResult:
    """Train an SFT adapter on a curation of recipe.dataset; `resume` is the id of an interrupted run."""
    from tunelab.modeling.loading import resolve_base_model

    train_cfg = runs.require_train(recipe)
    workspace = as_workspace(workspace)
    kind = recipe.dataset.kind
    if kind not in ("sft", "raft"):
        raise UserError(f"{recipe.name}: dataset.kind: SFT trains on kind sft or raft, not {kind}")

    def base_model(train_frame: Any, previous: dict[str, Any] | None) -> tuple[str, str | None]:
        if previous is not None:  # the checkpoint's adapter belongs to the base it was trained on
            return previous["base_model"], previous.get("base_revision")
        texts = training_texts(train_frame, kind)
        return resolve_base_model(train_cfg, workspace, texts), train_cfg.revision

    prepared = runs.prepare_run(
        recipe, workspace, "sft", recipe.dataset, curation_id, resume, show_progress, base_model
    )
    with runs.warehouse_run(workspace.warehouse, prepared.run, resuming=prepared.resuming):
        return _train(recipe, workspace, prepared, merge, show_progress)


def _train(
    recipe: Recipe, workspace: Workspace, prepared: runs.PreparedRun, merge: bool, show_progress: bool
) -> runs.RunResult:
    from trl import SFTConfig, SFTTrainer

    from tunelab.modeling.chat import has_generation_markers
    from tunelab.modeling.loading import load_model_and_tokenizer, lora_config

    train_cfg = runs.require_train(recipe)
    settings = train_cfg.sft
    run, train_frame, val_frame = prepared.run, prepared.train_frame, prepared.val_frame
    kind = recipe.dataset.kind
    try:
        model, tokenizer = load_model_and_tokenizer(run["base_model"], train_cfg)
    except UserError as exc:
        raise UserError(f"{recipe.name}: {exc}") from None
    train_data = sft_dataset(train_frame, kind, tokenizer, settings.system_prompt)
    has_eval = val_frame.height > 0
    eval_data = sft_dataset(val_frame, kind, tokenizer, settings.system_prompt) if has_eval else None
    config = SFTConfig(
        **runs.common_training_args(train_cfg, settings, prepared.output_dir / "checkpoints", has_eval),
        assistant_only_loss=settings.assistant_only_loss and has_generation_markers(tokenizer),
    )
    callback = runs.log_callback(workspace.warehouse, run, show_progress, prepared.resuming)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=lora_config(train_cfg.lora),
        callbacks=[callback],
    )
    metrics = runs.train_from_checkpoint(
        trainer, callback, run["run_id"], prepared.output_dir, prepared.resuming, has_eval
    )
    return runs.complete_run(
        recipe, workspace, run, trainer, tokenizer, metrics, (train_frame, val_frame), merge
    )
