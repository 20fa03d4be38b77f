"""ROUGE / BLEU / chrF / cosine with the tokenizer and signature stored next to every value.

Input is one frame of pairs (model, sample_id, reference, prediction); output is long frames:
per sample `model, sample_id, metric, value, signature` and per corpus `model, metric, value, signature`.

The batch path reuses rouge-score's and sacrebleu's own scoring functions but tokenizes each distinct
text once (references repeat across models): ROUGE n-gram counters and LCS come from
`rouge_scorer._create_ngrams/_score_ngrams/_score_lcs`, BLEU/chrF segment statistics from sacrebleu's
`_extract_corpus_statistics`, so the numbers are the libraries' numbers (tests compare with their APIs).
Scales: ROUGE and cosine in [0, 1]; BLEU and chrF in [0, 100] as sacrebleu reports them; exact_match and
token_f1 (RAG answers, evaluate/answers.py) in [0, 1].
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.curate.language import languages_of
from tunelab.embeddings.loader import embed_cached, load_embedder
from tunelab.evaluate.answers import answer_scores, answer_signature
from tunelab.evaluate.tokenizers import has_hangul, resolve_tokenizer_name, rouge_tokenizer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
SCORE_SCHEMA = {
    "model": pl.Utf8,
    "sample_id": pl.Utf8,
    "metric": pl.Utf8,
    "value": pl.Float64,
    "signature": pl.Utf8,
}
METRIC_SCHEMA = {"model": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64, "signature": pl.Utf8}


class EmptyTokenizationWarning(UserWarning):
    """A non-empty text produced no tokens: its ROUGE is 0 for a reason unrelated to the model."""


def _unique(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _warn_empty_tokens(
    field: str, texts: Sequence[str], sample_ids: Sequence[str], tokens: dict[str, list[str]], tok: str
) -> None:
    bad = [sid for sid, text in zip(sample_ids, texts, strict=True) if text.strip() and not tokens[text]]
    if bad:
        shown = ", ".join(dict.fromkeys(bad[:5]))
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        warnings.warn(
            f"rouge tokenizer {tok}: non-empty {field} produced no tokens in sample {shown}{more}; "
            "its ROUGE is 0 because of tokenization, not the model",
            EmptyTokenizationWarning,
            stacklevel=3,
        )


def tokenize_distinct(texts: Sequence[str], tokenizer_name: str) -> dict[str, list[str]]:
    """text -> tokens, each distinct text tokenized once (references repeat across models)."""
    distinct = _unique(texts)
    return dict(zip(distinct, rouge_tokenizer(tokenizer_name).tokenize_many(distinct), strict=True))


def rouge_signature(tokenizer_name: str) -> str:
    return f"rouge-score {version('rouge-score')}|{rouge_tokenizer(tokenizer_name).signature()}|stem:no"


def rouge_pairs(
    references: Sequence[str],
    predictions: Sequence[str],
    tokenizer: str,
    sample_ids: Sequence[str] | None = None,
    tokens: dict[str, list[str]] | None = None,
) -> tuple[str, dict[str, list[tuple[float, float, float]]]]:
    """ROUGE-1/2/L (precision, recall, F1) per pair; returns (resolved tokenizer, {type: [(p, r, f)]}).

    `tokenizer` is auto | kiwi | whitespace | char: rouge-score's default tokenizer (which scores
    Korean 0) cannot be selected. `tokens` (text -> tokens from that tokenizer) skips tokenizing again.
    """
    from rouge_score.rouge_scorer import _score_lcs, _score_ngrams

    name = resolve_tokenizer_name(tokenizer, [*references, *predictions])
    if tokens is None:
        tokens = tokenize_distinct([*references, *predictions], name)
    ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(len(references))]
    _warn_empty_tokens("reference", references, ids, tokens, name)
    _warn_empty_tokens("prediction", predictions, ids, tokens, name)

    @cache
    def ngrams(text: str, n: int) -> Counter:
        # rouge-score's _create_ngrams counts in a Python loop and was the top entry in the benchmark's
        # profile (~1 s of 4 s for 10k pairs); Counter over zip builds the identical Counter in C.
        words = tokens[text]
        return Counter(zip(*(words[i:] for i in range(n)), strict=False))  # shifted copies differ in length

    out: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in ROUGE_TYPES}
    for ref, pred in zip(references, predictions, strict=True):
        for kind, n in (("rouge1", 1), ("rouge2", 2)):
            score = _score_ngrams(ngrams(ref, n), ngrams(pred, n))
            out[kind].append((score.precision, score.recall, score.fmeasure))
        score = _score_lcs(tokens[ref], tokens[pred])
        out["rougeL"].append((score.precision, score.recall, score.fmeasure))
    return name, out


def bleu_tokenizer_for(texts: Sequence[str]) -> str:
    return "ko-mecab" if any(has_hangul(text) for text in texts) else "13a"


@cache
def _sacrebleu_metric(kind: str, tokenize: str | None = None, effective_order: bool = False) -> Any:
    """One metric object (hence one MeCab tagger) per process: pymecab-ko has been reported to fail
    after ~15.8k taggers/calls in one process, and building a tagger per call is slow anyway."""
    from sacrebleu.metrics import BLEU, CHRF

    if kind == "bleu":
        return BLEU(tokenize=tokenize, effective_order=effective_order)
    return CHRF()


def bleu_chrf_pairs(
    references: Sequence[str], predictions: Sequence[str], tokenize: str | None = None
) -> dict[str, Any]:
    """Sentence BLEU (effective order) and chrF per pair, corpus BLEU and chrF, with signatures.

    Equal to `BLEU(tokenize=t, effective_order=True).sentence_score`, `BLEU(tokenize=t).corpus_score`,
    `CHRF().sentence_score/corpus_score`; each text is tokenized once for both BLEU values.
    `tokenize` (ko-mecab | 13a) defaults to ko-mecab when any text has Hangul.
    """
    refs, preds = list(references), list(predictions)
    tokenize = tokenize or bleu_tokenizer_for([*refs, *preds])
    sentence_bleu = _sacrebleu_metric("bleu", tokenize, True)
    corpus_bleu = _sacrebleu_metric("bleu", tokenize, False)
    chrf = _sacrebleu_metric("chrf")
    bleu_stats = sentence_bleu._extract_corpus_statistics(preds, [refs])
    chrf_stats = chrf._extract_corpus_statistics(preds, [refs])
    # the corpus object never saw the references, so it learns their count from the one that did
    corpus_bleu.num_refs = sentence_bleu.num_refs
    return {
        "bleu": [sentence_bleu._aggregate_and_compute([stat]).score for stat in bleu_stats],
        "chrf": [chrf._aggregate_and_compute([stat]).score for stat in chrf_stats],
        "bleu_corpus": corpus_bleu._aggregate_and_compute(bleu_stats).score if bleu_stats else 0.0,
        "chrf_corpus": chrf._aggregate_and_compute(chrf_stats).score if chrf_stats else 0.0,
        "bleu_signature": f"sacrebleu.BLEU|sentence|{sentence_bleu.get_signature()}",
        "bleu_corpus_signature": f"sacrebleu.BLEU|corpus|{corpus_bleu.get_signature()}",
        "chrf_signature": f"sacrebleu.CHRF|{chrf.get_signature()}",
    }


@cache
def embedder_for(name: str) -> Any:
    """One loaded embedding model per name per process (e5-small takes seconds to build)."""
    return load_embedder(name)


def cosine_pairs(
    references: Sequence[str],
    predictions: Sequence[str],
    embedding_model: str,
    cache_dir: Path | None,
    show_progress: bool = False,
) -> list[float]:
    """Cosine of L2-normalised embeddings (tunelab.embeddings; vectors cached by content hash)."""
    import numpy as np

    distinct = _unique([*references, *predictions])
    if not distinct:
        return []
    vectors = embed_cached(embedder_for(embedding_model), distinct, cache_dir, show_progress=show_progress)
    row = {text: i for i, text in enumerate(distinct)}
    ref_v = vectors[[row[t] for t in references]]
    pred_v = vectors[[row[t] for t in predictions]]
    return np.einsum("ij,ij->i", ref_v, pred_v).astype(np.float64).tolist()


def score_pairs(
    pairs: pl.DataFrame,
    metrics: Sequence[str] = ("rouge", "bleu", "chrf", "cosine"),
    rouge_tokenizer_name: str = "auto",
    embedding_model: str = "e5-small",
    cache_dir: Path | None = None,
    show_progress: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score a frame (model, sample_id, reference, prediction) -> (per-sample scores, corpus metrics).

    `auto` tokenizers are resolved over the whole frame (every model), so all models in one evaluation
    share one tokenization and the same file re-scored resolves the same way.
    """
    pairs = pairs.with_columns(pl.col("reference", "prediction").fill_null(""))
    # an empty or degenerate answer scores 0 on every metric: it is scored as the empty answer it is
    flags = [degenerate_reason(text) is not None for text in pairs["prediction"].to_list()]
    pairs = pairs.with_columns(
        pl.when(pl.Series(flags)).then(pl.lit("")).otherwise(pl.col("prediction")).alias("prediction"),
        pl.Series(DEGENERATE_METRIC, flags, dtype=pl.Float64),
    )
    all_texts = [*pairs["reference"].to_list(), *pairs["prediction"].to_list()]
    rouge_name = resolve_tokenizer_name(rouge_tokenizer_name, all_texts)
    shared = {
        "rouge_name": rouge_name,
        "rouge_tokens": tokenize_distinct(all_texts, rouge_name) if "rouge" in metrics else None,
        "bleu_tokenize": bleu_tokenizer_for(all_texts),
        "embedding_model": embedding_model,
        "cache_dir": cache_dir,
        "show_progress": show_progress,
    }
    score_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    for (model,), group in pairs.group_by("model", maintain_order=True):
        score_rows.extend(
            {"model": model, "sample_id": sid, "metric": DEGENERATE_METRIC, "value": flag,
             "signature": "empty|special_tokens_only|repeated_token"}
            for sid, flag in zip(group["sample_id"], group[DEGENERATE_METRIC], strict=True)
        )  # fmt: skip
        metric_rows.append({"model": model, "metric": DEGENERATE_METRIC, "value": float(group[DEGENERATE_METRIC].mean()),
                            "signature": "share of empty|special_tokens_only|repeated_token answers"})  # fmt: skip
        rows = _score_one_model(
            group["reference"].to_list(),
            group["prediction"].to_list(),
            group["sample_id"].to_list(),
            metrics,
            **shared,
        )
        for metric, values, signature, corpus in rows:
            if values is not None:
                score_rows.extend(
                    {
                        "model": model,
                        "sample_id": sid,
                        "metric": metric,
                        "value": float(v),
                        "signature": signature,
                    }
                    for sid, v in zip(group["sample_id"], values, strict=True)
                )
            metric_rows.append(
                {"model": model, "metric": metric, "value": float(corpus), "signature": signature}
            )
    return pl.DataFrame(score_rows, schema=SCORE_SCHEMA), pl.DataFrame(metric_rows, schema=METRIC_SCHEMA)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _score_one_model(
    refs: list[str],
    preds: list[str],
    ids: list[str],
    metrics: Sequence[str],
    rouge_name: str,
    rouge_tokens: dict[str, list[str]] | None,
    bleu_tokenize: str,
    embedding_model: str,
    cache_dir: Path | None,
    show_progress: bool,
) -> list[tuple[str, list[float] | None, str, float]]:
    """(metric, per-sample values or None for corpus-only metrics, signature, corpus value) rows."""
    rows: list[tuple[str, list[float] | None, str, float]] = []
    if "rouge" in metrics:
        _, rouge = rouge_pairs(refs, preds, rouge_name, ids, rouge_tokens)
        signature = rouge_signature(rouge_name)
        for kind in ROUGE_TYPES:
            for part, index in (("f1", 2), ("precision", 0), ("recall", 1)):
                values = [float(score[index]) for score in rouge[kind]]
                name = kind if part == "f1" else f"{kind}_{part}"
                rows.append((name, values, f"{signature}|{kind}|{part}", _mean(values)))
    if "bleu" in metrics or "chrf" in metrics:
        sb = bleu_chrf_pairs(refs, preds, bleu_tokenize)
        if "bleu" in metrics:
            rows.append(("bleu", sb["bleu"], sb["bleu_signature"], _mean(sb["bleu"])))
            rows.append(("bleu_corpus", None, sb["bleu_corpus_signature"], sb["bleu_corpus"]))
        if "chrf" in metrics:
            rows.append(("chrf", sb["chrf"], sb["chrf_signature"], _mean(sb["chrf"])))
            rows.append(("chrf_corpus", None, sb["chrf_signature"], sb["chrf_corpus"]))
    if "cosine" in metrics:
        values = cosine_pairs(refs, preds, embedding_model, cache_dir, show_progress)
        # an empty answer embeds close to everything (0.82 against the demo references): it scores 0
        values = [0.0 if not pred.strip() else value for pred, value in zip(preds, values, strict=True)]
        rows.append(("cosine", values, f"cosine|emb:{embedding_model}", _mean(values)))
    if "exact_match" in metrics or "token_f1" in metrics:
        # RAG answers: the `<ANSWER>:` part of each text, Korean particles dropped (evaluate/answers.py)
        em, f1 = answer_scores(refs, preds)
        signature = answer_signature()
        if "exact_match" in metrics:
            rows.append(("exact_match", em, f"{signature}|exact", _mean(em)))
        if "token_f1" in metrics:
            rows.append(("token_f1", f1, f"{signature}|f1", _mean(f1)))
    if KOREAN_ANSWER_RATE in metrics:
        values = korean_answers(preds)
        rows.append((KOREAN_ANSWER_RATE, values, KOREAN_ANSWER_SIGNATURE, _mean(values)))
    return rows


# share of answers in Korean: 1.0 per prediction the language stage would call Korean (Hangul ratio >= 0.5,
# else lingua among ko/en/ja/zh, code blocks and URLs not counted); no letters (or degenerate) = not Korean
KOREAN_ANSWER_RATE = "korean_answer_rate"
KOREAN_ANSWER_SIGNATURE = "language:hangul>=0.5|lingua-low:ko,en,ja,zh|expected:ko"


def korean_answers(predictions: Sequence[str], expected: str = "ko") -> list[float]:
    """1.0 for each prediction whose detected language is `expected` (ko), else 0.0."""
    return [1.0 if lang == expected else 0.0 for lang in languages_of(predictions)]


DEGENERATE_METRIC = "degenerate"
# special tokens a model emits when it says nothing: <|endoftext|>, <|im_end|>, </s>, <pad>, [PAD] ...
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{1,40}\|>|</?s>|<pad>|<unk>|<eos>|<bos>|\[(?:PAD|UNK|CLS|SEP|MASK)\]")


def degenerate_reason(text: str | None) -> str | None:
    """Why an answer says nothing: empty, special tokens only, or one token (or character) repeated."""
    stripped = (text or "").strip()
    if not stripped:
        return "empty"
    if not _SPECIAL_TOKEN.sub("", stripped).strip():
        return "special_tokens_only"
    words = stripped.split()
    if len(words) >= 3 and len(set(words)) == 1:
        return "repeated_token"
    letters = stripped.replace(" ", "")
    if len(letters) >= 5 and len(set(letters)) == 1:
        return "repeated_token"
    return None
