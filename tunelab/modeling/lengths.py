"""Token lengths of rows rendered exactly as the trainer will see them, against `max_length`.

trl truncates every tokenized sequence to `max_length` (keep_start: the end is cut) and then drops, without
a word, the rows left with no response token (SFT: no unmasked label; DPO: the prompt alone fills
max_length); when every row goes, training dies later with `num_samples=0`. This module measures the same
thing before the trainer is built, so a run can say how many rows are cut and which are dropped.

The examples measured are the trainer's own dataset rows (what `sft_dataset` / `dpo_dataset` build), and
they are tokenized the way trl 1.16 tokenizes them (`trl.data_utils`: the chat template for message lists,
the plain tokenizer for text; the response starts where the prompt's and the full sequence's token ids
part). No other train module is imported here: curation's audit measures with it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# the reason a row is not trained on, in the run card
NO_RESPONSE_REASON = "no_response_token_within_max_length"


@dataclass
class Measured:
    """Per example: the full token length (DPO: the longer of chosen and rejected) and the index of its
    first response token (the first token with a loss)."""

    lengths: np.ndarray
    response_starts: np.ndarray

    def truncated(self, max_length: int) -> np.ndarray:
        return self.lengths > max_length

    def no_response(self, max_length: int) -> np.ndarray:
        """Rows whose every response token lies at or beyond max_length (cut away by keep_start)."""
        return self.response_starts >= max_length


def token_stats(lengths: np.ndarray) -> dict[str, float]:
    """mean / p50 / p95 / max of a length array (characters or tokens); zeros when empty."""
    if lengths.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "mean": round(float(lengths.mean()), 2),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": float(lengths.max()),
    }


def _ids(tokenizer: Any, value: str | list[dict[str, Any]], **kwargs: Any) -> dict[str, list[int]]:
    # trl's own tokenize step (chat template for a message list, the plain tokenizer for text), so the ids
    # are the ones the trainer gets
    from trl.data_utils import _tokenize

    return _tokenize(tokenizer, value, **kwargs)


def _first_true(mask: list[int], default: int) -> int:
    for index, bit in enumerate(mask):
        if bit:
            return index
    return default


def _sft(example: dict[str, Any], tokenizer: Any, masks: bool) -> tuple[int, int]:
    from trl.data_utils import common_prefix_length, is_conversational

    if "messages" in example:
        messages = example["messages"]
        if masks:  # the template marks assistant turns: the loss is on exactly those tokens
            out = _ids(tokenizer, messages, return_assistant_tokens_mask=True)
            ids = out["input_ids"]
            return len(ids), _first_true(out["assistant_masks"], len(ids))
        ids = _ids(tokenizer, messages)["input_ids"]
        first = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), len(messages))
        prompt = _ids(tokenizer, messages[:first], add_generation_prompt=True)["input_ids"] if first else []
        return len(ids), common_prefix_length(prompt, ids)
    if is_conversational(example):
        prompt = _ids(tokenizer, example["prompt"], add_generation_prompt=True)["input_ids"]
        ids = _ids(tokenizer, example["prompt"] + example["completion"])["input_ids"]
    else:
        completion = example["completion"]
        eos = tokenizer.eos_token or ""
        if eos and not completion.endswith(eos):
            completion += eos  # trl adds EOS to a plain completion that lacks it
        prompt = _ids(tokenizer, example["prompt"])["input_ids"]
        ids = _ids(tokenizer, example["prompt"] + completion)["input_ids"]
    return len(ids), common_prefix_length(prompt, ids)


def _dpo(example: dict[str, Any], tokenizer: Any) -> tuple[int, int]:
    from trl.data_utils import common_prefix_length, is_conversational

    prompt, chosen, rejected = example["prompt"], example["chosen"], example["rejected"]
    if is_conversational(example):
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)["input_ids"]
    else:
        eos = tokenizer.eos_token or ""
        chosen = chosen if chosen.endswith(eos) else chosen + eos
        rejected = rejected if rejected.endswith(eos) else rejected + eos
        prompt_ids = _ids(tokenizer, prompt)["input_ids"]
    chosen_ids = _ids(tokenizer, prompt + chosen)["input_ids"]
    rejected_ids = _ids(tokenizer, prompt + rejected)["input_ids"]
    # as DPOTrainer: the prompt ends where it parts from either completion; each sequence is prompt + rest
    start = min(common_prefix_length(prompt_ids, chosen_ids), common_prefix_length(prompt_ids, rejected_ids))
    return max(len(chosen_ids), len(rejected_ids)), start


def measure(examples: Iterable[dict[str, Any]], tokenizer: Any) -> Measured:
    """Token length and first response token of each trainer example (SFT or DPO rows, by their keys)."""
    from tunelab.modeling.chat import has_generation_markers

    masks = has_generation_markers(tokenizer)
    lengths: list[int] = []
    starts: list[int] = []
    for example in examples:
        length, start = _dpo(example, tokenizer) if "chosen" in example else _sft(example, tokenizer, masks)
        lengths.append(length)
        starts.append(start)
    return Measured(np.array(lengths, dtype=np.int64), np.array(starts, dtype=np.int64))


@dataclass
class LengthCheck:
    """What measuring one split against max_length found: counts for the card, the ids dropped."""

    split: str
    max_length: int
    rows: int
    truncated: int
    dropped_ids: list[str] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return len(self.dropped_ids)

    def as_dict(self, ids: int = 100) -> dict[str, Any]:
        """For the run card: the counts, the token stats, and the first `ids` dropped sample ids."""
        return {
            "split": self.split,
            "max_length": self.max_length,
            "rows": self.rows,
            "truncated": self.truncated,
            "dropped_no_response": self.dropped,
            "dropped_reason": NO_RESPONSE_REASON,
            "dropped_ids": self.dropped_ids[:ids],
            "tokens": self.tokens,
        }


def check(split: str, measured: Measured, sample_ids: list[str], max_length: int) -> LengthCheck:
    no_response = measured.no_response(max_length)
    return LengthCheck(
        split=split,
        max_length=max_length,
        rows=int(measured.lengths.size),
        truncated=int(measured.truncated(max_length).sum()),
        dropped_ids=[sid for sid, gone in zip(sample_ids, no_response.tolist(), strict=True) if gone],
        tokens=token_stats(measured.lengths),
    )
