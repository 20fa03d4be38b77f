"""Exact match and token F1 for RAG answers (SQuAD's metrics), Korean-aware.

The answer is read out of RAFT's chain-of-thought format first, for the prediction and the reference
alike: the text after the last `<ANSWER>:` (a text without the marker is its own answer). Then it is
normalised as SQuAD's `normalize_answer` does (lowercase, punctuation and the articles a/an/the removed,
whitespace collapsed), except that text with Hangul is split into kiwipiepy morphemes and particles
(josa, POS tags J*), endings (E*) and the copula (VCP) are dropped: "서울이", "서울입니다." and "서울"
are the same answer, where SQuAD's whitespace tokens would score them 0. English and numbers inside
Korean text are kiwi's SL/SN tokens and are kept.

Per pair: exact_match is 1.0 when the normalised token sequences are equal, else 0.0; token_f1 is the F1
of the multiset of tokens (both empty: 1.0; one empty: 0.0), as in the SQuAD v1.1 evaluation script.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version

from tunelab.evaluate.tokenizers import has_hangul, kiwi_instance

ANSWER_MARKER = "<ANSWER>:"  # as modeling.chat writes it (evaluate keeps its own copy: text, not code)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | set("“”‘’«»…·、。，！？「」『』（）［］｛｝《》〈〉")
# kiwi tags dropped from Korean answers: particles, endings, the copula, and punctuation/symbol tags
_DROPPED_TAGS = ("J", "E", "VCP", "SF", "SP", "SS", "SE", "SO", "SW", "SB", "Z", "W_")


def parse_answer(text: str | None) -> str:
    """The answer part of a RAFT-style text: after the last `<ANSWER>:`, else the whole text."""
    text = text or ""
    if ANSWER_MARKER in text:
        text = text.rsplit(ANSWER_MARKER, 1)[1]
    return text.strip()


def _squad_tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return _ARTICLES.sub(" ", text).split()


def _keep(tag: str) -> bool:
    return not tag.startswith(_DROPPED_TAGS)


def answer_tokens_many(texts: Sequence[str]) -> list[list[str]]:
    """The normalised tokens of each (already parsed) answer."""
    out: list[list[str]] = []
    hangul = [i for i, text in enumerate(texts) if has_hangul(text)]
    analysed = {}
    if hangul:
        kiwi = kiwi_instance()
        normal = [unicodedata.normalize("NFC", texts[i]) for i in hangul]
        for i, tokens in zip(hangul, (kiwi.tokenize(text) for text in normal), strict=True):
            forms = [t.form for t in tokens if _keep(t.tag)]
            analysed[i] = [tok for form in forms for tok in _squad_tokens(form)]
    for i, text in enumerate(texts):
        out.append(analysed[i] if i in analysed else _squad_tokens(unicodedata.normalize("NFC", text)))
    return out


def exact_match(reference: list[str], prediction: list[str]) -> float:
    return float(reference == prediction)


def token_f1(reference: list[str], prediction: list[str]) -> float:
    if not reference or not prediction:
        return float(reference == prediction)
    common = sum((Counter(reference) & Counter(prediction)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def answer_signature() -> str:
    return f"answer:after-last-<ANSWER>:|squad-normalize|hangul:kiwi-{version('kiwipiepy')}-no-josa-endings"


def answer_scores(references: Sequence[str], predictions: Sequence[str]) -> tuple[list[float], list[float]]:
    """(exact_match, token_f1) per pair, each text's answer parsed and normalised (distinct texts once)."""
    parsed_refs = [parse_answer(t) for t in references]
    parsed_preds = [parse_answer(t) for t in predictions]
    distinct = list(dict.fromkeys([*parsed_refs, *parsed_preds]))
    tokens = dict(zip(distinct, answer_tokens_many(distinct), strict=True))
    em = [exact_match(tokens[r], tokens[p]) for r, p in zip(parsed_refs, parsed_preds, strict=True)]
    f1 = [token_f1(tokens[r], tokens[p]) for r, p in zip(parsed_refs, parsed_preds, strict=True)]
    return em, f1
