"""QLoRA / LoRA supervised fine-tuning with trl's SFTTrainer, configured from the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tunelab.errors import UserError
from tunelab.modeling.chat import SystemPrompt, conversation, has_generation_markers, sft_examples
from tunelab.modeling.loading import (
    checkpointing_alias_ignored,
    load_model_and_tokenizer,
    lora_config,
    resolve_base_model,
)
from tunelab.train import runs
from tunelab.workspace import Workspace, as_workspace

if TYPE_CHECKING:
    from tunelab.recipe import Recipe


def sft_dataset(frame: pl.DataFrame, kind: str, tokenizer: Any, system_prompt: SystemPrompt) -> Any:
    from datasets import Dataset

    # a conversation is one example when the template marks assistant turns (each one learned), else
    # one example per assistant turn (modeling.chat.sft_examples)
    return Dataset.from_list(
        [
            example
            for row in runs.to_rows(frame)
            for example in sft_examples(row, kind, tokenizer, system_prompt)
        ]
    )


def training_texts(frame: pl.DataFrame, kind: str) -> list[str]:
    """Texts for the tiny model's tokenizer: every turn the chat template will show it."""
    return [turn["content"] for row in runs.to_rows(frame) for turn in conversation(row, kind)]


def run_sft(
    recipe: Recipe,
    workspace: Workspace | Path,
    curation_id: str | None = None,
    resume: str | None = None,
    merge: bool = False,
    show_progress: bool = True,
    note: str | None = None,
) -> runs.RunResult:
    """Train an SFT adapter on a curation of recipe.dataset; `resume` is the id of an interrupted run;
    `note` is stored with the run (`tunelab runs` shows it)."""
    train_cfg = runs.require_train(recipe)
    workspace = as_workspace(workspace)
    kind = recipe.dataset.kind
    if kind not in ("sft", "chat", "raft"):
        raise UserError(f"{recipe.name}: dataset.kind: SFT trains on kind sft, chat or raft, not {kind}")

    def base_model(train_frame: pl.DataFrame, previous: dict[str, Any] | None) -> tuple[str, str | None]:
        if previous is not None:  # the checkpoint's adapter belongs to the base it was trained on
            return previous["base_model"], previous.get("base_revision")
        texts = training_texts(train_frame, kind)
        return resolve_base_model(train_cfg, workspace, texts), train_cfg.revision

    prepared = runs.prepare_run(
        recipe, workspace, "sft", recipe.dataset, curation_id, resume, show_progress, base_model, note=note
    )
    with runs.warehouse_run(workspace.warehouse, prepared.run, resuming=prepared.resuming):
        return _train(recipe, workspace, prepared, merge, show_progress)


def _train(
    recipe: Recipe, workspace: Workspace, prepared: runs.PreparedRun, merge: bool, show_progress: bool
) -> runs.RunResult:
    from trl import SFTConfig, SFTTrainer

    train_cfg = runs.require_train(recipe)
    settings = train_cfg.sft
    kind = recipe.dataset.kind
    with runs.recipe_errors(recipe):
        model, tokenizer = load_model_and_tokenizer(prepared.run["base_model"], train_cfg)
    train_data, eval_data = prepared.datasets(
        lambda frame: sft_dataset(frame, kind, tokenizer, settings.system_prompt)
    )
    train_data, eval_data = runs.fit_lengths(prepared, train_data, eval_data, tokenizer, settings)
    config = SFTConfig(
        **runs.common_training_args(train_cfg, settings, prepared),
        assistant_only_loss=settings.assistant_only_loss and has_generation_markers(tokenizer),
    )
    callback = runs.log_callback(workspace, prepared, show_progress)
    with checkpointing_alias_ignored():  # SFTTrainer wraps the model with peft_config into a PeftModel
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=train_data,
            eval_dataset=eval_data,
            processing_class=tokenizer,
            peft_config=lora_config(train_cfg.lora),
            callbacks=[callback],
        )
    return runs.train_and_save(recipe, workspace, prepared, trainer, callback, tokenizer, merge)
