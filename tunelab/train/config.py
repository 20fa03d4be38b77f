"""Training settings under `train:` in a recipe (pydantic only: no torch import here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunelab.curate.config import CurateConfig
from tunelab.modeling.config import LoraSettings, ModelSettings
from tunelab.records.config import DatasetConfig

ReportTo = Literal["mlflow", "tensorboard", "wandb", "comet_ml", "trackio", "clearml", "dvclive"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainerSettings(Strict):
    """What SFT and DPO both set (trl's shared TrainingArguments); each adds its own fields below."""

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
    # experiment trackers besides the warehouse (passed to trl as is): mlflow, tensorboard, wandb, ...
    report_to: list[ReportTo] = Field(default_factory=list)
    # several GPUs under `accelerate launch`: a DeepSpeed config (a JSON file beside the recipe, or the
    # mapping itself) and/or FSDP ("full_shard auto_wrap" + fsdp_config), handed to trl as they are
    deepspeed: str | dict[str, Any] | None = None
    fsdp: str | None = None
    fsdp_config: str | dict[str, Any] | None = None


class SFTSettings(TrainerSettings):
    assistant_only_loss: bool = True
    # system message for rows without one: a text whose "{label}" is replaced by the row's label, or one text
    # per label ({egen: "...", teto: "..."}; a label not named gets no system turn) - persona steering
    system_prompt: str | dict[str, str] | None = None


class DPOSettings(TrainerSettings):
    # preference data
    dataset: DatasetConfig
    # how `dataset` is curated: its own curate block, or "inherit" (the recipe's top-level curate: block).
    # Unset, it inherits with a note on stderr: the top-level block was written for the SFT data (its
    # length limits, balance labels) and should not reach the preference data unnoticed.
    curate: CurateConfig | Literal["inherit"] | None = None
    beta: float = Field(0.1, gt=0)
    loss_type: str = "sigmoid"
    learning_rate: float = Field(5e-6, gt=0)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("curate", mode="before")
    @classmethod
    def _inherit_or_block(cls, value: object) -> object:
        if isinstance(value, str) and value != "inherit":
            raise ValueError("must be 'inherit' or a curate block (stages, length, balance, ...)")
        return value


class TrainConfig(ModelSettings):
    """The model settings (base model, quantization, dtype) plus the adapter and the two trainers."""

    lora: LoraSettings = Field(default_factory=LoraSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    dpo: DPOSettings | None = None
