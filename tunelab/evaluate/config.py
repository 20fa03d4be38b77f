"""Evaluation settings under `evaluate:` in a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelab.records.config import DatasetConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationSettings(Strict):
    max_new_tokens: int = Field(128, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    seed: int = 0


class EvaluateConfig(Strict):
    # None: the val split of the latest curation of the recipe's dataset
    eval_set: DatasetConfig | None = None
    # each: "base", "sft", "dpo" (latest run of that kind for this recipe), a run id, or an adapter/model path
    models: list[str] = Field(default_factory=lambda: ["base", "sft", "dpo"])
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    metrics: list[Literal["rouge", "bleu", "chrf", "cosine", "label_acc", "korean_answer_rate"]] = Field(
        default_factory=lambda: ["rouge", "bleu", "chrf", "cosine", "label_acc", "korean_answer_rate"]
    )
    rouge_tokenizer: Literal["auto", "kiwi", "whitespace", "char"] = "auto"
    embedding_model: str = "e5-small"
    label_field: str = "label"
