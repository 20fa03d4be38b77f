"""DPO on top of an SFT adapter with trl's DPOTrainer; the reference model is the SFT policy itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tunelab.errors import UserError
from tunelab.modeling.chat import SystemPrompt, dpo_example
from tunelab.modeling.loading import checkpointing_alias_ignored, load_base_model, load_tokenizer
from tunelab.train import runs
from tunelab.warehouse import store
from tunelab.workspace import Workspace, as_workspace

if TYPE_CHECKING:
    from tunelab.recipe import Recipe


def dpo_dataset(frame: pl.DataFrame, tokenizer: Any, system_prompt: SystemPrompt) -> Any:
    from datasets import Dataset

    return Dataset.from_list([dpo_example(row, tokenizer, system_prompt) for row in runs.to_rows(frame)])


def sft_parent(db: Path, from_run: str | None) -> tuple[dict[str, Any], Path]:
    """The finished SFT run DPO starts from, and its adapter folder."""
    if from_run is None:
        raise UserError("--from-run: the SFT run to start from is required")
    parent = store.get_run(db, from_run) if db.is_file() else None
    if parent is None:
        raise UserError(f"--from-run: no run '{from_run}' in {db}")
    if parent["status"] != "finished" or not parent.get("adapter_path"):
        raise UserError(
            f"--from-run: run '{from_run}' is {parent['status']}; DPO needs a finished SFT adapter"
        )
    sft_adapter = Path(parent["adapter_path"])
    if not sft_adapter.is_dir():
        raise UserError(f"--from-run: the adapter of run '{from_run}' is gone: {sft_adapter}")
    return parent, sft_adapter


def run_dpo(
    recipe: Recipe,
    workspace: Workspace | Path,
    from_run: str | None,
    curation_id: str | None = None,
    resume: str | None = None,
    merge: bool = False,
    show_progress: bool = True,
    note: str | None = None,
) -> runs.RunResult:
    """Continue the adapter of SFT run `from_run` with DPO on the latest curation of recipe.train.dpo.dataset."""
    train_cfg = runs.require_train(recipe)
    if train_cfg.dpo is None:
        raise UserError(f"{recipe.name}: train.dpo: required for DPO (dataset, beta, loss_type)")
    dataset = train_cfg.dpo.dataset
    if dataset.kind != "dpo":
        raise UserError(f"{recipe.name}: train.dpo.dataset.kind: must be dpo, not {dataset.kind}")
    workspace = as_workspace(workspace)
    db = workspace.warehouse
    previous = runs.resume_target(db, resume, "dpo") if resume else None
    if previous is not None and previous.get("parent_run_id"):
        from_run = previous["parent_run_id"]  # a resumed DPO run continues from the SFT run it began with
    parent, sft_adapter = sft_parent(db, from_run)

    def base_model(train_frame: pl.DataFrame, previous: dict[str, Any] | None) -> tuple[str, str | None]:
        return parent["base_model"], parent.get("base_revision")

    prepared = runs.prepare_run(
        recipe,
        workspace,
        "dpo",
        dataset,
        curation_id,
        resume,
        show_progress,
        base_model,
        parent["run_id"],
        note=note,
    )
    with runs.warehouse_run(db, prepared.run, resuming=prepared.resuming):
        return _train(recipe, workspace, prepared, sft_adapter, merge, show_progress)


def _train(
    recipe: Recipe,
    workspace: Workspace,
    prepared: runs.PreparedRun,
    sft_adapter: Path,
    merge: bool,
    show_progress: bool,
) -> runs.RunResult:
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    train_cfg = runs.require_train(recipe)
    settings = train_cfg.dpo
    assert settings is not None
    with runs.recipe_errors(recipe):
        base = load_base_model(prepared.run["base_model"], train_cfg)
        tokenizer = load_tokenizer(str(sft_adapter), train_cfg)
    # a trainable PeftModel and no ref_model: trl copies the adapter into a frozen "ref" adapter, so the
    # reference is the SFT policy (passing a peft_config instead would make the bare base the reference)
    with checkpointing_alias_ignored():
        model = PeftModel.from_pretrained(base, str(sft_adapter), is_trainable=True)
    system_prompt = train_cfg.sft.system_prompt
    train_data, eval_data = prepared.datasets(lambda frame: dpo_dataset(frame, tokenizer, system_prompt))
    train_data, eval_data = runs.fit_lengths(prepared, train_data, eval_data, tokenizer, settings)
    config = DPOConfig(
        **runs.common_training_args(train_cfg, settings, prepared),
        beta=settings.beta,
        loss_type=[settings.loss_type],
    )
    callback = runs.log_callback(workspace, prepared, show_progress)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    return runs.train_and_save(
        recipe,
        workspace,
        prepared,
        trainer,
        callback,
        tokenizer,
        merge,
        parent_run_id=prepared.run["parent_run_id"],
        sft_adapter=str(sft_adapter),
    )
