"""Language stage: the share of Hangul and the language of every text field, judged per field.

Every text a row holds is measured on its own: sft system/prompt/response, dpo history turns, prompt,
chosen and rejected, every turn of a chat conversation, raft instruction/context/question/answer/cot, text.
A row is dropped, with the first finding as its reason and every finding in the evidence, when

- a field is in a language outside `allow`                        -> `lang:<code>`    (lang:ja, lang:zh, ...)
- an answer is in another language than its question (`match_prompt`; both may be allowed: a Korean prompt
  with an English response is a finding)                          -> `lang:<code>`    (the answer's language)
- a field with Hangul has less than `min_hangul_ratio` of its letters in Hangul -> `lang:hangul_ratio<X`

Every reason starts with `lang:`; the evidence names the field (`response`, `messages[3]`, `context[0]`),
its language and, for a mismatch, the question's language. Fields with fewer than `min_letters` letters
(numbers, symbols, "OK") are not judged. An answer with any Hangul is never a mismatch against a Korean
question: a Korean explanation of code is mostly Latin letters and the detector calls it English.

How a language is decided, cheapest first (measured on this machine, one core; docs/curate.md):
- Hangul ratio = Hangul characters (syllables and jamo, Unicode script Hangul) over letters, code blocks,
  inline code, URLs, e-mail addresses and HTML/XML markup (tags with their attributes, comments, entities,
  script and style blocks: `<div class="greeting">안녕하세요</div>` is Korean) left out; one Rust regex pass per field. A field at >= 0.5 is Korean without asking
  the detector: all 3,000 KorSTS dev sentences are, and lingua agreed on every one.
- A text in Latin letters alone is English when English is the only Latin-script candidate.
- Otherwise lingua-language-detector (offline, Rust) built with only the `detect` languages (default
  ko/en/ja/zh, plus `allow`) in low-accuracy mode; its confidence is the `lang_confidence` signal.
  KorSTS dev 3,000/3,000 ko (27.5k texts/s with the shortcuts, 16.9k lingua alone); kullm-v1's 712 English
  texts: 702 en, the rest without letters or one Chinese character (57k texts/s, 1.9k lingua alone); 100k
  generated DPO rows: 28.5k rows/s for the stage vs 5.8k rows/s for lingua alone on every text
  (benchmarks/signals_bench.py). Ten languages (adding fr/de/es/vi/ru/id) in low-accuracy mode called 12 of
  504 KULLM English texts French/German/Indonesian at confidence >= 0.5; high-accuracy mode with ten ran at
  316 texts/s, all 75 languages at 97. So Latin-script languages other than English are told apart only
  when the recipe names them in `allow` or `detect`.

Signals per row and field (`messages` / `history` / `context`: over all their turns): `hangul_ratio` (when
the field has letters) and `lang_confidence` (the detector's confidence in the language it chose; 1.0 for
the Hangul shortcut).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import polars as pl

from tunelab.curate.common import SIGNAL_SCHEMA, StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import SPECIAL_TOKENS, LanguageSettings
from tunelab.errors import UserError
from tunelab.records.fields import CANONICAL_FIELDS, LIST_FIELDS, MESSAGE_FIELDS

STAGE = "language"
# a field this Hangul-rich is Korean without asking the detector (every KorSTS sentence is above it)
KOREAN_SHORTCUT = 0.5
HANGUL = r"\p{Hangul}"
LETTER = r"\p{L}"
LATIN = r"\p{Latin}"
# ISO 639-1 codes of languages not written in Latin letters (the rest of lingua's are)
NON_LATIN = {
    "ko", "ja", "zh", "ru", "uk", "bg", "be", "mk", "sr", "kk", "mn", "ar", "fa", "ur", "he", "el", "hi", "mr",
    "bn", "th", "ka", "hy", "ta", "te", "gu", "pa",
}  # fmt: skip
# tokenizer control tokens are no language either: "싫어요<|endoftext|>" has 3 Hangul of 12 letters and read
# as lang:hangul_ratio<0.3 before the quality stage (which runs later) could cut the trailing token
CONTROL_TOKENS = "|".join([r"<\|[A-Za-z0-9_.:-]{1,40}\|>", *(re.escape(token) for token in SPECIAL_TOKENS)])
# e-mail addresses neither: "example@example.com 같은 형식입니다." read as hangul_ratio 0.29
EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
# nor is markup: `<div class="greeting"><span style="font-weight:bold">안녕하세요</span></div>` read as
# English with hangul_ratio 0.08. A tag starts with an ASCII letter right after `<` (3 < 5 and 7 > 2 is no
# tag); script and style blocks go whole, entities (&nbsp; &#39;) too
# (no \b and no lazy class inside a tag: either sent polars' Rust regex to a slower engine, 8x the stage time)
HTML = (
    r"<script[\s>].*?</script\s*>|<style[\s>].*?</style\s*>|<!--.*?-->|"
    r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>|&(?:[A-Za-z]{2,8}|#[0-9]{1,6}|#x[0-9A-Fa-f]{1,6});"
)
NOT_PROSE = r"(?s)```.*?```|`[^`\n]*`|https?://\S+|www\.\S+|" + EMAIL + "|" + CONTROL_TOKENS + "|" + HTML
# the role of each flat field: a question, an answer to the last question, or neither
QUESTIONS = {"prompt", "question"}
ANSWERS = {"response", "chosen", "rejected", "answer", "cot"}
TURN_ROLE = {"user": "question", "assistant": "answer"}
NO_LETTERS = "none"

LONG_SCHEMA = {
    "row": pl.UInt32,
    "order": pl.Int32,
    "field": pl.String,
    "base": pl.String,
    "role": pl.String,
    "text": pl.String,
}


def long_texts(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Every text of every row, one line each: `row` (position in `frame`), `order` (the text's place in
    the row), `field` (`prompt`, `messages[2]`, `context[0]`), `base` (the canonical field), `role`
    (question / answer / null) and `text`. Null fields and empty conversations give no line."""
    parts: list[pl.DataFrame] = []
    rows = pl.int_range(pl.len(), dtype=pl.UInt32).alias("row")
    for position, name in enumerate(CANONICAL_FIELDS.get(kind, ())):
        if name not in frame.columns:
            continue
        base = position * 100_000  # order inside a row: fields in canonical order, turns in turn order
        if name in MESSAGE_FIELDS:
            turns = (
                frame.select(rows, pl.col(name).alias("turn"))
                .with_columns(index=pl.int_ranges(pl.col("turn").list.len(), dtype=pl.Int32))
                .explode("turn", "index")
                .drop_nulls("turn")
            )
            part = turns.select(
                "row",
                (pl.col("index") + base).cast(pl.Int32).alias("order"),
                pl.format(f"{name}[{{}}]", pl.col("index")).alias("field"),
                pl.lit(name).alias("base"),
                pl.col("turn").struct.field("role").replace_strict(TURN_ROLE, default=None).alias("role"),
                pl.col("turn").struct.field("content").alias("text"),
            )
        elif name in LIST_FIELDS:
            items = (
                frame.select(rows, pl.col(name).alias("text"))
                .with_columns(index=pl.int_ranges(pl.col("text").list.len(), dtype=pl.Int32))
                .explode("text", "index")
            )
            part = items.select(
                "row",
                (pl.col("index") + base).cast(pl.Int32).alias("order"),
                pl.format(f"{name}[{{}}]", pl.col("index")).alias("field"),
                pl.lit(name).alias("base"),
                pl.lit(None, dtype=pl.String).alias("role"),
                "text",
            )
        else:
            role = "question" if name in QUESTIONS else "answer" if name in ANSWERS else None
            part = frame.select(
                rows,
                pl.lit(base, dtype=pl.Int32).alias("order"),
                pl.lit(name).alias("field"),
                pl.lit(name).alias("base"),
                pl.lit(role, dtype=pl.String).alias("role"),
                pl.col(name).alias("text"),
            )
        parts.append(part.cast(LONG_SCHEMA).filter(pl.col("text").is_not_null()))  # type: ignore[arg-type]
    if not parts:
        return pl.DataFrame(schema=LONG_SCHEMA)
    return pl.concat(parts).sort("row", "order")


@lru_cache(maxsize=8)
def detector(codes: tuple[str, ...]) -> Any:
    """A lingua detector for exactly these ISO 639-1 codes, low-accuracy mode (built in well under 1 ms;
    the language models load on first use)."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    languages = []
    for code in codes:
        try:
            languages.append(Language.from_iso_code_639_1(IsoCode639_1.from_str(code)))
        except (ValueError, AttributeError):
            raise UserError(
                f"curate.language: {code!r} is not an ISO 639-1 language code lingua knows (e.g. ko, en, ja)"
            ) from None
    if len(languages) < 2:
        # lingua needs two languages to choose between; English is the usual other one
        languages.append(Language.ENGLISH if Language.ENGLISH not in languages else Language.KOREAN)
    return LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode().build()


def detect(texts: Sequence[str], codes: Sequence[str]) -> tuple[list[str], list[float]]:
    """(ISO 639-1 code, confidence) of each text among `codes`; `none` and 0.0 where lingua finds none."""
    if not texts:
        return [], []
    found = detector(tuple(sorted(set(codes)))).compute_language_confidence_values_in_parallel(list(texts))
    langs, confidences = [], []
    for values in found:
        if values and values[0].value > 0:
            langs.append(values[0].language.iso_code_639_1.name.lower())
            confidences.append(float(values[0].value))
        else:
            langs.append(NO_LETTERS)
            confidences.append(0.0)
    return langs, confidences


def measure(texts: pl.DataFrame, cfg: LanguageSettings) -> pl.DataFrame:
    """`texts` (long_texts) with `letters`, `hangul_ratio`, `lang` and `confidence` of each text."""
    # code blocks, inline code and URLs are no language: a Korean explanation of a long code block would
    # otherwise read as English with a Hangul ratio under 0.1
    prose = pl.col("text").str.replace_all(NOT_PROSE, " ")
    measured = (
        texts.with_columns(prose=prose)
        .with_columns(
            letters=pl.col("prose").str.count_matches(LETTER).cast(pl.Int64),
            hangul=pl.col("prose").str.count_matches(HANGUL).cast(pl.Int64),
        )
        .with_columns(
            hangul_ratio=pl.when(pl.col("letters") > 0).then(pl.col("hangul") / pl.col("letters")),
        )
    )
    codes = sorted({*cfg.detect, *cfg.allow})
    # the only candidate written in Latin letters (English by default) is the answer for a text in Latin
    # letters alone: lingua is asked only when two candidates share the text's script (KULLM-like English
    # rows: 7.5k texts/s through lingua with ko/en/ja/zh, benchmarks/signals_bench.py)
    latin = [code for code in codes if code not in NON_LATIN]
    only_latin = latin[0] if len(latin) == 1 else None
    measured = measured.with_columns(
        fixed=pl.when((pl.col("hangul_ratio") >= KOREAN_SHORTCUT).fill_null(False))
        .then(pl.lit("ko"))
        .when(pl.lit(only_latin is not None) & (pl.col("letters") > 0))
        .then(pl.when(pl.col("prose").str.count_matches(LATIN) == pl.col("letters")).then(pl.lit(only_latin)))
    )
    ask = measured.with_row_index("i").filter(pl.col("fixed").is_null() & (pl.col("letters") > 0))
    langs, confidences = detect(ask["prose"].to_list(), codes)
    asked = pl.DataFrame(
        {"i": ask["i"], "asked_lang": pl.Series(langs, dtype=pl.String), "asked_conf": confidences},
        schema={"i": pl.UInt32, "asked_lang": pl.String, "asked_conf": pl.Float64},
    )
    measured = measured.with_row_index("i").join(asked, on="i", how="left").drop("i")
    return measured.with_columns(
        lang=pl.when(pl.col("fixed").is_not_null())
        .then(pl.col("fixed"))
        .when(pl.col("letters") == 0)
        .then(pl.lit(NO_LETTERS))
        .otherwise(pl.col("asked_lang")),
        confidence=pl.when(pl.col("fixed").is_not_null()).then(1.0).otherwise(pl.col("asked_conf")),
    ).drop("asked_lang", "asked_conf", "prose", "fixed")


def findings(measured: pl.DataFrame, cfg: LanguageSettings) -> pl.DataFrame:
    """One line per finding: row, field, reason, evidence, score (the field's Hangul ratio or confidence)."""
    judged = pl.col("letters") >= cfg.min_letters
    # the language of the last question before each text of a row (an answer is compared with it)
    question_lang = (
        pl.when((pl.col("role") == "question") & judged).then(pl.col("lang")).forward_fill().over("row")
    )
    question_hangul = (
        pl.when((pl.col("role") == "question") & judged).then(pl.col("hangul")).forward_fill().over("row")
    )
    frame = measured.with_columns(question_lang=question_lang, question_hangul=question_hangul)
    allowed = pl.col("lang").is_in(cfg.allow)
    outside = judged & ~allowed & (pl.col("lang") != NO_LETTERS)
    mismatch = (
        pl.lit(cfg.match_prompt)
        & judged
        & (pl.col("role") == "answer")
        & allowed
        & pl.col("question_lang").is_not_null()
        & (pl.col("lang") != pl.col("question_lang"))
        # Korean against anything: a mismatch only when the other side has no Hangul at all. A Korean
        # explanation of code is mostly Latin letters ("이 코드는 for loop를 ..." reads as English), and so
        # is a short Korean question about an acronym ("SNS 흔적", ChatbotData)
        & ~(
            ((pl.col("question_lang") == "ko") | (pl.col("lang") == "ko"))
            & (pl.col("hangul") > 0)
            & (pl.col("question_hangul") > 0)
        )
    )
    low_hangul = (
        pl.lit(cfg.min_hangul_ratio > 0)
        & judged
        & (pl.col("hangul") > 0)
        & (pl.col("hangul_ratio") < cfg.min_hangul_ratio)
    )
    ratio_reason = f"lang:hangul_ratio<{cfg.min_hangul_ratio:g}"
    lang_text = pl.format("{} ({})", pl.col("lang"), pl.col("confidence").round(2))
    found = frame.with_columns(
        reason=pl.when(outside | mismatch)
        .then(pl.concat_str(pl.lit("lang:"), pl.col("lang")))
        .when(low_hangul)
        .then(pl.lit(ratio_reason)),
        evidence=pl.when(outside)
        .then(pl.format("{}: {}, not in allow", pl.col("field"), lang_text))
        .when(mismatch)
        .then(pl.format("{}: {}, question is {}", pl.col("field"), lang_text, pl.col("question_lang")))
        .when(low_hangul)
        .then(pl.format("{}: hangul_ratio {}", pl.col("field"), pl.col("hangul_ratio").round(3))),
        score=pl.when(low_hangul & ~(outside | mismatch))
        .then(pl.col("hangul_ratio"))
        .otherwise(pl.col("confidence")),
    )
    return found.filter(pl.col("reason").is_not_null()).select("row", "order", "reason", "evidence", "score")


def signals(measured: pl.DataFrame, sample_ids: pl.Series) -> pl.DataFrame:
    """hangul_ratio and lang_confidence per row and canonical field (turns and list items pooled)."""
    per_field = measured.group_by("row", "base", maintain_order=True).agg(
        hangul_ratio=pl.when(pl.col("letters").sum() > 0).then(
            pl.col("hangul").sum() / pl.col("letters").sum()
        ),
        lang_confidence=pl.col("confidence").min(),
    )
    long = per_field.unpivot(
        ["hangul_ratio", "lang_confidence"], index=["row", "base"], variable_name="signal", value_name="value"
    ).drop_nulls("value")
    return long.select(
        sample_ids.gather(long["row"]).alias("sample_id"),
        pl.lit(STAGE).alias("stage"),
        pl.col("base").alias("field"),
        "signal",
        pl.col("value").cast(pl.Float64),
    ).cast(SIGNAL_SCHEMA)  # type: ignore[arg-type]


def run(frame: pl.DataFrame, cfg: LanguageSettings, ctx: StageContext) -> StageOutput:
    """Drop rows with a field in a language outside `allow`, an answer in another language than its
    question, or Korean text with too little Hangul; signals for every row."""
    measured = measure(long_texts(frame, ctx.kind), cfg)
    found = findings(measured, cfg)
    per_row = found.group_by("row", maintain_order=True).agg(
        reason=pl.col("reason").first(),
        score=pl.col("score").first(),
        evidence=pl.col("evidence").head(5).str.join("; "),
        n=pl.len(),
    )
    per_row = per_row.with_columns(
        evidence=pl.when(pl.col("n") > 5)
        .then(pl.format("{}; +{} more", pl.col("evidence"), pl.col("n") - 5))
        .otherwise(pl.col("evidence"))
    )
    sample_ids = frame["sample_id"]
    out = decisions(
        sample_ids.gather(per_row["row"]),
        STAGE,
        False,
        per_row["reason"],
        score=per_row["score"],
        evidence=per_row["evidence"],
    )
    judged = measured.filter(pl.col("letters") >= cfg.min_letters)
    ctx.stats[STAGE] = {
        "dropped": out.height,
        "reasons": {r: int(n) for r, n in out["reason"].value_counts(sort=True).iter_rows()},
        # the language mix of every judged text, by canonical field: what an audit shows first
        "languages": {
            base: dict(sorted(zip(group["lang"].to_list(), group["n"].to_list(), strict=True)))
            for (base,), group in judged.group_by("base", "lang").agg(n=pl.len()).group_by("base")
        },
        "texts": measured.height,
    }
    result = survivors(frame, out)
    return StageOutput(result.frame, result.decisions, signals=signals(measured, sample_ids))


def languages_of(texts: Sequence[str], cfg: LanguageSettings | None = None) -> list[str]:
    """The language code of each text as the stage decides it (Hangul shortcut, then lingua), `none` for a
    text without letters: evaluation's korean_answer_rate uses the same decision as curation."""
    cfg = cfg or LanguageSettings()
    texts_frame = pl.DataFrame({"text": list(texts)}, schema={"text": pl.String}).with_columns(
        row=pl.int_range(pl.len(), dtype=pl.UInt32)
    )
    return measure(texts_frame.with_columns(pl.col("text").fill_null("")), cfg)["lang"].to_list()
