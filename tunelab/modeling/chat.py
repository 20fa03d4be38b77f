"""Curated rows → trl dataset rows, rendered later by the tokenizer's own chat template.

Every kind is a conversation here (`conversation`): a chat row is its turns, a flat sft / raft row is a
one-turn conversation ([system] user assistant), a dpo row is its history + prompt. One rendering path.
Three shapes, chosen by what the template supports:
- `messages` + assistant_only_loss when the template marks assistant turns with `{% generation %}`
  (every assistant turn of the conversation is learned, nothing else);
- conversational `prompt`/`completion` otherwise (trl masks the prompt itself): one example per
  assistant turn, the conversation before it as the prompt, so earlier answers are learned too;
- plain-text `prompt`/`completion` for tokenizers without a chat template, split the same way.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from typing import Any

GENERATION_MARKER = "{% generation %}"
# the recipe's train.sft.system_prompt: one text ("{label}" replaced by the row's label), or one text per label
SystemPrompt = str | Mapping[str, str] | None


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


# RAFT's answer marker (the text after it is the answer): evaluation parses answers at it
ANSWER_MARKER = "<ANSWER>:"


def raft_answer(row: dict[str, Any]) -> str:
    """The target: the chain of thought ending in `<ANSWER>: answer` (RAFT's format, so evaluation can
    read the answer back out of a prediction); a cot that already ends so (RAFT's cot_answer) as it is;
    without a cot, the answer alone."""
    cot, answer = _text(row.get("cot")).strip(), _text(row.get("answer"))
    if not cot:
        return answer
    if ANSWER_MARKER in cot:
        return cot
    return f"{cot}\n\n{ANSWER_MARKER} {answer}"


def _turns(value: Any) -> list[dict[str, str]]:
    return [{"role": _text(t.get("role")), "content": _text(t.get("content"))} for t in value or []]


def system_text(system_prompt: SystemPrompt, label: Any) -> str | None:
    """The system message for a row of this label: a mapping picks the label's own text (None for a label it
    does not name: no system turn); a string has "{label}" replaced by the label."""
    if isinstance(system_prompt, Mapping):
        return system_prompt.get(_text(label)) or None
    return system_prompt.replace("{label}", _text(label)) if system_prompt else None


def _with_system(
    turns: list[dict[str, str]], row: dict[str, Any], system_prompt: SystemPrompt
) -> list[dict[str, str]]:
    """The recipe's system prompt first when the row has none; "{label}" in it, or one text per label, lets
    one model be steered per persona/category."""
    system = system_text(system_prompt, row.get("label"))
    if system and not any(t["role"] == "system" for t in turns):
        return [{"role": "system", "content": system}, *turns]
    return turns


def conversation(row: dict[str, Any], kind: str, system_prompt: SystemPrompt = None) -> list[dict[str, str]]:
    """The whole conversation of a row, the answer to learn included: chat rows as they are, a flat row
    as a one-turn conversation, a dpo row as history + prompt + chosen."""
    if kind == "chat":
        turns = _turns(row.get("messages"))
    elif kind == "dpo":
        turns = [
            *_turns(row.get("history")),
            {"role": "user", "content": _text(row.get("prompt"))},
            {"role": "assistant", "content": _text(row.get("chosen"))},
        ]
    else:
        system = row.get("instruction") if kind == "raft" else row.get("system")
        user = raft_user_message(row) if kind == "raft" else _text(row.get("prompt"))
        turns = [{"role": "system", "content": _text(system)}] if system else []
        turns += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": target_text(row, kind)},
        ]
    return _with_system(turns, row, system_prompt)


def split_at_last_answer(turns: list[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    """(the conversation before the last assistant turn, that turn's text); no assistant turn: (all, "")."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        return turns, ""
    return turns[:last], turns[last]["content"]


def prompt_messages(
    row: dict[str, Any], kind: str, system_prompt: SystemPrompt = None
) -> list[dict[str, str]]:
    """The conversation up to (not including) the assistant's final answer."""
    return split_at_last_answer(conversation(row, kind, system_prompt))[0]


def target_text(row: dict[str, Any], kind: str) -> str:
    if kind == "raft":
        return raft_answer(row)
    if kind == "chat":
        return split_at_last_answer(_turns(row.get("messages")))[1]
    if kind == "dpo":
        return _text(row.get("chosen"))
    return _text(row.get("response"))


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """Prompt text for tokenizers without a chat template (base models)."""
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def sft_examples(
    row: dict[str, Any], kind: str, tokenizer: Any, system_prompt: SystemPrompt = None
) -> list[dict[str, Any]]:
    """The trl examples that teach every assistant turn of the row's conversation: one `messages`
    example when the template marks assistant turns, else one prompt/completion example per turn."""
    turns = conversation(row, kind, system_prompt)
    if has_generation_markers(tokenizer):
        return [{"messages": turns}]
    answers = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
    examples = []
    for i in answers:
        prompt, answer = turns[:i], turns[i]["content"]
        if has_chat_template(tokenizer):
            examples.append({"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]})
        else:
            examples.append(
                {"prompt": plain_prompt(prompt), "completion": answer + (tokenizer.eos_token or "")}
            )
    return examples


def sft_example(
    row: dict[str, Any], kind: str, tokenizer: Any, system_prompt: SystemPrompt = None
) -> dict[str, Any]:
    """One example holding the whole row (the longest sequence training sees: length measurement)."""
    examples = sft_examples(row, kind, tokenizer, system_prompt)
    if examples:
        return examples[-1]
    turns = conversation(row, kind, system_prompt)  # no assistant turn: nothing to learn, all prompt
    if has_chat_template(tokenizer):
        return {"prompt": turns, "completion": [{"role": "assistant", "content": ""}]}
    return {"prompt": plain_prompt(turns), "completion": tokenizer.eos_token or ""}


def dpo_example(row: dict[str, Any], tokenizer: Any, system_prompt: SystemPrompt = None) -> dict[str, Any]:
    """trl's conversational preference format (prompt = history + final user turn), or plain text."""
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


def render_for_generation(turns: list[dict[str, str]], tokenizer: Any) -> str:
    """The text a model continues to answer after `turns`, rendered the same way as in training."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return plain_prompt(turns)


def generation_prompt(
    row: dict[str, Any], kind: str, tokenizer: Any, system_prompt: SystemPrompt = None
) -> str:
    """The text a model is asked to continue at evaluation time: the conversation before its final
    answer (earlier assistant turns as the row gives them; evaluation replaces them turn by turn)."""
    return render_for_generation(prompt_messages(row, kind, system_prompt), tokenizer)


def conversation_text(turns: list[dict[str, str]]) -> str:
    """A conversation as "role: content" lines (prediction files, reports)."""
    return "\n".join(f"{t['role']}: {t['content']}" for t in turns)
