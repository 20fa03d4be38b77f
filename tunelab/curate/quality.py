"""Quality stage: degenerate text, AI boilerplate and refusals, truncated answers, symbol noise, leaked tokens.

Checks (each can be switched off with `quality.checks`, or made an annotation with `quality.flag_only`):

- `special_tokens` (every text field): a tokenizer's special token inside the text (`<|endoftext|>`, `</s>`,
  `<|im_end|>`, `[INST]`, any `<|name|>` ...): the template was applied twice, or a generation was saved
  with its end-of-text marker. Reason `quality:special_tokens`, evidence = field, token, character offset.
  Tokens that only end a string field are cut from the text instead (`strip_trailing_tokens`), the row
  kept with a kept=true `quality:special_tokens` decision (`chosen: trailing <|endoftext|> removed`).
- `repetition` (every text field): the share of character n-gram occurrences (n = `ngram`, 10) that repeat an
  earlier one in the same text (`quality:repetition`, a looping generation), the share of characters in
  lines that repeat an earlier line, and runs of one short unit of letters (`아아아아아아아아`,
  `hahaha...`; digits are numbers, not runs: `100000000원`). Korean laughter and tears (ㅋ ㅎ ㅠ ㅜ 하 히 호
  흐 크 키: `하하하하하하하하하 저도 웃겨요`) are ordinary chat: their runs count neither as a run nor, beyond
  three characters, in the n-gram share, unless the text is mostly that run: fewer than `LAUGHTER_REST`
  (2) letters outside it (`하하하하하하하하`, `ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ 네` are judged as before).
- `refusal` (the answer: response / chosen / answer, cot / the last assistant turn): AI boilerplate and
  canned refusals from `refusal_phrases` + `extra_refusal_phrases`. A phrase is literal text, case
  ignored, where `…` stands for up to 40 characters inside one sentence (`죄송하지만 … 수 없습니다`).
- `truncated` (the answer): the answer ends inside an open bracket or quote (any closing form closes one:
  `"…”`, `“…"`, `「…』`, `(…）`), on a comma / colon, on a
  bare list number (`... 합니다. 2.`), or (answers of at least `truncation_min_chars`) on a word that is no
  sentence end. Korean sentence-final syllables (다 요 까 죠 네 ...) count as an end: chat answers
  (ChatbotData) often have no final punctuation.
- `symbol_ratio` (every text field of at least `ratio_min_chars`): the share of symbol characters
  (`quality:symbol_ratio`), of digits in ID-like numbers (`quality:digit_ratio`), of characters inside URLs
  (`quality:url_ratio`). `max_digit_ratio` bounds the share of characters that are digits of numbers with
  at least `ID_DIGITS` (5) digits that are no arithmetic or quantity: not a decimal (3.14159), not grouped
  in thousands (1,500,000), not a date or time, not next to an operator (+ - × ÷ = < > % ...) or a table
  bar, not followed directly by a unit (1500000원, 3000km). So a list of phone numbers, order numbers or
  IDs is noise, while a math answer (12+35=47, 1234 + 5678 = 6912) or a table of figures is kept.

A row gets one decision: the first failing check in the order above (a drop), or, when only `flag_only`
checks fail, a kept=true decision with that reason. Signals per text field: `repetition` (the n-gram
share) and `symbol_ratio`; they land in the warehouse `signals` table for kept rows too.
Everything is computed over whole columns (polars, and numpy over the batch's code points) so 100k rows
take seconds (benchmarks/signals_bench.py).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import polars as pl

from tunelab.curate.common import SIGNAL_SCHEMA, StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import QualitySettings
from tunelab.curate.length import text_fields
from tunelab.errors import UserError
from tunelab.records.fields import MESSAGE_FIELDS, field_text
from tunelab.textnorm import shingle_hashes

STAGE = "quality"
# the fields whose text is "the answer" of each kind: refusal and truncation judge these only (a question
# may end anywhere; a rejected answer is meant to be bad)
ANSWER_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("response",),
    "dpo": ("chosen",),
    "raft": ("answer", "cot"),
    "chat": ("messages",),  # its last assistant turn
    "text": (),
}
GAP = "…"
# a gap inside one sentence: no sentence end, no line break
GAP_PATTERN = r"[^.!?。\n]{0,40}?"
SENTENCE_END = ".!?。…"
# an answer may end on these without being cut: closing brackets and quotes, emoticon letters, tildes
CLOSERS = ")]}」』》〉”’\"'~^*>`"
# Korean sentence-final syllables (declarative, interrogative, imperative, casual) and nominal endings used
# as sentence ends in notes; bare jamo (ㅋ ㅎ ㅠ ㅜ) are chat laughter / tears at the end of a message
KOREAN_ENDINGS = "다요까죠네지야어아라자게군니세해래냐걸데렴오여용임음함됨슴듯요ㅋㅎㅠㅜㅡ"
# each opener with the marks that close it: writers mix forms ("…” closes a straight quote with a curly one,
# 「…』 a corner bracket with a white one, （…) a full-width parenthesis), and a mixed pair is no cut
BRACKETS = (
    ("(", ")）"),
    ("[", "]"),
    ("{", "}"),
    ("「", "」』"),
    ("『", "』」"),
    ("《", "》"),
    ("〈", "〉"),
    ("“", '”"'),
)
# punctuation ordinary prose uses; every other non-letter, non-digit, non-space character is a symbol
PROSE_PUNCTUATION = ".,!?'\"():;~…·“”‘’「」『』%/-"
SYMBOL_PATTERN = "[^\\p{L}\\p{M}\\p{N}\\s" + re.escape(PROSE_PUNCTUATION).replace("/", "\\/") + "]"
URL_PATTERN = r"(?i)\b(?:https?://|www\.)[^\s<>\"')\]]+"
# digit_ratio counts the digits of ID-like numbers only (phone lists, order numbers, serials): a number with
# at least ID_DIGITS digits that is no arithmetic or quantity (see numeric_noise)
ID_DIGITS = 5
NUMBER = re.compile(r"\d+(?:[-.,:]\d+)*")
# the forms of a number a reader keeps whatever its length: a decimal, thousands groups, a date, a time
NUMERIC_FORM = re.compile(
    r"\d+\.\d+|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{4}[-.]\d{1,2}[-.]\d{1,2}|\d{1,2}:\d{2}(?::\d{2})?"
)
# arithmetic operators, comparison and relation signs, a table bar: a number next to one is an operand
OPERATORS = set("+-−–×÷*/=<>≈≠≤≥^%|·")
BAR_TOKEN = r"<\|[A-Za-z0-9_.:-]{1,40}\|>"
# laughter and tears in Korean chat; a run of them is exempt from the repetition checks unless the text is
# mostly that run: fewer than LAUGHTER_REST letters outside its laughter ("ㅠㅠㅠ… 슬퍼요" says something,
# "하하하하하하하하 네" does not)
LAUGHTER = "ㅋㅎㅠㅜ하히호흐크키"
LAUGHTER_RUN = f"[{LAUGHTER}]{{2,}}"
LAUGHTER_REST = 2
MAX_UNIT = 4  # longest repeated unit the run check looks for (아, 하하, abc, 으아아아)
CHUNK_CHARS = 4_000_000  # code points hashed per numpy pass (bounds memory at ~50 MB)


# ----------------------------------------------------------------------------------------- field texts


def answer_text(field: str) -> pl.Expr:
    """The answer of a field: the text itself, or a conversation's last assistant turn."""
    if field in MESSAGE_FIELDS:
        turn = pl.element()
        contents = turn.filter(turn.struct.field("role") == "assistant").struct.field("content")
        return pl.col(field).list.eval(contents).list.last().alias(field)
    return pl.col(field)


def _texts(frame: pl.DataFrame, exprs: dict[str, pl.Expr]) -> pl.DataFrame:
    """One string column per field (null: the field is absent)."""
    return frame.select([expr.alias(name) for name, expr in exprs.items()])


# ----------------------------------------------------------------------------------------- patterns


def phrase_regex(phrase: str) -> str:
    """A refusal phrase as a regex: literal pieces, `…` = a short gap in one sentence, spaces flexible,
    ' matching ’ too."""
    pieces = [re.escape(piece.strip()) for piece in phrase.split(GAP)]
    pieces = [re.sub(r"(\\ )+", r"\\s+", piece) for piece in pieces]
    # typographic apostrophes are as common as straight ones (hh-rlhf writes I’m)
    pieces = [piece.replace("'", "['’]") for piece in pieces]
    return GAP_PATTERN.join(piece for piece in pieces if piece)


@lru_cache(maxsize=16)
def _phrases(phrases: tuple[str, ...]) -> tuple[str, list[re.Pattern[str]]]:
    """(one combined case-insensitive regex for the column scan, one compiled pattern per phrase)."""
    regexes = [phrase_regex(p) for p in phrases if p.strip(GAP + " ")]
    if not regexes:
        return "", []
    combined = "(?i)(?:" + "|".join(regexes) + ")"
    return combined, [re.compile(r, re.IGNORECASE) for r in regexes]


@lru_cache(maxsize=16)
def _tokens(tokens: tuple[str, ...], bar_tokens: bool) -> str:
    parts = [re.escape(t) for t in sorted(set(tokens), key=len, reverse=True) if t]
    if bar_tokens:
        parts.append(BAR_TOKEN)
    return "|".join(parts)


@lru_cache(maxsize=1)
def _word_table() -> np.ndarray:
    """Per BMP code point: is it a letter (what a repeated run is made of; spaces, dots and dashes repeat
    in ordinary text: indentation, ellipses, rules, and so do digits: 100000000원, 123456789 × 9 = 1111111101)."""
    return np.fromiter((chr(i).isalpha() for i in range(0x10000)), dtype=bool, count=0x10000)


def _is_jamo(cp: np.ndarray) -> np.ndarray:
    return ((cp >= 0x3131) & (cp <= 0x318E)) | ((cp >= 0x1100) & (cp <= 0x11FF))


# ----------------------------------------------------------------------------------------- measurements


def dup_ngram_ratio(texts: list[str], n: int) -> np.ndarray:
    """Per text: the share of its character n-gram occurrences that repeat an earlier one (1 - distinct/all);
    0 for texts shorter than n + 1. One numpy pass per chunk of texts (textnorm.shingle_hashes)."""
    out = np.zeros(len(texts), dtype=np.float64)
    begin = 0
    while begin < len(texts):
        end, budget = begin, 0
        while end < len(texts) and (budget < CHUNK_CHARS or end == begin):
            budget += len(texts[end])
            end += 1
        chunk = texts[begin:end]
        hashes, counts = shingle_hashes(chunk, n)
        rows = np.repeat(np.arange(len(chunk), dtype=np.uint64), counts)
        # polars' sort of u64 is ~2.5x numpy's here (7.6M keys: 1.0 s vs 2.4 s on one core)
        keys = pl.Series((rows << np.uint64(32)) | hashes.astype(np.uint64)).sort().to_numpy()
        fresh = np.ones(keys.size, dtype=bool)
        fresh[1:] = keys[1:] != keys[:-1]
        distinct = np.bincount((keys[fresh] >> np.uint64(32)).astype(np.int64), minlength=len(chunk))
        out[begin:end] = 1.0 - distinct / np.maximum(counts, 1)
        begin = end
    return out


def dup_line_ratio(texts: pl.Series) -> np.ndarray:
    """Per text: the share of its characters (in non-blank lines) that sit in lines repeating an earlier line."""
    lines = (
        pl.DataFrame({"t": texts.fill_null("")})
        .with_row_index("row")
        .with_columns(pl.col("t").str.split("\n"))
        .explode("t")
        .with_columns(pl.col("t").str.strip_chars())
        .filter(pl.col("t").str.len_chars() > 0)
        .with_columns(first=pl.col("t").is_first_distinct().over("row"), chars=pl.col("t").str.len_chars())
        .group_by("row")
        .agg(dup=pl.col("chars").filter(~pl.col("first")).sum(), total=pl.col("chars").sum())
    )
    out = np.zeros(texts.len(), dtype=np.float64)
    rows = lines["row"].to_numpy()
    out[rows] = lines["dup"].to_numpy() / np.maximum(lines["total"].to_numpy(), 1)
    return out


def says_more_than_laughter(texts: pl.Series) -> np.ndarray:
    """Per text: does it hold at least LAUGHTER_REST letters outside its runs of laughter / tear characters
    (ㅋㅋ, 하하, ㅠㅠ)."""
    rest = texts.fill_null("").str.replace_all(LAUGHTER_RUN, "").str.count_matches(r"\p{L}")
    return (rest >= LAUGHTER_REST).to_numpy()


def without_laughter(texts: pl.Series, exempt: np.ndarray) -> list[str]:
    """The texts with each laughter run of the `exempt` ones shortened to three characters (for the n-gram
    share: `ㅋ` x30 then a sentence would otherwise repeat its 10-grams 20 times)."""
    short = texts.str.replace_all(f"[{LAUGHTER}]{{4,}}", "ㅋㅋㅋ")
    return pl.select(pl.when(pl.Series(exempt)).then(short).otherwise(texts)).to_series().to_list()


def longest_runs(
    texts: list[str], min_repeats: int, min_repeats_jamo: int, laughter_ok: np.ndarray | None = None
) -> dict[int, tuple[str, int]]:
    """Texts holding a unit of 1-4 letters repeated at least `min_repeats` times in a row
    (`min_repeats_jamo` for bare jamo like ㅋ, ㅠ): {text index: (unit, repeats)}, the longest run each.
    Runs of laughter / tear characters are skipped in the texts where `laughter_ok` is true.

    All texts are joined into one UTF-32 array; for each unit length u, positions where a character equals
    the one u later form stretches, and a stretch of length L is a unit repeated (L + u) / u times."""
    found: dict[int, tuple[str, int]] = {}
    if not texts:
        return found
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    joined = "\x00".join(texts) + "\x00" * (MAX_UNIT + 1)
    cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    bmp = cp < 0x10000
    word = np.zeros(cp.size, dtype=bool)
    word[bmp] = _word_table()[cp[bmp]]
    jamo = _is_jamo(cp)
    size = cp.size - MAX_UNIT
    for unit in range(1, MAX_UNIT + 1):
        same = (cp[:size] == cp[unit : unit + size]) & word[:size] & word[unit : unit + size]
        # positions are sparse: stretches are found on them, not on a diff of the whole array
        positions = np.flatnonzero(same)
        if positions.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(positions) != 1)
        run_starts = positions[np.concatenate(([0], breaks + 1))]
        run_ends = positions[np.concatenate((breaks, [positions.size - 1]))] + 1
        repeats = (run_ends - run_starts + unit) // unit
        # jamo runs (ㅋㅋㅋ, ㅠㅠ) are ordinary chat; they need the higher count
        jamo_run = jamo[run_starts] & jamo[np.minimum(run_starts + unit - 1, cp.size - 1)]
        needed = np.where(jamo_run, min_repeats_jamo, min_repeats)
        for begin, count in zip(run_starts[repeats >= needed], repeats[repeats >= needed], strict=True):
            row = int(np.searchsorted(starts, begin, side="right") - 1)
            laughing = all(ch in LAUGHTER for ch in joined[begin : begin + unit])
            if laughing and laughter_ok is not None and laughter_ok[row]:
                continue
            if row not in found or count * unit > found[row][1] * len(found[row][0]):
                found[row] = (joined[begin : begin + unit], int(count))
    return found


def numeric_noise(text: str) -> int:
    """The digits of `text` that sit in ID-like numbers: at least ID_DIGITS digits, not a decimal, thousands
    groups, date or time, no operator or table bar beside it (spaces skipped), no unit letter right after."""
    noise = 0
    for m in NUMBER.finditer(text):
        token = m.group()
        digits = sum(ch.isdigit() for ch in token)
        if digits < ID_DIGITS or NUMERIC_FORM.fullmatch(token):
            continue
        before = text[: m.start()].rstrip()[-1:]
        after = text[m.end() :]
        if before in OPERATORS or after.lstrip()[:1] in OPERATORS or (after[:1].isalpha()):
            continue
        noise += digits
    return noise


def truncation(texts: pl.Series, min_chars: int) -> pl.Series:
    """Per answer: why it looks cut off (`unclosed '('`, `ends with ','`, `ends on a list number`,
    `no sentence end`), or null."""
    frame = pl.DataFrame({"t": texts.fill_null("").str.strip_chars()})
    t = pl.col("t")
    # the part after the last sentence end: a bracket opened there and never closed is open at the end
    tail = t.str.extract(f"([^{re.escape(SENTENCE_END)}]*)$", 1).fill_null("")
    last = t.str.slice(-1)
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    for opener, closers in BRACKETS:
        closed = tail.str.count_matches(f"[{re.escape(closers)}]")
        checks.append((tail.str.count_matches(re.escape(opener)) > closed, pl.lit(f"unclosed '{opener}'")))
    # straight quotes open and close alike: only an odd count over the whole answer says one is open, and not
    # when the curly ones are odd too ("…” : a straight quote closed by a curly one, or “…")
    straight_open = (t.str.count_matches('"') % 2) == 1
    curly_paired = (t.str.count_matches("[“”]") % 2) == 0
    checks.append((straight_open & curly_paired, pl.lit("unclosed '\"'")))
    checks.append((((t.str.count_matches("```") % 2) == 1), pl.lit("unclosed code block")))
    # a doubled mark is a Korean chat ending, not a cut: ";;" (embarrassment), ",," (trailing off)
    doubled = t.str.contains(r"(?:,,|;;|、、|，，)$")
    checks.append(
        (last.is_in([",", ":", ";", "、", "，"]) & ~doubled, pl.lit("ends with '") + last + pl.lit("'"))
    )
    # "... 합니다. 2." : the next list item was started and cut
    checks.append((t.str.contains(r"(?:[.!?。]\s+|\n\s*)\d{1,2}[.)]$"), pl.lit("ends on a list number")))
    last_line = t.str.extract(r"([^\n]*)$", 1).fill_null("")
    unended = (
        (t.str.len_chars() >= min_chars)
        # the last line is prose (a sentence ended inside it): a list item, a table row, a line of code or
        # a signature needs no full stop
        & last_line.str.contains(f"[{re.escape(SENTENCE_END)}]\\s")
        & ~last.is_in(list(SENTENCE_END + CLOSERS + KOREAN_ENDINGS))
        & last.str.contains(r"[\p{L}\p{N}]")
        & ~t.str.contains(r"(?:https?://|www\.)\S*$")  # ends with a link
    )
    checks.append((unended, pl.lit("no sentence end: '") + t.str.slice(-12) + pl.lit("'")))
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for condition, why in reversed(checks):
        reason = pl.when(condition & (t.str.len_chars() > 0)).then(why).otherwise(reason)
    return frame.select(reason.alias("truncated"))["truncated"]


# ----------------------------------------------------------------------------------------- the stage


def strip_trailing(
    frame: pl.DataFrame, fields: list[str], tokens: str
) -> tuple[pl.DataFrame, dict[int, list[str]]]:
    """The frame with special tokens removed from the end of its string fields, where that leaves some
    text and no other token; {row: ["chosen: trailing <|endoftext|> removed", ...]}."""
    notes: dict[int, list[str]] = {}
    if not tokens:
        return frame, notes
    trailing = f"(?:\\s*(?:{tokens}))+\\s*$"
    updates = []
    for f in fields:
        if frame.schema[f] != pl.String:  # conversations and lists: judged, never rewritten
            continue
        texts = frame[f]
        ends = texts.str.contains(f"(?:{tokens})\\s*$").fill_null(False)
        if not ends.any():
            continue
        rows = ends.arg_true()
        cut = texts.gather(rows).str.replace(trailing, "")
        fine = (~cut.str.contains(tokens)) & (cut.str.strip_chars().str.len_chars() > 0)
        rows, cut = rows.filter(fine), cut.filter(fine)
        if rows.len() == 0:
            continue
        for i, before, after in zip(rows.to_list(), texts.gather(rows).to_list(), cut.to_list(), strict=True):
            notes.setdefault(i, []).append(f"{f}: trailing {before[len(after) :].strip()} removed")
        updates.append(texts.scatter(rows, cut))
    if updates:
        # the text changed: content / content_hash are recomputed by the pipeline for the stages comparing them
        frame = frame.with_columns(updates).drop("content", "content_hash", strict=False)
    return frame, notes


def _check(cfg: QualitySettings) -> None:
    stray = [c for c in cfg.flag_only if c not in cfg.checks]
    if stray:
        raise UserError(f"curate.quality.flag_only: {stray[0]!r} is not in curate.quality.checks")


def _distinct(texts: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """(the distinct texts, for each row the index of its text among them)."""
    frame = pl.DataFrame({"t": texts})
    distinct = frame.unique("t", maintain_order=True).with_row_index("u")
    back = frame.join(distinct, on="t", how="left", maintain_order="left")["u"].to_numpy()
    return distinct["t"], back.astype(np.int64)


class _Findings:
    """The first finding per row, in check order (later findings never overwrite earlier ones)."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.evidence = np.full(n, None, dtype=object)
        self.score = np.full(n, np.nan)
        self.flag = np.zeros(n, dtype=bool)

    def add(
        self, rows: np.ndarray, reason: str, evidence: list[str], score: np.ndarray | None, flag: bool
    ) -> None:
        fresh = self.reason[rows] == None  # noqa: E711 (elementwise, object array)
        rows = rows[fresh]
        self.reason[rows] = reason
        self.evidence[rows] = np.array(evidence, dtype=object)[fresh]
        if score is not None:
            self.score[rows] = score[fresh]
        self.flag[rows] = flag


def run(frame: pl.DataFrame, cfg: QualitySettings, ctx: StageContext) -> StageOutput:
    """Drops (or, for `flag_only` checks, kept=true annotations) with quality:* reasons; per-field
    repetition and symbol_ratio signals; counts per reason in ctx.stats."""
    _check(cfg)
    n = frame.height
    ids = frame["sample_id"]
    fields = text_fields(frame, ctx.kind)
    stripped: dict[int, list[str]] = {}
    if "special_tokens" in cfg.checks and cfg.strip_trailing_tokens:
        frame, stripped = strip_trailing(frame, fields, _tokens(tuple(cfg.special_tokens), cfg.bar_tokens))
    answers = [f for f in ANSWER_FIELDS.get(ctx.kind, ()) if f in fields]
    every = _texts(frame, {f: field_text(f) for f in fields})
    answer = _texts(frame, {f: answer_text(f) for f in answers})
    found = _Findings(n)
    checks = set(cfg.checks)
    signals: list[pl.DataFrame] = []

    def flagged(name: str) -> bool:
        return name in cfg.flag_only

    if "special_tokens" in checks:
        pattern = _tokens(tuple(cfg.special_tokens), cfg.bar_tokens)
        compiled = re.compile(pattern) if pattern else None
        for f in fields if compiled else ():
            texts = every[f].fill_null("")
            rows = np.flatnonzero(texts.str.contains(pattern).to_numpy())
            evidence = []
            for i in rows:
                hit = compiled.search(texts[int(i)])  # type: ignore[union-attr]
                assert hit is not None
                evidence.append(f"{f}: {hit.group(0)} at {hit.start()}")
            found.add(rows, "quality:special_tokens", evidence, None, flagged("special_tokens"))

    measured = {f: every[f].fill_null("") for f in fields}
    present = {f: every[f].is_not_null().to_numpy() for f in fields}
    if "repetition" in checks:
        for f in fields:
            # measured once per distinct text: templated and duplicated rows (chat data, shared prompts of
            # multi-turn preference data) are common, and dedup has not run yet
            distinct, back = _distinct(measured[f])
            # laughter in a text that says something else too is chat, not a loop
            laughter_ok = says_more_than_laughter(distinct)
            ratio = dup_ngram_ratio(without_laughter(distinct, laughter_ok), cfg.ngram)[back]
            lines = dup_line_ratio(distinct)[back]
            runs = longest_runs(distinct.to_list(), cfg.max_repeats, cfg.max_repeats_jamo, laughter_ok)
            has_run = np.zeros(distinct.len(), dtype=bool)
            has_run[list(runs)] = True
            run_rows = np.flatnonzero(has_run[back])
            found.add(
                run_rows,
                "quality:repetition",
                [f"{f}: {runs[back[i]][0]!r} x{runs[back[i]][1]}" for i in run_rows.tolist()],
                np.array([float(runs[back[i]][1]) for i in run_rows.tolist()]),
                flagged("repetition"),
            )
            rows = np.flatnonzero(lines > cfg.max_dup_line_ratio)
            evidence = [
                f"{f}: repeated lines {lines[i]:.2f} of chars > {cfg.max_dup_line_ratio}" for i in rows
            ]
            found.add(rows, "quality:repetition", evidence, lines[rows], flagged("repetition"))
            rows = np.flatnonzero(ratio > cfg.max_dup_ngram_ratio)
            evidence = [
                f"{f}: repeated {cfg.ngram}-grams {ratio[i]:.2f} > {cfg.max_dup_ngram_ratio}" for i in rows
            ]
            found.add(rows, "quality:repetition", evidence, ratio[rows], flagged("repetition"))
            signals.append(_signal(ids, f, "repetition", ratio, present[f]))

    if "refusal" in checks:
        combined, patterns = _phrases(tuple(cfg.refusal_phrases) + tuple(cfg.extra_refusal_phrases))
        for f in answers if combined else ():
            texts = answer[f].fill_null("")
            rows = np.flatnonzero(texts.str.contains(combined).to_numpy())
            evidence = []
            for i in rows:
                text = texts[int(i)]
                hit = next(h for h in (p.search(text) for p in patterns) if h is not None)
                evidence.append(f"{f}: {hit.group(0)[:60]!r}")
            found.add(rows, "quality:refusal", evidence, None, flagged("refusal"))

    if "truncated" in checks:
        for f in answers:
            why = truncation(answer[f], cfg.truncation_min_chars)
            rows = np.flatnonzero(why.is_not_null().to_numpy())
            found.add(
                rows, "quality:truncated", [f"{f}: {why[int(i)]}" for i in rows], None, flagged("truncated")
            )

    if "symbol_ratio" in checks:
        for f in fields:
            texts = measured[f]
            stats = pl.DataFrame({"t": texts}).select(
                chars=pl.col("t").str.len_chars(),
                symbols=pl.col("t").str.count_matches(SYMBOL_PATTERN),
                digits=pl.col("t").str.count_matches(r"\p{N}"),
                url=pl.col("t")
                .str.extract_all(URL_PATTERN)
                .list.eval(pl.element().str.len_chars())
                .list.sum(),
            )
            chars = stats["chars"].to_numpy().astype(np.float64)
            judged = chars >= cfg.ratio_min_chars
            denominator = np.maximum(chars, 1)
            symbol = stats["symbols"].to_numpy() / denominator
            signals.append(_signal(ids, f, "symbol_ratio", symbol, present[f]))
            # every digit is an upper bound of the ID-like ones: only the texts above the limit on all their
            # digits are read again in Python (a few per thousand rows)
            digit = stats["digits"].to_numpy() / denominator
            for i in np.flatnonzero(judged & (digit > cfg.max_digit_ratio)).tolist():
                digit[i] = numeric_noise(texts[i]) / denominator[i]
            for name, values, limit in (
                ("symbol_ratio", symbol, cfg.max_symbol_ratio),
                ("digit_ratio", digit, cfg.max_digit_ratio),
                ("url_ratio", stats["url"].fill_null(0).to_numpy() / denominator, cfg.max_url_ratio),
            ):
                rows = np.flatnonzero(judged & (values > limit))
                evidence = [f"{f}: {name.replace('_', ' ')} {values[i]:.2f} > {limit}" for i in rows]
                found.add(rows, f"quality:{name}", evidence, values[rows], flagged("symbol_ratio"))

    # rows whose trailing tokens were removed and nothing else was found: kept, and the decision says so
    rows = np.array(sorted(stripped), dtype=np.int64)
    found.add(rows, "quality:special_tokens", ["; ".join(stripped[i]) for i in rows.tolist()], None, True)
    hit = np.flatnonzero(found.reason != None)  # noqa: E711
    out = decisions(
        ids.gather(hit),
        STAGE,
        (found.flag[hit]).tolist(),
        found.reason[hit].tolist(),
        score=[None if np.isnan(s) else float(s) for s in found.score[hit]],
        evidence=found.evidence[hit].tolist(),
    )
    counts = out.group_by("reason", "kept").len().sort("reason")
    ctx.stats[STAGE] = {
        "dropped": {r: c for r, k, c in counts.iter_rows() if not k},
        "flagged": {r: c for r, k, c in counts.iter_rows() if k},
        "fields": fields,
        "answer_fields": answers,
    }
    result = survivors(frame, out)
    frame_signals = pl.concat(signals) if signals else pl.DataFrame(schema=SIGNAL_SCHEMA)
    return StageOutput(result.frame, out, signals=frame_signals)


def _signal(ids: pl.Series, field: str, name: str, values: np.ndarray, present: np.ndarray) -> pl.DataFrame:
    """SIGNAL_SCHEMA rows for one measurement of one field (rows without the field are left out)."""
    return pl.DataFrame(
        {
            "sample_id": ids.filter(pl.Series(present)),
            "stage": STAGE,
            "field": field,
            "signal": name,
            "value": values[present],
        },
        schema=SIGNAL_SCHEMA,
    )
