"""Evaluation settings under `evaluate:` in a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunelab.records.config import DatasetConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationSettings(Strict):
    max_new_tokens: int = Field(128, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0)
    # n > 0: no n-gram of tokens appears twice in an answer (transformers' no_repeat_ngram_size); 0: off
    no_repeat_ngram_size: int = Field(0, ge=0)
    batch_size: int = Field(8, ge=1)
    seed: int = 0


class JudgeSettings(Strict):
    """`evaluate.judge`: an LLM judge over any OpenAI-compatible /v1/chat/completions server."""

    # http://127.0.0.1:8000/v1 (vLLM, transformers serve), http://localhost:11434/v1 (Ollama),
    # https://api.openai.com/v1 (hosted; the key from api_key_env)
    endpoint: str
    model: str = Field(min_length=1)  # the name the server knows the judge by
    mode: Literal["pairwise", "rubric"] = "pairwise"
    # a shipped template (rubric.ko, pairwise.ko, rubric.en, pairwise.en) or a file; unset: <mode>.<language>
    rubric: str | None = None
    language: Literal["ko", "en"] = "ko"
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(1024, ge=1, le=65536)
    max_concurrency: int = Field(4, ge=1, le=256)
    timeout_s: float = Field(120.0, gt=0, le=3600)  # per request
    max_retries: int = Field(4, ge=0, le=20)  # on connection errors, timeouts, 429 and 5xx, with backoff
    api_key_env: str | None = None  # the environment variable holding the API key (never the key itself)

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value


class EvaluateConfig(Strict):
    # None: the val split of the latest curation of the recipe's dataset
    eval_set: DatasetConfig | None = None
    # each: "base", "sft", "dpo" (latest run of that kind for this recipe), a run id, or an adapter/model path
    models: list[str] = Field(default_factory=lambda: ["base", "sft", "dpo"])
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # exact_match / token_f1: RAG answers (the `<ANSWER>:` part, Korean particles dropped); unset, a raft
    # eval set gets them besides the default metrics
    # judge: the LLM judge of `judge:` below (added to the defaults when a judge block is given)
    metrics: list[
        Literal[
            "rouge",
            "bleu",
            "chrf",
            "cosine",
            "label_acc",
            "exact_match",
            "token_f1",
            "judge",
            "korean_answer_rate",
        ]
    ] = Field(default_factory=lambda: ["rouge", "bleu", "chrf", "cosine", "label_acc", "korean_answer_rate"])
    rouge_tokenizer: Literal["auto", "kiwi", "whitespace", "char"] = "auto"
    embedding_model: str = "e5-small"
    label_field: str = "label"
    judge: JudgeSettings | None = None

    @model_validator(mode="after")
    def _judge_needs_a_judge(self) -> EvaluateConfig:
        if "judge" in self.metrics and self.judge is None:
            raise ValueError("metrics: judge needs an evaluate.judge block (at least endpoint and model)")
        return self
