"""Batched generation for evaluation: each model answers every eval prompt, rendered as in training.

Prompts go through the model's own chat template (add_generation_prompt=True) with the training
system prompt (recipe.train.sft.system_prompt), via modeling.chat so evaluation and training agree.
Left padding so every row's new tokens start at the same position; greedy unless the recipe samples.

Multi-turn prompts (kind chat, dpo history) are answered turn by turn, as LogicKor's and MT-Bench's
two-turn questions are: each earlier assistant turn of the prompt is replaced by the model's own answer to
the user turns before it, then the final answer is generated and scored against the row's last assistant
turn. The stored prompt is the conversation the model actually saw, as "role: content" lines (RAFT rows:
the instruction, the documents as rendered and the question).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import polars as pl

from tunelab.errors import UserError
from tunelab.evaluate.config import EvaluateConfig, GenerationSettings
from tunelab.modeling.chat import (
    SystemPrompt,
    conversation_text,
    generation_prompt,
    has_chat_template,
    prompt_messages,
    render_for_generation,
    target_text,
)
from tunelab.modeling.resolve import load_for_generation
from tunelab.workspace import Workspace

if TYPE_CHECKING:
    from tunelab.recipe import Recipe

PREDICTION_COLUMNS = {
    "model": pl.Utf8,
    "run_id": pl.Utf8,
    "sample_id": pl.Utf8,
    "prompt": pl.Utf8,
    "reference": pl.Utf8,
    "prediction": pl.Utf8,
    "label": pl.Utf8,
    "latency_s": pl.Float64,
    "gen_params": pl.Utf8,
}


def generation_kwargs(settings: GenerationSettings, tokenizer: Any) -> dict[str, Any]:
    """transformers `generate` keyword arguments; sampling knobs only when sampling (else they warn)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "repetition_penalty": settings.repetition_penalty,
        "pad_token_id": tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else tokenizer.eos_token_id,
    }
    if settings.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = settings.no_repeat_ngram_size
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    else:
        # a model's generation_config may carry sampling defaults; greedy must not warn about them
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def trim_cut_character(text: str) -> str:
    """The answer without the U+FFFD a token limit leaves when it cuts a character mid-way.

    Byte-level BPE tokenizers (SmolLM2, Llama 3, Qwen) spend several tokens on one Hangul syllable or
    emoji; an answer stopped by max_new_tokens can end on the first bytes of one, which decode to U+FFFD.
    Only a trailing run is dropped: one inside the text is what the model generated."""
    return text.rstrip().rstrip("\ufffd").rstrip()


def gen_params_json(settings: GenerationSettings) -> str:
    return json.dumps(settings.model_dump(), sort_keys=True)


def render_prompts(
    rows: list[dict[str, Any]], kind: str, tokenizer: Any, system_prompt: SystemPrompt
) -> list[str]:
    return [generation_prompt(row, kind, tokenizer, system_prompt) for row in rows]


def multi_turn(kind: str, turns: list[dict[str, str]]) -> bool:
    """Whether a prompt is shown as a whole conversation (earlier answers are the model's own)."""
    return kind == "chat" or any(t["role"] == "assistant" for t in turns)


def generate_turn_by_turn(
    model: Any,
    tokenizer: Any,
    prompts: list[list[dict[str, str]]],
    settings: GenerationSettings,
    on_batch: Any = None,
) -> tuple[list[str], list[float], list[list[dict[str, str]]]]:
    """(final answers, per-row latency summed over its turns, the conversations as the model saw them).

    Round k answers the k-th earlier assistant turn of every row that has one (batched across rows), so a
    follow-up question is always asked after the model's own previous answer."""
    conversations = [[dict(t) for t in turns] for turns in prompts]
    slots = [[i for i, t in enumerate(c) if t["role"] == "assistant"] for c in conversations]
    latency = [0.0] * len(conversations)
    for k in range(max((len(s) for s in slots), default=0)):
        rows = [r for r, s in enumerate(slots) if len(s) > k]
        texts = [render_for_generation(conversations[r][: slots[r][k]], tokenizer) for r in rows]
        answers, seconds = generate_texts(model, tokenizer, texts, settings)
        for r, answer, spent in zip(rows, answers, seconds, strict=True):
            conversations[r][slots[r][k]] = {"role": "assistant", "content": answer}
            latency[r] += spent
    texts = [render_for_generation(c, tokenizer) for c in conversations]
    finals, seconds = generate_texts(model, tokenizer, texts, settings, on_batch)
    return finals, [a + b for a, b in zip(latency, seconds, strict=True)], conversations


def generate_texts(
    model: Any, tokenizer: Any, prompts: list[str], settings: GenerationSettings, on_batch: Any = None
) -> tuple[list[str], list[float]]:
    """Completions (new tokens only, special tokens stripped) and per-row latency (batch time / rows)."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = generation_kwargs(settings, tokenizer)
    # a chat template already writes BOS into the text (a second one would shift what the model saw in
    # training); plain prompts for template-less base models need the tokenizer's own special tokens
    add_special = not has_chat_template(tokenizer)
    torch.manual_seed(settings.seed)
    outputs: list[str] = []
    latencies: list[float] = []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), settings.batch_size):
        batch = prompts[start : start + settings.batch_size]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=add_special).to(
            device
        )
        began = time.perf_counter()
        with torch.no_grad():
            generated = model.generate(**encoded, **kwargs)
        elapsed = time.perf_counter() - began
        new_tokens = generated[:, encoded["input_ids"].shape[1] :]
        decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        outputs.extend(trim_cut_character(text.strip()) for text in decoded)
        latencies.extend([elapsed / len(batch)] * len(batch))
        if on_batch is not None:
            on_batch(len(batch))
    return outputs, latencies


def generate_predictions(
    model_ref: str,
    eval_rows: pl.DataFrame,
    kind: str,
    recipe: Recipe,
    workspace: Workspace,
    on_batch: Any = None,
) -> pl.DataFrame:
    """Load `model_ref` (base | sft | dpo | run id | path) and answer every eval row: PREDICTION_COLUMNS."""
    if recipe.train is None:
        raise UserError(f"{recipe.name}: train: required to load model '{model_ref}'")
    settings = (recipe.evaluate or EvaluateConfig()).generation
    system_prompt = recipe.train.sft.system_prompt
    model, tokenizer, run_id = load_for_generation(
        model_ref, recipe.train, workspace, trained_datasets(recipe)
    )
    rows = eval_rows.to_dicts()
    prompts = [prompt_messages(row, kind, system_prompt) for row in rows]
    predictions, latencies, seen = generate_turn_by_turn(model, tokenizer, prompts, settings, on_batch)
    # multi-turn rows: the prompt as this model saw it (its own earlier answers); else the row's prompt
    shown = [
        conversation_text(turns) if multi_turn(kind, turns) or kind == "raft" else text
        for turns, text in zip(seen, eval_rows["prompt_text"].to_list(), strict=True)
    ]
    params = gen_params_json(settings)
    return pl.DataFrame(
        {
            "model": [model_ref] * len(rows),
            "run_id": [run_id] * len(rows),
            "sample_id": eval_rows["sample_id"].to_list(),
            "prompt": shown,
            "reference": eval_rows["reference"].to_list(),
            "prediction": predictions,
            "label": eval_rows["label"].to_list(),
            "latency_s": latencies,
            "gen_params": [params] * len(rows),
        },
        schema=PREDICTION_COLUMNS,
    )


def trained_datasets(recipe: Recipe) -> dict[str, str]:
    """Which dataset "sft" and "dpo" in evaluate.models refer to: the newest run trained on it."""
    datasets = {"sft": recipe.dataset.name, "dpo": recipe.dataset.name}
    if recipe.train is not None and recipe.train.dpo is not None:
        datasets["dpo"] = recipe.train.dpo.dataset.name
    return datasets


def eval_rows_from_frame(frame: pl.DataFrame, kind: str, source: str) -> pl.DataFrame:
    """Canonical rows -> the columns generation needs plus `prompt` and `reference` text."""
    if frame.height == 0:
        raise UserError(f"{source}: the eval set has no rows")
    if kind == "dpo":
        reference = frame["chosen"].fill_null("")
    elif kind in ("sft", "raft", "chat"):
        # chat: the last assistant turn (empty when the conversation ends with the user's question)
        reference = pl.Series([target_text(row, kind) for row in frame.to_dicts()], dtype=pl.Utf8)
    else:
        raise UserError(
            f"{source}: kind: evaluation needs prompts and references (sft, chat, raft or dpo), not {kind}"
        )
    if kind == "chat" or "history" in frame.columns:
        texts = []
        flats = frame["prompt"].to_list() if "prompt" in frame.columns else [None] * frame.height
        for row, flat in zip(frame.to_dicts(), flats, strict=True):
            turns = prompt_messages(row, kind)
            texts.append(conversation_text(turns) if multi_turn(kind, turns) else flat or "")
        prompt = pl.Series("prompt_text", texts, dtype=pl.Utf8)
    elif kind == "raft":
        # what the model saw: the instruction, every document and the question, not the question alone
        texts = [conversation_text(prompt_messages(row, kind)) for row in frame.to_dicts()]
        prompt = pl.Series("prompt_text", texts, dtype=pl.Utf8)
    else:
        prompt = frame["prompt"].fill_null("").alias("prompt_text")
    label = (
        frame["label"].cast(pl.Utf8)
        if "label" in frame.columns
        else pl.Series("label", [None] * frame.height, pl.Utf8)
    )
    return frame.with_columns(reference.alias("reference"), prompt, label.alias("label"))
