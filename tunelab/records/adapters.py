"""Format adapters: one source record (alpaca, chat messages, dpo, hh-rlhf, raft, text, or a field map)
to the canonical fields of its kind. A field absent from the result was missing in the source."""

from __future__ import annotations

from typing import Any

from tunelab.records.config import Kind
from tunelab.records.fields import CANONICAL_FIELDS, MultiTurn, fits


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


# role names seen in the wild -> the three roles chat templates know; unknown names are kept (lowercased)
# for the schema stage to report as invalid_role:<i>, never guessed
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",  # OpenAssistant
    "usr": "user",
    "assistant": "assistant",
    "gpt": "assistant",  # ShareGPT
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "bot": "assistant",
    "model": "assistant",  # Gemini
    "ai": "assistant",
}
CONVERSATION_KEYS = ("messages", "conversations", "conversation")


def _turn_text(value: Any) -> Any:
    """A turn's content: a string, or OpenAI content parts that are all text (joined); else as given."""
    if value is None:
        return ""  # a null turn is an empty turn: the schema stage names it (empty_turn:<i>)
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value
        )
    ):
        return "\n".join(p["text"] for p in value)
    return value


def conversation(value: Any) -> Any:
    """OpenAI `messages` ({role, content}) or ShareGPT `conversations` ({from, value}) turns as
    [{role, content}], every turn in order; a value that is not a list of turns is returned as is (it
    fits no field, and the schema stage reports its type)."""
    if not isinstance(value, list) or not all(isinstance(turn, dict) for turn in value):
        return value
    turns = []
    for turn in value:
        role = next((turn[k] for k in ("role", "from", "speaker") if k in turn), None)
        content = _turn_text(next((turn[k] for k in ("content", "value", "text") if k in turn), None))
        if not isinstance(content, str):
            return value
        name = role.strip().lower() if isinstance(role, str) else ""
        turns.append({"role": ROLE_ALIASES.get(name, name), "content": content})
    return turns


def _record_conversation(record: dict[str, Any]) -> Any:
    """The conversation of a record (first conversation key), with a top-level `system` put first
    when the conversation has none (some ShareGPT exports keep it beside the turns)."""
    value = next((record[k] for k in CONVERSATION_KEYS if k in record), None)
    turns = conversation(value)
    system = record.get("system")
    if fits("messages", turns) and isinstance(system, str) and system.strip():
        if not any(t["role"] == "system" for t in turns):
            turns = [{"role": "system", "content": system}, *turns]
    return turns


def _sft_from_conversation(record: dict[str, Any]) -> dict[str, Any]:
    """A conversation read as a flat sft record: only when it is one exchange ([system] user assistant).
    Anything longer would lose turns, so it becomes a MultiTurn value the schema stage drops naming
    kind chat (a trailing user turn, a second system message, two user turns in a row included)."""
    turns = _record_conversation(record)
    if not fits("messages", turns):
        return {"prompt": turns} if turns is not None else {}
    roles = [t["role"] for t in turns]
    out: dict[str, Any] = {}
    rest = turns
    if roles[:1] == ["system"]:
        out["system"], rest = turns[0]["content"], turns[1:]
    rest_roles = [t["role"] for t in rest]
    if rest_roles not in ([], ["user"], ["assistant"], ["user", "assistant"]):
        return {"prompt": MultiTurn(tuple(roles))}
    for turn in rest:
        out["prompt" if turn["role"] == "user" else "response"] = turn["content"]
    return out


def _chat(record: dict[str, Any]) -> dict[str, Any]:
    """kind chat: the record's conversation; a flat record (prompt/response, alpaca) is a one-turn one."""
    if any(k in record for k in CONVERSATION_KEYS):
        return {"messages": _record_conversation(record)}
    flat = _alpaca(record) if "instruction" in record else _by_alias(record, _SFT_ALIASES)
    return {"messages": flat_conversation(flat)} if "prompt" in flat or "response" in flat else {}


def flat_conversation(flat: dict[str, Any]) -> Any:
    """[system] user assistant from flat fields; a missing or non-string field leaves the value as a
    dict so it fits no field (wrong_type:messages names it)."""
    turns = []
    if isinstance(flat.get("system"), str) and flat["system"].strip():
        turns.append({"role": "system", "content": flat["system"]})
    for field, role in (("prompt", "user"), ("response", "assistant")):
        if not isinstance(flat.get(field), str):
            return flat
        turns.append({"role": role, "content": flat[field]})
    return turns


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
    "golden": ("golden", "oracle_context", "golden_document"),
}
# RAFT's answer marker: the text after the last one is the answer (`<ANSWER>: 서울`)
ANSWER_MARKER = "<ANSWER>:"


def release_documents(value: Any) -> Any:
    """A RAFT / HotpotQA context object as a list of documents; any other value as given.

    RAFT releases (gorilla raft.py, the HF RAFT datasets) write `{"title": [[t, t, ...]], "sentences":
    [[doc, doc, ...]]}`: one inner list holding every document. HotpotQA writes one title per document and
    one list of sentences per document: `{"title": [t1, t2], "sentences": [[s, s], [s]]}`."""
    if not isinstance(value, dict) or "sentences" not in value:
        return value
    sentences, titles = value.get("sentences"), value.get("title", value.get("titles"))
    if not isinstance(sentences, list) or not all(isinstance(s, list) for s in sentences):
        return value
    if not all(isinstance(x, str) for s in sentences for x in s):
        return value
    flat_titles = isinstance(titles, list) and all(isinstance(t, str) for t in titles)
    if flat_titles and len(titles) == len(sentences):  # HotpotQA: a document per inner list
        return [" ".join(s) for s in sentences]
    return [doc for s in sentences for doc in s]  # RAFT: every inner item is a document


def _raft(record: dict[str, Any]) -> dict[str, Any]:
    """RAFT rows, incl. the release format: `{sentences, title}` contexts, `cot_answer` (its `<ANSWER>:`
    tail is the answer when the row has no separate answer), `oracle_context` (the golden document), and
    an `instruction` that is the whole rendered prompt (documents and question again: dropped, since
    tunelab renders the prompt from context and question itself)."""
    out = _by_alias(record, _RAFT_ALIASES)
    if "context" in out:
        out["context"] = release_documents(out["context"])
    cot = out.get("cot")
    if "answer" not in out and isinstance(cot, str) and ANSWER_MARKER in cot:
        out["answer"] = cot.rsplit(ANSWER_MARKER, 1)[1].strip()
    instruction = out.get("instruction")
    if isinstance(instruction, str) and "<DOCUMENT>" in instruction and "context" in out:
        del out["instruction"]
    return out


def _by_alias(record: dict[str, Any], aliases: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    out = {}
    for canonical, names in aliases.items():
        for name in names:
            if name in record:
                out[canonical] = record[name]
                break
    return out


def _last_assistant(value: Any) -> Any:
    """chosen/rejected as trl's conversational format gives them ([assistant] or a whole conversation
    ending with the assistant's answer): the answer; a string as is."""
    turns = conversation(value)
    if fits("messages", turns) and turns and turns[-1]["role"] == "assistant":
        return turns[-1]["content"]
    return value


def _prompt_and_history(value: Any) -> dict[str, Any]:
    """A conversational prompt (ending with a user turn) -> prompt text + the turns before it."""
    turns = conversation(value)
    if not fits("messages", turns) or not turns or turns[-1]["role"] != "user":
        return {"prompt": value}
    return {"prompt": turns[-1]["content"], "history": turns[:-1] or None}


def _implicit_prompt(chosen: Any, rejected: Any) -> dict[str, Any] | None:
    """trl's implicit-prompt format: chosen and rejected are whole conversations sharing every turn
    but the final assistant answer; the shared turns are the prompt (history + final user turn)."""
    c, r = conversation(chosen), conversation(rejected)
    if not (fits("messages", c) and fits("messages", r)) or len(c) < 2 or len(r) < 2:
        return None
    shared = 0
    while shared < min(len(c), len(r)) and c[shared] == r[shared]:
        shared += 1
    if shared != len(c) - 1 or shared != len(r) - 1 or c[-1]["role"] != "assistant":
        return None
    if r[-1]["role"] != "assistant" or c[shared - 1]["role"] != "user":
        return None
    prompt = _prompt_and_history(c[:shared])
    return {**prompt, "chosen": c[-1]["content"], "rejected": r[-1]["content"]}


def _dpo(record: dict[str, Any]) -> dict[str, Any]:
    if "prompt" not in record and "chosen" in record:
        if isinstance(record.get("chosen"), list):
            implicit = _implicit_prompt(record.get("chosen"), record.get("rejected"))
            if implicit is not None:
                return _with_system(implicit, record.get("system"))
            return {k: record[k] for k in ("chosen", "rejected") if k in record}
        return _hh_rlhf(record)
    out: dict[str, Any] = {}
    if "prompt" in record:
        out.update(
            _prompt_and_history(record["prompt"])
            if isinstance(record["prompt"], list)
            else {"prompt": record["prompt"]}
        )
    for key in ("chosen", "rejected"):
        if key in record:
            out[key] = _last_assistant(record[key])
    return _with_system(out, record.get("system"))


def _with_system(out: dict[str, Any], system: Any) -> dict[str, Any]:
    """A preference record's `system` becomes the first history turn (dpo has no system column)."""
    history = out.get("history") or []
    if isinstance(system, str) and system.strip() and not any(t["role"] == "system" for t in history):
        out["history"] = [{"role": "system", "content": system}, *history]
    return out


def _auto(record: dict[str, Any], kind: Kind) -> dict[str, Any]:
    if kind == "sft":
        if any(k in record for k in CONVERSATION_KEYS):
            return _sft_from_conversation(record)
        if "instruction" in record:
            return _alpaca(record)
        return _by_alias(record, _SFT_ALIASES)
    if kind == "chat":
        return _chat(record)
    if kind == "dpo":
        return _dpo(record)
    if kind == "raft":
        return _raft(record)
    for name in ("text", "content", "document"):
        if name in record:
            return {"text": record[name]}
    return {}


def adapt(record: dict[str, Any], kind: Kind, fields: dict[str, str]) -> dict[str, Any]:
    """Canonical fields of one record; a field absent from the result was missing in the source.

    A field map names where some canonical fields come from; the kind's adapter fills the rest. The
    mapped columns are renamed to their canonical names before the adapter runs (so a mapped message
    list or preference pair is read like a native one) and kept out of its guesses for other fields;
    a mapped field whose column a record lacks stays missing rather than guessed.
    """
    if not fields:
        return _auto(record, kind)
    used = set(fields.values())
    renamed = {k: v for k, v in record.items() if k not in used}
    for canonical, source in fields.items():
        if source in record:
            renamed[canonical] = record[source]
    out = _auto(renamed, kind)
    if kind in ("sft", "raft", "text"):
        # flat kinds: a mapped field is taken as is, over any alias the adapter preferred
        for canonical, source in fields.items():
            if source in record and canonical in CANONICAL_FIELDS[kind]:
                out[canonical] = record[source]
    if kind == "sft" and "instruction" in fields and "prompt" not in fields:
        out.update(_alpaca({"instruction": renamed.get("instruction"), "input": renamed.get("input")}))
    for canonical, source in fields.items():
        if source not in record:
            out.pop(canonical, None)
    return out
