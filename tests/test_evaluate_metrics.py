"""Korean-correct metrics: values equal rouge-score's / sacrebleu's own APIs on the same inputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from tunelab.evaluate.metrics import bleu_chrf_pairs, degenerate_reason, rouge_pairs, score_pairs
from tunelab.evaluate.tokenizers import (
    CharTokenizer,
    KiwiTokenizer,
    WhitespaceTokenizer,
    resolve_tokenizer_name,
    rouge_tokenizer,
)

REF = "서울의 인구는 약 천만 명입니다"
PRED = "서울 인구는 약 1천만 명입니다"
KORSTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kakaobrain__kor-nlu-datasets"


def test_library_default_tokenizer_scores_korean_zero_but_ours_never_selects_it() -> None:
    # the bug this project exists to avoid: rouge-score's default keeps [a-z0-9] only
    assert rouge_scorer.RougeScorer(["rouge1"]).score(REF, PRED)["rouge1"].fmeasure == 0.0
    for name in ("auto", "kiwi", "whitespace", "char"):
        _, scores = rouge_pairs([REF], [PRED], name)
        assert scores["rouge1"][0][2] > 0.5
    for not_ours in (None, "default", "rouge", ""):
        with pytest.raises(ValueError):
            rouge_pairs([REF], [PRED], not_ours)  # type: ignore[arg-type]
    assert resolve_tokenizer_name("auto", [REF]) == "kiwi"
    assert resolve_tokenizer_name("auto", ["hello world"]) == "whitespace"


@pytest.mark.parametrize(("name", "expected"), [("whitespace", 0.600), ("kiwi", 0.889), ("char", 0.923)])
def test_seoul_pair_matches_stack_notes(name: str, expected: float) -> None:
    _, scores = rouge_pairs([REF], [PRED], name)
    assert scores["rouge1"][0][2] == pytest.approx(expected, abs=5e-4)


def test_kiwi_tokens_and_scores_equal_rouge_scores_own_functions() -> None:
    tok = KiwiTokenizer()
    ref_tokens, pred_tokens = tok.tokenize(REF), tok.tokenize(PRED)
    assert ref_tokens[:4] == ["서울", "의", "인구", "는"]
    assert "1" in pred_tokens and "천만" in pred_tokens
    ours = rouge_pairs([REF], [PRED], "kiwi")[1]
    own = {
        "rouge1": rouge_scorer._score_ngrams(
            rouge_scorer._create_ngrams(ref_tokens, 1), rouge_scorer._create_ngrams(pred_tokens, 1)
        ),
        "rouge2": rouge_scorer._score_ngrams(
            rouge_scorer._create_ngrams(ref_tokens, 2), rouge_scorer._create_ngrams(pred_tokens, 2)
        ),
        "rougeL": rouge_scorer._score_lcs(ref_tokens, pred_tokens),
    }
    # and the public API with our tokenizer object gives the same again
    public = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=tok).score(REF, PRED)
    for kind in ("rouge1", "rouge2", "rougeL"):
        assert ours[kind][0] == (own[kind].precision, own[kind].recall, own[kind].fmeasure)
        assert ours[kind][0] == tuple(public[kind])
    assert ours["rouge1"][0][2] == pytest.approx(8 / 9)


def test_tokenizers_drop_punctuation_and_lowercase() -> None:
    assert WhitespaceTokenizer().tokenize("Hello, 서울! — ok.") == ["hello", "서울", "ok"]
    assert CharTokenizer().tokenize("A 서울!") == ["a", "서", "울"]
    assert KiwiTokenizer().tokenize("!!! ...") == []
    assert rouge_tokenizer("kiwi").tokenize_many(["", "서울", "  "]) == [[], ["서울"], []]


def test_non_empty_text_without_tokens_warns_with_sample_id() -> None:
    with pytest.warns(UserWarning, match=r"prediction produced no tokens in sample demo:7"):
        _, scores = rouge_pairs([REF, REF], [PRED, "?!…"], "kiwi", ["demo:6", "demo:7"])
    assert scores["rouge1"][1][2] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty prediction is a real 0, not a tokenization failure
        rouge_pairs([REF], [""], "kiwi", ["demo:8"])


def test_bleu_and_chrf_equal_sacrebleu_api_with_signatures() -> None:
    refs = [REF, "오늘 날씨가 정말 좋네요.", "비행기가 이륙하고 있다.", "고양이가 잔다"]
    preds = [PRED, "오늘은 날씨가 좋아요.", "비행기가 이륙하고 있다.", ""]
    got = bleu_chrf_pairs(refs, preds)
    sentence = BLEU(tokenize="ko-mecab", effective_order=True)
    for ref, pred, value in zip(refs, preds, got["bleu"], strict=True):
        assert value == sentence.sentence_score(pred, [ref]).score
    for ref, pred, value in zip(refs, preds, got["chrf"], strict=True):
        assert value == CHRF().sentence_score(pred, [ref]).score
    corpus = BLEU(tokenize="ko-mecab")
    assert got["bleu_corpus"] == corpus.corpus_score(preds, [refs]).score
    chrf = CHRF()
    assert got["chrf_corpus"] == chrf.corpus_score(preds, [refs]).score
    assert got["bleu"][0] == pytest.approx(35.93, abs=0.01)
    assert got["chrf"][0] == pytest.approx(49.43, abs=0.01)
    assert got["bleu_corpus_signature"].endswith(str(corpus.get_signature()))
    assert "tok:ko-mecab" in got["bleu_signature"] and "eff:yes" in got["bleu_signature"]
    assert got["chrf_signature"].endswith(str(chrf.get_signature()))
    english = bleu_chrf_pairs(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert (
        english["bleu"][0]
        == BLEU(tokenize="13a", effective_order=True)
        .sentence_score("the cat sat on a mat", ["the cat sat on the mat"])
        .score
    )
    assert "tok:13a" in english["bleu_signature"]


def test_score_pairs_long_frame_per_model_with_signatures() -> None:
    pairs = pl.DataFrame(
        {
            "model": ["base", "base", "sft", "sft"],
            "sample_id": ["d:0", "d:1", "d:0", "d:1"],
            "reference": [REF, "고양이가 잔다", REF, "고양이가 잔다"],
            "prediction": ["전혀 다른 말", "개가 짖는다", PRED, "고양이가 잔다"],
        }
    )
    scores, metrics = score_pairs(pairs, metrics=("rouge", "bleu", "chrf"))
    # 9 ROUGE parts + sentence BLEU and chrF + the degenerate flag, per model and sample
    assert scores.height == 2 * 2 * (9 + 2 + 1)
    r1 = metrics.filter(pl.col("metric") == "rouge1").sort("model")
    assert r1["value"].to_list()[1] == pytest.approx((8 / 9 + 1.0) / 2)
    assert r1["signature"][0] == "rouge-score 0.1.2|tok:kiwi-0.24.1-morph-lower|stem:no|rouge1|f1"
    assert set(metrics["metric"]) >= {
        "rouge1",
        "rouge2",
        "rougeL",
        "bleu",
        "bleu_corpus",
        "chrf",
        "chrf_corpus",
    }
    assert scores.filter(pl.col("signature").is_null()).height == 0


def test_one_mecab_tokenizer_survives_twenty_thousand_calls() -> None:
    # STACK-NOTES risk: pymecab-ko reported failing to open its dictionary after ~15.8k calls in a process
    from tunelab.evaluate.metrics import _sacrebleu_metric

    tagger = _sacrebleu_metric("bleu", "ko-mecab", True).tokenizer
    # distinct strings so sacrebleu's lru_cache cannot answer for mecab
    outputs = [tagger(f"서울의 인구는 {i}명입니다") for i in range(20_000)]
    assert outputs[12_345] == "서울 의 인구 는 12345 명 입니다"
    assert len(set(outputs)) == 20_000


def test_korsts_pairs_score_nonzero_with_korean_tokenizers() -> None:
    path = KORSTS / "KorSTS_sts-dev.tsv"
    if not path.exists():
        pytest.skip(f"{path} absent: the shared datasets folder is not mounted")
    frame = pl.read_csv(path, separator="\t", quote_char=None).head(200)
    _, scores = rouge_pairs(frame["sentence1"].to_list(), frame["sentence2"].to_list(), "auto")
    f1 = [f for _, _, f in scores["rouge1"]]
    assert sum(v > 0 for v in f1) > 190  # near-paraphrases: almost all overlap


def test_ngram_counts_equal_rouge_scores_create_ngrams() -> None:
    from tunelab.evaluate.tokenizers import KiwiTokenizer

    texts = [REF, PRED, "하나", "", "가 가 가 나 가 가"]
    tokens = KiwiTokenizer().tokenize_many(texts)
    refs, preds = texts, list(reversed(texts))
    _, ours = rouge_pairs(refs, preds, "kiwi")
    for i, (ref_tokens, pred_tokens) in enumerate(zip(tokens, list(reversed(tokens)), strict=True)):
        for kind, n in (("rouge1", 1), ("rouge2", 2)):
            own = rouge_scorer._score_ngrams(
                rouge_scorer._create_ngrams(ref_tokens, n), rouge_scorer._create_ngrams(pred_tokens, n)
            )
            assert ours[kind][i] == (own.precision, own.recall, own.fmeasure)


def test_one_tokenization_for_every_model_in_an_evaluation() -> None:
    # English references; one model answers in Korean. Tokenizers are chosen over the whole evaluation,
    # so both models are scored with the same ones and their numbers stay comparable.
    pairs = pl.DataFrame(
        {
            "model": ["base", "sft"],
            "sample_id": ["d:0", "d:0"],
            "reference": ["the cat sleeps", "the cat sleeps"],
            "prediction": ["the cat sleeps", "고양이가 잔다"],
        }
    )
    scores, _ = score_pairs(pairs, metrics=("rouge", "bleu"))
    signatures = scores.group_by("metric").agg(pl.col("signature").n_unique())
    assert signatures["signature"].to_list() == [1] * signatures.height
    assert "tok:ko-mecab" in scores.filter(pl.col("metric") == "bleu")["signature"][0]
    assert "tok:kiwi" in scores.filter(pl.col("metric") == "rouge1")["signature"][0]
    base = scores.filter((pl.col("model") == "base") & (pl.col("metric") == "rouge1"))["value"][0]
    assert base == 1.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("<|endoftext|>", "special_tokens_only"),
        ("<|im_end|> </s>", "special_tokens_only"),
        ("수 수 수 수 수 수", "repeated_token"),
        ("아아아아아아아아", "repeated_token"),
        ("서울은 한국의 수도입니다.", None),
        ("네 네", None),
    ],
)
def test_degenerate_answers_are_named(text: str, reason: str | None) -> None:
    assert degenerate_reason(text) == reason


def test_empty_and_degenerate_answers_score_zero_on_every_metric() -> None:
    pairs = pl.DataFrame(
        {
            "model": ["m"] * 4,
            "sample_id": ["d:0", "d:1", "d:2", "d:3"],
            "reference": [REF, REF, REF, "고양이가 잔다"],
            "prediction": ["", "<|endoftext|>", "수 수 수 수", "고양이가 잔다"],
        }
    )
    scores, metrics = score_pairs(
        pairs, metrics=("rouge", "bleu", "chrf", "cosine"), embedding_model="use-v3"
    )
    degenerate = scores.filter(pl.col("sample_id") != "d:3")
    assert degenerate.filter(pl.col("metric") == "degenerate")["value"].to_list() == [1.0, 1.0, 1.0]
    others = degenerate.filter(pl.col("metric") != "degenerate")
    assert others.height > 0 and (others["value"] == 0).all()  # cosine of "" would be ~0.8 otherwise
    good = scores.filter((pl.col("sample_id") == "d:3") & (pl.col("metric") == "cosine"))["value"][0]
    assert good == pytest.approx(1.0, abs=1e-4)
    assert metrics.filter(pl.col("metric") == "degenerate")["value"][0] == pytest.approx(0.75)
