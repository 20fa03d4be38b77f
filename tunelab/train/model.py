"""Base model + tokenizer loading (4-bit nf4 or plain), the LoRA config, and device-dependent trainer args.

Also `load_for_generation`, which evaluation uses to turn "base" / "sft" / "dpo" / a run id / a path into a
ready model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import UserError
from tunelab.train.config import TrainConfig

if TYPE_CHECKING:
    from tunelab.recipe import Recipe

TINY_MODEL = "tunelab-tiny"
ADAPTER_CONFIG = "adapter_config.json"


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def tiny_model_dir(workspace: Path) -> Path:
    return Path(workspace) / "models" / TINY_MODEL


def resolve_base_model(train_cfg: TrainConfig, workspace: Path, texts: list[str] | None = None) -> str:
    """The path or hub name to load; "tunelab-tiny" is built (once per workspace) from `texts`."""
    if train_cfg.base_model != TINY_MODEL:
        return train_cfg.base_model
    out_dir = tiny_model_dir(workspace)
    if not (out_dir / "tunelab_tiny.json").is_file():
        if not texts:
            raise UserError(
                f"train.base_model: {TINY_MODEL} is not built yet in {out_dir}; run `tunelab train sft` first"
            )
        from tunelab.train.tiny import build_tiny_model

        build_tiny_model(out_dir, texts)
    return str(out_dir)


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _load_error(what: str, name: str, exc: BaseException) -> UserError:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return UserError(f"train.base_model: cannot load {what} '{name}': {first}")


def load_tokenizer(name: str, train_cfg: TrainConfig, padding_side: str = "right") -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, revision=train_cfg.revision, trust_remote_code=train_cfg.trust_remote_code
        )
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error("tokenizer", name, exc) from None
    if tokenizer.pad_token is None:
        # many instruct models ship without a pad token; padding is masked out, so EOS is a safe stand-in
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_base_model(name: str, train_cfg: TrainConfig, for_training: bool = True) -> Any:
    """The base causal LM: 4-bit nf4 (double quant, compute dtype from the recipe) or plain weights.

    For training a 4-bit model goes through `prepare_model_for_kbit_training` (fp32 norms, input grads).
    """
    from transformers import AutoModelForCausalLM

    gpu = has_gpu()
    compute = torch_dtype(train_cfg.compute_dtype)
    kwargs: dict[str, Any] = {
        "revision": train_cfg.revision,
        "trust_remote_code": train_cfg.trust_remote_code,
    }
    if train_cfg.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=train_cfg.double_quant,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["dtype"] = compute
        kwargs["device_map"] = {"": 0} if gpu else {"": "cpu"}
    else:
        # CPU kernels for bf16 are slow and trainer mixed precision is off there: keep fp32 weights on CPU
        kwargs["dtype"] = compute if gpu else torch_dtype("float32")
        if gpu:
            kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error("model", name, exc) from None
    if train_cfg.quantization == "nf4" and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gpu)
    return model


def load_model_and_tokenizer(name: str, train_cfg: TrainConfig, for_training: bool = True) -> tuple[Any, Any]:
    tokenizer = load_tokenizer(name, train_cfg)
    return load_base_model(name, train_cfg, for_training=for_training), tokenizer


def lora_config(train_cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    lora = train_cfg.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias=lora.bias,
        task_type="CAUSAL_LM",
    )


def device_training_args(train_cfg: TrainConfig, optim: str) -> dict[str, Any]:
    """TrainingArguments that depend on the hardware: mixed precision, optimiser, checkpointing."""
    if not has_gpu():
        # bf16 must be switched off explicitly with use_cpu (trl/transformers keep it on otherwise), and the
        # paged/8-bit optimisers are CUDA-only
        cpu_optim = "adamw_torch" if optim == "auto" or "8bit" in optim or "paged" in optim else optim
        return {
            "use_cpu": True,
            "bf16": False,
            "fp16": False,
            "optim": cpu_optim,
            "activation_checkpointing": False,
        }
    return {
        "bf16": train_cfg.compute_dtype == "bfloat16",
        "fp16": train_cfg.compute_dtype == "float16",
        "optim": "paged_adamw_8bit" if optim == "auto" else optim,
        "activation_checkpointing": True,
        "activation_checkpointing_kwargs": {"use_reentrant": False},
    }


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_model(adapter_dir: Path) -> str:
    return json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def latest_finished_run(db: Path, kind: str, dataset_name: str) -> str | None:
    """The newest finished run of `kind` trained on a curation of `dataset_name`."""
    from tunelab.warehouse import store

    rows = store.query(
        db,
        "select r.run_id from runs r join curations c on c.curation_id = r.curation_id "
        "where r.kind = ? and r.status = 'finished' and c.dataset = ? order by r.started_at desc limit 1",
        [kind, dataset_name],
    )
    return rows["run_id"][0] if rows.height else None


def load_for_generation(model_ref: str, recipe: Recipe, workspace: Path) -> tuple[Any, Any, str | None]:
    """Model (eval mode), tokenizer (left padding) and run id for "base", "sft", "dpo", a run id, or a path."""
    from tunelab.recipe import warehouse_path

    if recipe.train is None:
        raise UserError(f"{_recipe_name(recipe)}: train: required to load model '{model_ref}'")
    train_cfg = recipe.train
    db = warehouse_path(workspace)
    run_id: str | None = None
    adapter_dir: Path | None = None
    if model_ref == "base":
        base = resolve_base_model(train_cfg, workspace)
    elif Path(model_ref).expanduser().exists():
        path = Path(model_ref).expanduser()
        if is_adapter_dir(path):
            adapter_dir, base = path, adapter_base_model(path)
        else:
            base = str(path)
    else:
        from tunelab.warehouse import store

        if model_ref in ("sft", "dpo"):
            dataset = recipe.dataset.name
            if model_ref == "dpo" and train_cfg.dpo is not None:
                dataset = train_cfg.dpo.dataset.name
            run_id = latest_finished_run(db, model_ref, dataset) if db.is_file() else None
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
    model = load_base_model(base, train_cfg, for_training=False)
    tokenizer = load_tokenizer(str(adapter_dir) if adapter_dir else base, train_cfg, padding_side="left")
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return model, tokenizer, run_id


def _recipe_name(recipe: Recipe) -> str:
    return recipe.source_path.name if recipe.source_path else "recipe.yaml"
