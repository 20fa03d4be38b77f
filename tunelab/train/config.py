"""Training settings under `train:` in a recipe (pydantic only: no torch import here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bias: Literal["none", "all", "lora_only"] = "none"


class SFTSettings(Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=8)
    optim: str = "auto"  # auto: paged_adamw_8bit on GPU, adamw_torch on CPU
    eval_steps: int | None = None
    save_steps: int = Field(200, ge=1)
    logging_steps: int = Field(10, ge=1)
    seed: int = 42
    assistant_only_loss: bool = True
    # system message for rows without one; "{label}" is replaced by the row's label (persona steering)
    system_prompt: str | None = None


class DPOSettings(Strict):
    # preference data, curated with the recipe's curate stages that apply to kind dpo
    dataset: "DatasetConfig"  # noqa: UP037
    beta: float = Field(0.1, gt=0)
    loss_type: str = "sigmoid"
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(5e-6, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=8)
    optim: str = "auto"
    save_steps: int = Field(200, ge=1)
    logging_steps: int = Field(10, ge=1)
    seed: int = 42


class TrainConfig(Strict):
    # a hub name / local path, or "tunelab-tiny": a tiny Llama built offline on the recipe's data (demo, tests)
    base_model: str
    revision: str | None = None
    trust_remote_code: bool = False
    quantization: Literal["nf4", "none"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    dpo: DPOSettings | None = None


from tunelab.records_config import DatasetConfig  # noqa: E402

DPOSettings.model_rebuild()
TrainConfig.model_rebuild()
