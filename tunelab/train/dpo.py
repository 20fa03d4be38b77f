"""DPO on top of an SFT adapter with trl's DPOTrainer; the reference model is the SFT policy itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import UserError
from tunelab.train import runs

if TYPE_CHECKING:
    from tunelab.recipe import Recipe


def dpo_dataset(frame: Any, tokenizer: Any, system_prompt: str | None) -> Any:
    from datasets import Dataset

    from tunelab.train.render import dpo_example

    return Dataset.from_list([dpo_example(row, tokenizer, system_prompt) for row in runs.to_rows(frame)])


def run_dpo(
    recipe: Recipe,
    workspace: Path,
    from_run: str | None,
    curation_id: str | None = None,
    resume: str | None = None,
    merge: bool = False,
    show_progress: bool = True,
) -> runs.RunResult:
    """Continue the adapter of SFT run `from_run` with DPO on the latest curation of recipe.train.dpo.dataset."""
    from tunelab.recipe import warehouse_path
    from tunelab.warehouse import store

    train_cfg = runs.require_train(recipe)
    if train_cfg.dpo is None:
        raise UserError(f"{runs.recipe_name(recipe)}: train.dpo: required for DPO (dataset, beta, loss_type)")
    runs.quiet_libraries()
    workspace = Path(workspace)
    db = warehouse_path(workspace)
    previous = runs.resume_target(db, resume, "dpo") if resume else None
    if previous is not None and previous.get("parent_run_id"):
        from_run = previous["parent_run_id"]  # a resumed DPO run continues from the SFT run it began with
    if from_run is None:
        raise UserError("--from-run: the SFT run to start from is required")
    parent = store.get_run(db, from_run) if db.is_file() else None
    if parent is None:
        raise UserError(f"--from-run: no run '{from_run}' in {db}")
    if parent["status"] != "finished" or not parent.get("adapter_path"):
        raise UserError(
            f"--from-run: run '{from_run}' is {parent['status']}; DPO needs a finished SFT adapter"
        )
    if not Path(parent["adapter_path"]).is_dir():
        raise UserError(f"--from-run: the adapter of run '{from_run}' is gone: {parent['adapter_path']}")

    if previous is not None:
        run_id, curation_id = resume, previous["curation_id"]
    else:
        run_id = runs.new_run_id("dpo")
        dataset = train_cfg.dpo.dataset
        if dataset.kind != "dpo":
            raise UserError(
                f"{runs.recipe_name(recipe)}: train.dpo.dataset.kind: must be dpo, not {dataset.kind}"
            )
        curation_id = runs.ensure_curation(dataset, recipe, workspace, curation_id, show_progress)
    train_frame = runs.read_split(workspace, curation_id, "train")
    val_frame = runs.read_split(workspace, curation_id, "val")
    if train_frame.height == 0:
        raise UserError(f"curation {curation_id}: the train split is empty; nothing to train on")

    out_dir = runs.run_dir(workspace, run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = {
        "run_id": run_id,
        "kind": "dpo",
        "curation_id": curation_id,
        "parent_run_id": from_run,
        "base_model": parent["base_model"],
        "base_revision": parent.get("base_revision"),
        "recipe": recipe.raw,
        "git_sha": runs.git_sha(),
        "output_dir": str(out_dir),
        "started_at": None,
    }
    with runs.warehouse_run(db, run, resuming=previous is not None):
        return _train(
            recipe,
            workspace,
            run,
            Path(parent["adapter_path"]),
            train_frame,
            val_frame,
            previous,
            merge,
            show_progress,
        )


def _train(
    recipe: Recipe,
    workspace: Path,
    run: dict[str, Any],
    sft_adapter: Path,
    train_frame: Any,
    val_frame: Any,
    previous: dict[str, Any] | None,
    merge: bool,
    show_progress: bool,
) -> runs.RunResult:
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    from tunelab.recipe import warehouse_path
    from tunelab.train.model import load_base_model, load_tokenizer

    train_cfg = runs.require_train(recipe)
    settings = train_cfg.dpo
    assert settings is not None
    db = warehouse_path(workspace)
    out_dir = Path(run["output_dir"])
    try:
        base = load_base_model(run["base_model"], train_cfg)
        tokenizer = load_tokenizer(str(sft_adapter), train_cfg)
    except UserError as exc:
        raise UserError(f"{runs.recipe_name(recipe)}: {exc}") from None
    # a trainable PeftModel and no ref_model: trl copies the adapter into a frozen "ref" adapter, so the
    # reference is the SFT policy (passing a peft_config instead would make the bare base the reference)
    model = PeftModel.from_pretrained(base, str(sft_adapter), is_trainable=True)
    system_prompt = train_cfg.sft.system_prompt
    train_data = dpo_dataset(train_frame, tokenizer, system_prompt)
    has_eval = val_frame.height > 0
    eval_data = dpo_dataset(val_frame, tokenizer, system_prompt) if has_eval else None
    config = DPOConfig(
        **runs.common_training_args(train_cfg, settings, out_dir / "checkpoints", has_eval),
        beta=settings.beta,
        loss_type=[settings.loss_type],
    )
    resuming = previous is not None
    callback = runs.log_callback(db, run, show_progress, resuming)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    metrics = runs.train_from_checkpoint(trainer, callback, run["run_id"], out_dir, resuming, has_eval)
    return runs.complete_run(
        recipe,
        workspace,
        run,
        trainer,
        tokenizer,
        metrics,
        (train_frame, val_frame),
        merge,
        parent_run_id=run["parent_run_id"],
        sft_adapter=str(sft_adapter),
    )
