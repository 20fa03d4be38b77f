"""Format adapters: one source record (alpaca, chat messages, dpo, hh-rlhf, raft, text, or a field map)
to the canonical fields of its kind. A field absent from the result was missing in the source."""

from __future__ import annotations

from typing import Any

from tunelab.records.config import Kind


def _final_assistant_split(transcript: str) -> tuple[str, str] | None:
    marker = "\n\nAssistant:"
    at = transcript.rfind(marker)
    if at < 0:
        return None
    return transcript[: at + len(marker)], transcript[at + len(marker) :].strip()


def _hh_rlhf(record: dict[str, Any]) -> dict[str, Any]:
    """hh-rlhf gives two full transcripts; the shared part up to the last `Assistant:` is the prompt."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    out: dict[str, Any] = {"chosen": chosen, "rejected": rejected}
    if isinstance(chosen, str) and isinstance(rejected, str):
        split_c, split_r = _final_assistant_split(chosen), _final_assistant_split(rejected)
        if split_c and split_r and split_c[0] == split_r[0]:
            out = {"prompt": split_c[0].strip(), "chosen": split_c[1], "rejected": split_r[1]}
        elif split_c and split_r:
            # transcripts that diverge before the final turn: the common prefix is still the context
            common = _common_prefix(split_c[0], split_r[0])
            out = {
                "prompt": common.strip(),
                "chosen": chosen[len(common) :].strip(),
                "rejected": rejected[len(common) :].strip(),
            }
    return out


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _messages(record: dict[str, Any]) -> dict[str, Any]:
    messages = record.get("messages") or record.get("conversations")
    out: dict[str, Any] = {}
    if not isinstance(messages, list):
        return {"prompt": messages} if messages is not None else out
    turns = [m for m in messages if isinstance(m, dict)]
    role = lambda m: str(m.get("role", m.get("from", ""))).lower()  # noqa: E731
    text = lambda m: m.get("content", m.get("value"))  # noqa: E731
    systems = [text(m) for m in turns if role(m) == "system"]
    if systems:
        out["system"] = systems[0]
    last_assistant = max(
        (i for i, m in enumerate(turns) if role(m) in ("assistant", "gpt", "bot")), default=None
    )
    if last_assistant is not None:
        out["response"] = text(turns[last_assistant])
        users = [m for m in turns[:last_assistant] if role(m) in ("user", "human")]
        if users:
            out["prompt"] = text(users[-1])
    else:
        users = [m for m in turns if role(m) in ("user", "human")]
        if users:
            out["prompt"] = text(users[-1])
    return out


def _alpaca(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "instruction" in record:
        instruction, extra = record["instruction"], record.get("input")
        if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
            out["prompt"] = f"{instruction}\n\n{extra}"
        else:
            out["prompt"] = instruction
    if "output" in record:
        out["response"] = record["output"]
    if "system" in record:
        out["system"] = record["system"]
    return out


_SFT_ALIASES = {
    "prompt": ("prompt", "question", "query", "Q", "input"),
    "response": ("response", "completion", "answer", "A", "output"),
    "system": ("system",),
}
_RAFT_ALIASES = {
    "instruction": ("instruction",),
    "context": ("context", "contexts", "documents", "CONTEXTS"),
    "question": ("question", "QUESTION"),
    "answer": ("answer", "final_decision"),
    "cot": ("cot", "cot_answer", "LONG_ANSWER"),
}


def _by_alias(record: dict[str, Any], aliases: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    out = {}
    for canonical, names in aliases.items():
        for name in names:
            if name in record:
                out[canonical] = record[name]
                break
    return out


def adapt(record: dict[str, Any], kind: Kind, fields: dict[str, str]) -> dict[str, Any]:
    """Canonical fields of one record; a field absent from the result was missing in the source."""
    if fields:
        out = {canonical: record[source] for canonical, source in fields.items() if source in record}
        if kind == "sft" and "instruction" in fields and "prompt" not in fields:
            out.update(
                _alpaca(
                    {
                        "instruction": record.get(fields["instruction"]),
                        "input": record.get(fields.get("input", "input")),
                    }
                )
            )
            out.pop("instruction", None)
        return out
    if kind == "sft":
        if "messages" in record or "conversations" in record:
            return _messages(record)
        if "instruction" in record:
            return _alpaca(record)
        return _by_alias(record, _SFT_ALIASES)
    if kind == "dpo":
        if "prompt" not in record and "chosen" in record:
            return _hh_rlhf(record)
        out = {k: record[k] for k in ("prompt", "chosen", "rejected", "system") if k in record}
        for key in ("chosen", "rejected"):  # trl's conversational preference format
            value = out.get(key)
            if isinstance(value, list) and value and isinstance(value[-1], dict):
                out[key] = value[-1].get("content")
        return out
    if kind == "raft":
        return _by_alias(record, _RAFT_ALIASES)
    for name in ("text", "content", "document"):
        if name in record:
            return {"text": record[name]}
    return {}
