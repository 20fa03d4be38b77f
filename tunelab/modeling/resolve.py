"""Turn "base" / "sft" / "dpo" / a run id / a path into a ready model for generation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.errors import UserError
from tunelab.modeling.config import ModelSettings
from tunelab.modeling.loading import (
    checkpointing_alias_ignored,
    load_base_model,
    load_tokenizer,
    quiet_libraries,
    resolve_base_model,
)
from tunelab.warehouse import store
from tunelab.workspace import Workspace

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_model(adapter_dir: Path) -> str:
    return json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def load_for_generation(
    model_ref: str, settings: ModelSettings, workspace: Workspace, datasets: dict[str, str]
) -> tuple[Any, Any, str | None]:
    """Model (eval mode), tokenizer (left padding) and run id for "base", "sft", "dpo", a run id, or a path.

    `datasets` names the dataset whose newest finished run "sft" and "dpo" mean ({"sft": ..., "dpo": ...}).
    """
    quiet_libraries()
    db = workspace.warehouse
    run_id: str | None = None
    adapter_dir: Path | None = None
    if model_ref == "base":
        base = resolve_base_model(settings, workspace)
    elif Path(model_ref).expanduser().exists():
        path = Path(model_ref).expanduser()
        if is_adapter_dir(path):
            adapter_dir, base = path, adapter_base_model(path)
        else:
            base = str(path)
    else:
        if model_ref in ("sft", "dpo"):
            dataset = datasets.get(model_ref, "")
            run_id = store.latest_finished_run(db, model_ref, dataset) if db.is_file() else None
            if run_id is None:
                raise UserError(
                    f"evaluate.models: no finished {model_ref} run for dataset '{dataset}' in {db}; "
                    f"run `tunelab train {model_ref}` first"
                )
        else:
            run_id = model_ref
        run = store.get_run(db, run_id) if db.is_file() else None
        if run is None:
            raise UserError(f"evaluate.models: '{model_ref}' is not 'base', 'sft', 'dpo', a run id or a path")
        if not run.get("adapter_path"):
            raise UserError(f"evaluate.models: run {run_id} has no adapter (status {run.get('status')})")
        adapter_dir, base = Path(run["adapter_path"]), run["base_model"]
    model = load_base_model(base, settings, for_training=False)
    tokenizer = load_tokenizer(str(adapter_dir) if adapter_dir else base, settings, padding_side="left")
    if adapter_dir is not None:
        from peft import PeftModel

        with checkpointing_alias_ignored():
            model = PeftModel.from_pretrained(model, str(adapter_dir))
        if settings.quantization == "none":
            # Generation only needs the sum W + BA: merged, each step is one matmul per projection instead of
            # three, with the same greedy tokens (benchmarks/merged_adapter_bench.py, SmolLM2-135M with r 16
            # on every projection, 16 prompts x 48 tokens on CPU: unmerged 1.25-1.5x merged's time, merged
            # = base's). A 4-bit base is left unmerged: folding BA into nf4 weights re-rounds them, and the
            # answers would no longer be the trained run's.
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer, run_id
