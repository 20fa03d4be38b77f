"""Curated rows → trl dataset rows, rendered later by the tokenizer's own chat template.

Three shapes, chosen by what the template supports:
- `messages` + assistant_only_loss when the template marks assistant turns with `{% generation %}`;
- conversational `prompt`/`completion` otherwise (trl masks the prompt itself);
- plain-text `prompt`/`completion` for tokenizers without a chat template.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

GENERATION_MARKER = "{% generation %}"


def has_generation_markers(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and GENERATION_MARKER in template


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def raft_user_message(row: dict[str, Any]) -> str:
    """RAFT: golden + distractor documents, shuffled per sample (seeded by sample_id), then the question."""
    documents = [_text(d) for d in (row.get("context") or [])]
    # the golden document is first in the source; a stable per-row shuffle stops the model from learning
    # "the answer is in document 1" while keeping runs reproducible
    seed = zlib.crc32(_text(row.get("sample_id")).encode("utf-8"))
    random.Random(seed).shuffle(documents)
    blocks = "\n".join(f"<DOCUMENT>{doc}</DOCUMENT>" for doc in documents)
    return f"{blocks}\n\n{_text(row.get('question'))}" if blocks else _text(row.get("question"))


def raft_answer(row: dict[str, Any]) -> str:
    cot, answer = _text(row.get("cot")).strip(), _text(row.get("answer"))
    return f"{cot}\n\n{answer}" if cot else answer


def prompt_messages(row: dict[str, Any], kind: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The conversation up to (not including) the assistant's answer."""
    if kind == "raft":
        system, user = row.get("instruction"), raft_user_message(row)
    else:
        system, user = row.get("system"), _text(row.get("prompt"))
    if not system and system_prompt:
        # "{label}" in the recipe's system prompt lets one model be steered per persona/category
        system = system_prompt.replace("{label}", _text(row.get("label")))
    messages = [{"role": "system", "content": _text(system)}] if system else []
    return [*messages, {"role": "user", "content": user}]


def target_text(row: dict[str, Any], kind: str) -> str:
    return raft_answer(row) if kind == "raft" else _text(row.get("response"))


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """Prompt text for tokenizers without a chat template (base models)."""
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def sft_example(
    row: dict[str, Any], kind: str, tokenizer: Any, system_prompt: str | None = None
) -> dict[str, Any]:
    prompt = prompt_messages(row, kind, system_prompt)
    answer = target_text(row, kind)
    if has_generation_markers(tokenizer):
        return {"messages": [*prompt, {"role": "assistant", "content": answer}]}
    if has_chat_template(tokenizer):
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}
    return {"prompt": plain_prompt(prompt), "completion": answer + (tokenizer.eos_token or "")}


def dpo_example(row: dict[str, Any], tokenizer: Any, system_prompt: str | None = None) -> dict[str, Any]:
    prompt = prompt_messages(row, "dpo", system_prompt)
    chosen, rejected = _text(row.get("chosen")), _text(row.get("rejected"))
    if has_chat_template(tokenizer):
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    eos = tokenizer.eos_token or ""
    return {"prompt": plain_prompt(prompt), "chosen": chosen + eos, "rejected": rejected + eos}


def generation_prompt(
    row: dict[str, Any], kind: str, tokenizer: Any, system_prompt: str | None = None
) -> str:
    """The text a model is asked to continue at evaluation time, rendered the same way as in training."""
    messages = prompt_messages(row, kind, system_prompt)
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return plain_prompt(messages)
