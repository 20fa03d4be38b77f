"""The canonical columns of each kind of record: what adapters produce, stages judge and training renders.

One place for the kinds, so adding one (its fields, which are required, what dedup compares, how a value is
checked) touches this file and the adapter that fills it.

Conversations are first-class: a `messages` field is a list of {role, content} turns (roles system, user,
assistant), kept whole and in order (kind chat; dpo keeps the turns before its final prompt in `history`).
A flat sft record is a one-turn conversation: modeling.chat.conversation renders both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from tunelab.records.config import Kind

CANONICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("system", "prompt", "response"),
    "chat": ("messages",),
    # history: the turns before the final user prompt (trl's multi-turn conversational preference data)
    "dpo": ("history", "prompt", "chosen", "rejected"),
    # golden: the document the answer comes from (RAFT's oracle_context); split groups rows by it and
    # decontamination compares it, also when the row's context leaves it out (RAFT's share 1 - p)
    "raft": ("instruction", "context", "question", "answer", "cot", "golden"),
    "text": ("text",),
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt", "response"),
    "chat": ("messages",),
    "dpo": ("prompt", "chosen", "rejected"),
    "raft": ("context", "question", "answer"),
    "text": ("text",),
}
# what each kind deduplicates on: two rows are the same sample when these agree
CONTENT_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt", "response"),
    "chat": ("messages",),  # the whole conversation, every turn with its role
    "dpo": ("history", "prompt", "chosen", "rejected"),
    "raft": ("question", "answer"),
    "text": ("text",),
}
LIST_FIELDS = {"context"}  # list of strings
MESSAGE_FIELDS = {"messages", "history"}  # list of {role, content}
ROLES = ("system", "user", "assistant")
MESSAGE_DTYPE = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def frame_schema(kind: Kind) -> dict[str, pl.DataType]:
    schema: dict[str, Any] = {
        "sample_id": pl.String,
        "dataset": pl.String,
        "source_row": pl.Int64,
        "source_line": pl.Int64,
        "label": pl.String,
        "field_types": pl.String,
    }
    for field in CANONICAL_FIELDS[kind]:
        schema[field] = dtype_of(field)
    return schema


def dtype_of(field: str) -> pl.DataType:
    if field in MESSAGE_FIELDS:
        return MESSAGE_DTYPE
    return pl.List(pl.String) if field in LIST_FIELDS else pl.String()


def field_text(field: str) -> pl.Expr:
    """One string per row for any canonical field (null stays null): lists joined by newlines,
    conversations as "role: content" lines in turn order. Length statistics and dedup read this."""
    col = pl.col(field)
    if field in MESSAGE_FIELDS:
        turn = pl.concat_str(
            [pl.element().struct.field("role"), pl.element().struct.field("content")], separator=": "
        )
        return col.list.eval(turn).list.join("\n").alias(field)
    if field in LIST_FIELDS:
        return col.list.join("\n").alias(field)
    return col


def user_turns_text(field: str = "messages") -> pl.Expr:
    """The user turns of a conversation column, as a list of strings (decontamination compares these)."""
    element = pl.element()
    users = element.filter(element.struct.field("role") == "user").struct.field("content")
    return pl.col(field).list.eval(users).alias(field)


def content_text(kind: str, separator: str = "\n") -> pl.Expr:
    """The text that identifies a sample for deduplication (sft: prompt + response, chat: every turn, ...)."""
    parts = [field_text(field) for field in CONTENT_FIELDS[kind]]
    return pl.concat_str([p.fill_null("") for p in parts], separator=separator).alias("content")


@dataclass(frozen=True)
class MultiTurn:
    """A conversation given to the flat kind sft that is not one exchange ([system] user assistant):
    cutting it would lose turns silently, so it reaches the schema stage as this value, which fits no
    field and is dropped as multi_turn naming kind chat."""

    roles: tuple[str, ...]


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, MultiTurn):
        return f"conversation[{','.join(value.roles)}]"
    if is_messages(value):
        return "messages"
    return type(value).__name__


def is_messages(value: Any) -> bool:
    """A list of {role: str, content: str} turns (the adapter has mapped role names and content parts);
    an empty list fits, and the schema stage calls it empty."""
    return isinstance(value, list) and all(
        isinstance(turn, dict)
        and set(turn) == {"role", "content"}
        and isinstance(turn["role"], str)
        and isinstance(turn["content"], str)
        for turn in value
    )


def fits(field: str, value: Any) -> bool:
    if field in MESSAGE_FIELDS:
        return is_messages(value)
    if field in LIST_FIELDS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)
