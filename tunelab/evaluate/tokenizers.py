"""Korean-aware tokenizers for ROUGE (rouge-score's default keeps only [a-z0-9] and scores Korean 0).

Each tokenizer has rouge-score's interface (`tokenize(text) -> list[str]`) so it can be handed to
`rouge_scorer.RougeScorer(..., tokenizer=obj)`, plus `tokenize_many(texts)` for the batch path.
All three lowercase and drop punctuation-only tokens, as rouge-score's default does for English:
- kiwi: kiwipiepy morphemes (`서울의` -> `서울`, `의`); one Kiwi instance per process (loading takes ~3 s).
- whitespace: split on whitespace, punctuation stripped from both ends of each token.
- char: every alphanumeric character (spaces and punctuation dropped).
`auto` is resolved per evaluation, not per text, so one corpus never mixes tokenizations:
kiwi when any text contains Hangul, else whitespace.
"""

from __future__ import annotations

import os
import re
import string
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib.metadata import version
from typing import Any, Protocol

ROUGE_TOKENIZERS = ("kiwi", "whitespace", "char")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff]")
_PUNCT = string.punctuation + "“”‘’«»…·、。，！？「」『』（）［］｛｝《》〈〉"


class RougeTokenizer(Protocol):
    name: str

    def tokenize(self, text: str) -> list[str]: ...

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]: ...

    def signature(self) -> str: ...


def has_hangul(text: str) -> bool:
    return _HANGUL.search(text) is not None


def resolve_tokenizer_name(name: str, texts: Iterable[str]) -> str:
    """`auto` -> kiwi if any text has Hangul, else whitespace; anything unknown is refused.

    There is deliberately no way to reach rouge-score's default tokenizer from here.
    """
    if name == "auto":
        return "kiwi" if any(has_hangul(text) for text in texts) else "whitespace"
    if name not in ROUGE_TOKENIZERS:
        raise ValueError(f"rouge tokenizer must be one of auto, {', '.join(ROUGE_TOKENIZERS)}; got {name!r}")
    return name


def _has_word_character(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


class WhitespaceTokenizer:
    name = "whitespace"

    def tokenize(self, text: str) -> list[str]:
        tokens = (piece.strip(_PUNCT) for piece in text.lower().split())
        return [token for token in tokens if token and _has_word_character(token)]

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.tokenize(text) for text in texts]

    def signature(self) -> str:
        return "tok:whitespace-lower"


class CharTokenizer:
    name = "char"

    def tokenize(self, text: str) -> list[str]:
        return [ch for ch in text.lower() if ch.isalnum()]

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.tokenize(text) for text in texts]

    def signature(self) -> str:
        return "tok:char-lower"


def kiwi_threads() -> int:
    """TUNELAB_KIWI_THREADS: Kiwi worker threads (-1 = all cores, the default; 0 = the calling thread only)."""
    return int(os.environ.get("TUNELAB_KIWI_THREADS", "-1"))


@lru_cache(maxsize=1)
def kiwi_instance() -> Any:
    """The process's one Kiwi (loading its model takes ~3 s)."""
    from kiwipiepy import Kiwi

    with warnings.catch_warnings():  # kiwipiepy warns that 0's meaning changed in 0.21; we mean today's
        warnings.simplefilter("ignore", DeprecationWarning)
        return Kiwi(num_workers=kiwi_threads())


class KiwiTokenizer:
    name = "kiwi"

    def _forms(self, tokens: Iterable[Any]) -> list[str]:
        return [token.form.lower() for token in tokens if _has_word_character(token.form)]

    def tokenize(self, text: str) -> list[str]:
        return self._forms(kiwi_instance().tokenize(text)) if text.strip() else []

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        # Kiwi's iterable form analyses the batch on its worker threads: ~2x the per-text calls here.
        if kiwi_threads() == 0:  # Kiwi's batch form needs worker threads
            return [self.tokenize(text) for text in texts]
        non_empty = [i for i, text in enumerate(texts) if text.strip()]
        out: list[list[str]] = [[] for _ in texts]
        analysed = kiwi_instance().tokenize([texts[i] for i in non_empty])
        for i, tokens in zip(non_empty, analysed, strict=True):
            out[i] = self._forms(tokens)
        return out

    def signature(self) -> str:
        return f"tok:kiwi-{version('kiwipiepy')}-morph-lower"


def rouge_tokenizer(name: str) -> RougeTokenizer:
    """A tokenizer by resolved name (kiwi | whitespace | char); resolve `auto` first."""
    if name == "kiwi":
        return KiwiTokenizer()
    if name == "whitespace":
        return WhitespaceTokenizer()
    if name == "char":
        return CharTokenizer()
    raise ValueError(f"rouge tokenizer must be one of {', '.join(ROUGE_TOKENIZERS)}; got {name!r}")
