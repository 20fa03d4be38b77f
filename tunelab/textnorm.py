"""Korean-aware text normalisation and character shingling, shared by curation and its tests.

Normalisation runs as polars expressions so a whole column is cleaned in one vectorised pass;
the pure-Python `normalize_text` / `char_shingles` exist for tests, benchmarks and reference checks.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import polars as pl

# C0/C1 controls except tab, newline, carriage return, plus zero-width characters and the BOM:
# they are invisible, break exact dedup, and tokenizers treat them inconsistently.
CONTROL_PATTERN = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]"
# horizontal whitespace only: newlines carry structure (lists, code) that a response must keep
HORIZONTAL_SPACE_PATTERN = r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+"
# a run of horizontal space is collapsed only after a visible character: a line's leading indentation is
# kept, since the Python code and nested lists in answers carry meaning in it ("    print(i)" stayed
# "print(i)" before). An explicit class rather than \S, so polars' regex and Python's re agree exactly.
SPACE_AFTER_TEXT = r"([^ \t\u00a0\u2000-\u200a\u202f\u205f\u3000\n])" + HORIZONTAL_SPACE_PATTERN
TRAILING_SPACE = HORIZONTAL_SPACE_PATTERN + "\n"  # at a line's end, and lines of spaces only


# a superset of what normalize_expr changes: rows that do not match are left alone (most rows of real
# data), so the five replace passes run only on the few that need them
CHANGE_PATTERN = CONTROL_PATTERN + r"|[\t\r\u00a0\u2000-\u200a\u202f\u205f\u3000]|  | \n|\n |\n\n\n|^\s|\s$"


def normalize_expr(
    column: str | pl.Expr,
    unicode_form: str = "NFC",
    collapse_whitespace: bool = True,
    strip_control: bool = True,
) -> pl.Expr:
    """NFC/NFKC (composes decomposed Hangul jamo), controls removed, whitespace collapsed, ends stripped."""
    expr = pl.col(column) if isinstance(column, str) else column
    if unicode_form != "none":
        expr = expr.str.normalize(unicode_form)
    if strip_control:
        expr = expr.str.replace_all(CONTROL_PATTERN, "")
    if collapse_whitespace:
        expr = (
            expr.str.replace_all("\r\n?", "\n")
            .str.replace_all(SPACE_AFTER_TEXT, "${1} ")
            .str.replace_all(TRAILING_SPACE, "\n")
            .str.replace_all("\n{3,}", "\n\n")
        )
    return expr.str.strip_chars()


def normalize_text(
    text: str, unicode_form: str = "NFC", collapse_whitespace: bool = True, strip_control: bool = True
) -> str:
    """Reference implementation of `normalize_expr` for one string (tests compare the two)."""
    if unicode_form != "none":
        text = unicodedata.normalize(unicode_form, text)
    if strip_control:
        text = re.sub(CONTROL_PATTERN, "", text)
    if collapse_whitespace:
        text = re.sub("\r\n?", "\n", text)
        text = re.sub(SPACE_AFTER_TEXT, r"\1 ", text)
        text = re.sub(TRAILING_SPACE, "\n", text)
        text = re.sub("\n{3,}", "\n\n", text)
    return text.strip()


def char_shingles(text: str, n: int) -> set[str]:
    """Character n-grams of `text`; a text shorter than n is one shingle (so short texts still match)."""
    if len(text) < n:
        return {text}
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def exact_jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _seeded_odd(seed: int, salt: int) -> np.uint32:
    """A random-looking odd 32-bit constant per (seed, salt), via splitmix64 in Python ints."""
    z = (seed * _GOLDEN + salt * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return np.uint32(((z ^ (z >> 31)) & 0xFFFFFFFF) | 1)


def window_hashes(texts: list[str], n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """32-bit hashes of every character n-gram of every text, in one vectorised pass.

    Returns (hashes, starts, counts): text i's shingle hashes are hashes[starts[i] : starts[i] + counts[i]],
    counts[i] = max(len - n + 1, 1) (a text shorter than n hashes as one shingle). The texts are joined
    with NUL separators and encoded to UTF-32 so one numpy array holds all codepoints; a Horner polynomial
    over n shifted views hashes every window at once. Windows that straddle a separator are left in place
    (text i owns len_i + max(n - 1, 1) windows) so callers can mask them instead of copying.
    32 bits, not 64: the passes are memory-bound, and two distinct shingles of a 1k-shingle pair collide
    with probability ~2e-4 per pair, far below what moves a Jaccard estimate.
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    if not texts:
        return np.zeros(0, np.uint32), lengths, lengths
    gap = max(n - 1, 1)  # at least one separator so an empty text still owns a window
    pad = "\x00" * gap
    joined = pad.join(texts) + pad + "\x00" * (gap + n)
    codepoints = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    windows = int((lengths + gap).sum())
    base, spread = _seeded_odd(seed, 1), _seeded_odd(seed, 2)
    h = codepoints[:windows] * spread
    # Horner in place: two passes per character and no temporaries; overflow wraps mod 2**32 on purpose
    for k in range(1, n):
        np.multiply(h, base, out=h)
        np.add(h, codepoints[k : k + windows], out=h)
    _fmix32(h)
    starts = np.concatenate(([0], np.cumsum(lengths + gap)[:-1])).astype(np.int64)
    return h, starts, np.maximum(lengths - n + 1, 1)


def _fmix32(h: np.ndarray) -> None:
    """murmur3's 32-bit finaliser in place: every output bit depends on every input bit (bins use the top
    bits, the minimum uses all of them)."""
    tmp = np.empty_like(h)
    for shift, mult in ((16, np.uint32(0x85EBCA6B)), (13, np.uint32(0xC2B2AE35))):
        np.right_shift(h, np.uint32(shift), out=tmp)
        np.bitwise_xor(h, tmp, out=h)
        np.multiply(h, mult, out=h)
    np.right_shift(h, np.uint32(16), out=tmp)
    np.bitwise_xor(h, tmp, out=h)


def shingle_hashes(texts: list[str], n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Only the valid shingle hashes, concatenated in text order, and how many each text has."""
    h, starts, counts = window_hashes(texts, n, seed)
    first_of_text = np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(starts, counts) + (np.arange(counts.sum(), dtype=np.int64) - first_of_text)
    return h[positions], counts
