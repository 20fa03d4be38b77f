"""The dedup key: what MinHash (and, optionally, exact) compare instead of the raw content.

Copies that real data carries differ in spacing, punctuation and case (and in compatibility forms such
as full-width letters); a Jaccard on the raw text counts each of those as a changed shingle. The key
removes them: NFKC, lower-cased, punctuation and symbols removed, whitespace collapsed (each step
switchable under `minhash.key` / `exact.key`). It is computed for comparison only: the curated output
keeps the original text. This is the text datatrove's and text-dedup's MinHash compare.

Lower-casing is Unicode `to_lowercase` (polars), i.e. `str.lower()`: the same as `str.casefold()`
except for the handful of characters casefold expands (ß -> ss); Hangul has no case.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import polars as pl

from tunelab.curate.config import DedupKeySettings

# Unicode punctuation (P*) and symbols (S*): a superset of string.punctuation, plus 「」, ·, …, emoji
PUNCTUATION_PATTERN = r"[\p{P}\p{S}]"


@functools.lru_cache(maxsize=1)
def _punctuation_re() -> re.Pattern[str]:
    chars = (chr(c) for c in range(0x110000) if unicodedata.category(chr(c))[0] in "PS")
    return re.compile("[" + "".join(re.escape(c) for c in chars) + "]")


def key_expr(column: str | pl.Expr, key: DedupKeySettings) -> pl.Expr:
    """The key of every row of `column`, as one vectorised polars expression."""
    expr = pl.col(column) if isinstance(column, str) else column
    expr = expr.fill_null("")
    if key.unicode != "none":
        expr = expr.str.normalize(key.unicode)
    if key.lowercase:
        expr = expr.str.to_lowercase()
    if key.punctuation:
        expr = expr.str.replace_all(PUNCTUATION_PATTERN, "")
    if key.whitespace:
        expr = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    return expr


def dedup_keys(texts: list[str] | pl.Series, key: DedupKeySettings) -> list[str]:
    """Keys of `texts` (a list or a String series), in order."""
    series = texts if isinstance(texts, pl.Series) else pl.Series("t", texts, dtype=pl.String)
    if key.is_identity():
        return series.fill_null("").to_list()
    return pl.select(key_expr(pl.lit(series), key)).to_series().to_list()


def dedup_key(text: str, key: DedupKeySettings) -> str:
    """Reference implementation of `key_expr` for one string (tests compare the two)."""
    if key.unicode != "none":
        text = unicodedata.normalize(key.unicode, text)
    if key.lowercase:
        text = text.lower()
    if key.punctuation:
        text = _punctuation_re().sub("", text)
    if key.whitespace:
        text = re.sub(r"\s+", " ", text).strip()
    return text


def describe(key: DedupKeySettings) -> str:
    """'NFKC, lower-cased, no punctuation, whitespace collapsed' (for evidence strings and reports)."""
    parts = [key.unicode] if key.unicode != "none" else []
    parts += ["lower-cased"] if key.lowercase else []
    parts += ["no punctuation"] if key.punctuation else []
    parts += ["whitespace collapsed"] if key.whitespace else []
    return ", ".join(parts) or "raw text"
