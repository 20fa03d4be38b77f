"""Personal-information stage: Korean resident registration numbers, phone numbers, card and bank account
numbers, e-mail and IP addresses, in every text field (every turn of a conversation) and the `label`.

`action: mask` (default) writes `<PII:kind>` over each value in the curated text and keeps the row (one
kept=true decision per row and kind, reason `pii:<kind>`); `action: drop` drops the row (one kept=false
decision, reason = the first kind found in the order kr_rrn, card, account, phone, email, ip). Evidence is
the kind, the field and the character span (`response[12:26] pii:phone`), NEVER the value: it goes to
decisions.parquet, the warehouse and the report, which are read by people the data's subjects never agreed
to. Masking changes the text, so the stage drops `content` / `content_hash` (the pipeline recomputes them,
as after normalize). Signals: `pii_<kind>` = matches of that kind per row (only rows with a match).

What matches (precision first: a false mask damages a training text, and the counts on the shared datasets
are in docs/curate.md):
- kr_rrn: YYMMDD-GNNNNNC (dash optional) with a real month/day, gender digit 1-8 and the check digit
  (weights 2..9,2..5, mod 11). A 13-digit number with a wrong check digit, dates and phone numbers do not
  match. Numbers issued since October 2020 have no check digit: `rrn_checksum: false` also takes the dashed
  form with a valid date and gender digit (undashed 13-digit numbers still need the check digit).
- phone: mobile 010/011/016-019 (+82 10 ...) with or without dashes, dots or spaces; landline 02 / 0[3-6]x /
  070 only with separators (an undashed 0-leading 9-11-digit number is too often something else). A date
  (2023-01-15, 02.03.2021) never starts like that.
- card: 13-19 digits, plain or in groups of 4 (Amex 4-6-5) with one separator kind, issuer prefix 2-6 or 9
  (Korean domestic cards) and the Luhn check. An RRN-valid number is a kr_rrn, not a card.
- account: Korean bank account layouts (2-6 digit groups joined by dashes, 11-14 digits) only within 20
  characters after a keyword (계좌, 은행, 입금, 송금, 예금주, a bank's name, account) and never a phone or RRN.
- email: RFC-ish local@domain.tld, internationalised too (RFC 6531: `홍길동@회사.한국`, `user@도메인.kr`, the
  TLD ASCII, `한국` or punycode); example.com/org/net and other documentation domains are placeholders, not
  people (RFC 2606), and do not match.
- ip: IPv4 with octets 0-255 that Python's `ipaddress` calls global (private, loopback, documentation and
  netmask addresses are nobody's); not a version number: never with a fifth dotted number (1.2.3.4.5), not
  after `v`, `ver`, `version`, `버전`, `릴리스`, `release`, `빌드`, `build`, `패치`, `patch` (a particle or `:`
  between allowed: `버전은 1.2.3.4`) and not before `버전` / `version` (`1.2.3.4 버전으로`).

Every value may sit right before a Korean particle (`010-1234-5678로`, `kim@naver.com으로`, `8.8.8.8에서`),
and digits and separators are read in every form people type: full-width digits and signs
(`０１０－１２３４－５６７８`, `＠`, `．`) and the dashes of word processors and IMEs (`‐ ‑ ‒ – — ― − ﹣`), folded
one character to one before matching, so spans stay those of the original text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from tunelab.curate.common import SIGNAL_SCHEMA, StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import PII_KINDS, PiiSettings
from tunelab.curate.language import long_texts
from tunelab.records.fields import LIST_FIELDS, MESSAGE_FIELDS, dtype_of

STAGE = "pii"
# rows without one of these cannot hold a value of any kind: the Python scan runs on these rows only
CANDIDATE = r"\d[\d .\-)‐‑‒–—―−－﹣．]{5,}\d|[@＠]"
# one character to one (spans stay valid): full-width digits and signs, every dash an IME or word processor
# types, to the ASCII the patterns are written in
FOLD = str.maketrans(
    {**{chr(0xFF10 + d): str(d) for d in range(10)}, **dict.fromkeys(map(ord, "‐‑‒–—―−－﹣"), "-"),
     "＋": "+", "．": ".", "＠": "@", "（": "(", "）": ")", "\u3000": " "}
)  # fmt: skip
FOLDABLE = re.compile("[" + re.escape("".join(chr(c) for c in FOLD)) + "]")

_DATE = r"(?P<yy>\d{2})(?P<mm>0[1-9]|1[0-2])(?P<dd>0[1-9]|[12]\d|3[01])"
RRN = re.compile(rf"(?<![\d\-]){_DATE}(?P<sep>[- ]?)(?P<g>[1-8])(?P<rest>\d{{6}})(?![\d\-])")
MOBILE = re.compile(r"(?<![\d\-+.])(?:\+82[- ]?|0)1[016-9](?P<s>[-. ]?)\d{3,4}(?P=s)\d{4}(?![\d\-])")
LANDLINE = re.compile(
    r"(?<![\d\-+.])(?:\(0(?:2|[3-6][1-5]|70)\)\s?|0(?:2|[3-6][1-5]|70)[-. ])\d{3,4}[-. ]\d{4}(?![\d\-])"
)
CARD = re.compile(
    r"(?<![\d\-])(?:[2-69]\d{3}(?P<s>[- ]?)\d{4}(?P=s)\d{4}(?P=s)\d{1,7}|3[47]\d{2}(?P<a>[- ]?)\d{6}(?P=a)\d{5})"
    r"(?![\d\-])"
)
ACCOUNT = re.compile(r"(?<![\d\-])\d{2,6}-\d{2,6}-\d{2,7}(?:-\d{1,3})?(?![\d\-])")
ACCOUNT_KEYWORD = re.compile(
    r"계좌|은행|입금|송금|예금주|농협|국민|신한|우리|하나|기업|카카오뱅크|케이뱅크|토스뱅크|새마을|우체국|수협|"
    r"account|bank",
    re.IGNORECASE,
)
KEYWORD_WINDOW = 20
# an ASCII local part may follow Korean text with no space (이메일은abc@gmail.com: the mask starts at a), an
# internationalised one (홍길동@회사.한국, RFC 6531) has no ASCII letter and starts a word; labels in any
# script; the TLD ASCII, 한국 or punycode, and what follows it no more of the domain (a Korean particle may:
# kim@naver.com으로)
EMAIL = re.compile(
    r"(?:(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}|(?<![\w.+-])(?:[^\W_A-Za-z]|[.%+-]){1,64})"
    r"@(?:[\w-]{1,63}\.)+(?:[A-Za-z]{2,24}|한국|xn--[A-Za-z0-9-]{1,59})(?![A-Za-z0-9-]|\.[\w-])"
)
PLACEHOLDER_DOMAINS = re.compile(
    r"@(?:[\w-]+\.)*(?:example\.(?:com|org|net)|example|test|invalid|localhost)$", re.I
)
# a Korean particle may follow (8.8.8.8에서); a fifth dotted number may not (1.2.3.4.5 is a version)
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.[0-9A-Za-z])")
VERSION_BEFORE = re.compile(
    r"(?:\bv|\bver(?:sion)?\.?|버전|릴리[스즈]|\brelease|빌드|\bbuild|패치|\bpatch)(?:은|는|이|가|을|를)?[\s:=]*$",
    re.IGNORECASE,
)
VERSION_AFTER = re.compile(r"[\s)]*(?:버전|version|릴리[스즈]|빌드|build)", re.IGNORECASE)


@dataclass(frozen=True)
class Match:
    kind: str
    start: int
    end: int


def rrn_check_digit(digits: str) -> int:
    """The check digit of the first 12 digits of a resident registration number."""
    total = sum(int(d) * w for d, w in zip(digits[:12], (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5), strict=True))
    return (11 - total % 11) % 10


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _rrns(text: str, checksum: bool) -> Iterator[Match]:
    for m in RRN.finditer(text):
        digits = m["yy"] + m["mm"] + m["dd"] + m["g"] + m["rest"]
        if rrn_check_digit(digits) == int(digits[12]) or (not checksum and m["sep"] == "-"):
            yield Match("kr_rrn", m.start(), m.end())


def _cards(text: str) -> Iterator[Match]:
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            yield Match("card", m.start(), m.end())


def _accounts(text: str) -> Iterator[Match]:
    for m in ACCOUNT.finditer(text):
        digits = m.group().count("-")
        n = len(m.group()) - digits
        if 11 <= n <= 14 and ACCOUNT_KEYWORD.search(text, max(0, m.start() - KEYWORD_WINDOW), m.start()):
            yield Match("account", m.start(), m.end())


def _phones(text: str) -> Iterator[Match]:
    for pattern in (MOBILE, LANDLINE):
        for m in pattern.finditer(text):
            yield Match("phone", m.start(), m.end())


def _emails(text: str) -> Iterator[Match]:
    for m in EMAIL.finditer(text):
        if not PLACEHOLDER_DOMAINS.search(m.group()):
            yield Match("email", m.start(), m.end())


def _ips(text: str) -> Iterator[Match]:
    for m in IPV4.finditer(text):
        try:
            address = ipaddress.IPv4Address(m.group())
        except ValueError:  # an octet above 255, or a leading zero
            continue
        version = VERSION_BEFORE.search(text, max(0, m.start() - 14), m.start()) or VERSION_AFTER.match(
            text, m.end()
        )
        if address.is_global and not version:
            yield Match("ip", m.start(), m.end())


FINDERS = {
    "kr_rrn": _rrns,
    "card": _cards,
    "account": _accounts,
    "phone": _phones,
    "email": _emails,
    "ip": _ips,
}


def find(text: str, kinds: tuple[str, ...] = PII_KINDS, rrn_checksum: bool = True) -> list[Match]:
    """Every value of `kinds` in `text`, by start; where two overlap the kind earlier in PII_KINDS wins
    (an RRN-valid number is not also a card, an account number not also a phone). Full-width digits and
    dash variants are folded first (FOLD: one character to one, so spans are the original's)."""
    if FOLDABLE.search(text):  # str.translate costs a dict lookup a character; most texts need none
        text = text.translate(FOLD)
    taken: list[Match] = []
    for kind in PII_KINDS:
        if kind not in kinds:
            continue
        found = _rrns(text, rrn_checksum) if kind == "kr_rrn" else FINDERS[kind](text)
        for match in found:
            if all(match.end <= t.start or match.start >= t.end for t in taken):
                taken.append(match)
    return sorted(taken, key=lambda m: m.start)


def mask(text: str, matches: list[Match]) -> str:
    """`text` with each match replaced by <PII:kind> (matches do not overlap)."""
    out, last = [], 0
    for m in sorted(matches, key=lambda m: m.start):
        out.append(text[last : m.start])
        out.append(f"<PII:{m.kind}>")
        last = m.end
    out.append(text[last:])
    return "".join(out)


def masked_quarantine(quarantine: pl.DataFrame, cfg: PiiSettings) -> pl.DataFrame:
    """The quarantine with personal information masked in its raw lines and error messages: a malformed line
    is not a row the stage saw, yet it reaches quarantine.parquet, the warehouse and the exit-3 message."""
    kinds = tuple(cfg.kinds)

    def clean(text: str) -> str:
        return mask(text, find(text, kinds, cfg.rrn_checksum)) if re.search(CANDIDATE, text) else text

    columns = [c for c in ("raw", "error") if c in quarantine.columns and quarantine.schema[c] == pl.String]
    return quarantine.with_columns(
        pl.col(c).map_elements(clean, return_dtype=pl.String, skip_nulls=True) for c in columns
    )


# the label is text a row carries into train/val, the warehouse and the balance/split reports: a phone number
# written as a label ("연락처: 010-…" as a class) is masked or dropped like one in the prompt
LABEL_ORDER = 1_000_000_000  # after every canonical field in long_texts' order


def with_label(texts: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """long_texts(frame) plus one line per row for a string `label`."""
    if "label" not in frame.columns or frame.schema["label"] != pl.String:
        return texts
    labels = frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
        pl.lit(LABEL_ORDER, dtype=pl.Int32).alias("order"),
        pl.lit("label").alias("field"),
        pl.lit("label").alias("base"),
        pl.lit(None, dtype=pl.String).alias("role"),
        pl.col("label").alias("text"),
    ).filter(pl.col("text").is_not_null())
    return pl.concat([texts, labels]).sort("row", "order")


def scan(frame: pl.DataFrame, kind: str, cfg: PiiSettings) -> tuple[pl.DataFrame, list[list[Match]]]:
    """(the candidate texts of long_texts and the label with a match, their matches)."""
    texts = with_label(long_texts(frame, kind), frame)
    candidates = texts.filter(pl.col("text").str.contains(CANDIDATE))
    kinds = tuple(cfg.kinds)
    all_matches = [find(text, kinds, cfg.rrn_checksum) for text in candidates["text"].to_list()]
    hit = pl.Series([bool(m) for m in all_matches], dtype=pl.Boolean)
    return candidates.filter(hit), [m for m in all_matches if m]


def _masked_frame(frame: pl.DataFrame, hits: pl.DataFrame, matches: list[list[Match]]) -> pl.DataFrame:
    """`frame` with every matched value masked, field by field (turns and list items in place)."""
    by_field: dict[str, dict[int, dict[int | None, str]]] = {}
    for (row, field, base, text), found in zip(
        hits.select("row", "field", "base", "text").iter_rows(), matches, strict=True
    ):
        index = int(field[field.index("[") + 1 : -1]) if field.endswith("]") else None
        by_field.setdefault(base, {}).setdefault(row, {})[index] = mask(text, found)
    columns = []
    for base, rows in by_field.items():
        positions = sorted(rows)
        if base in MESSAGE_FIELDS or base in LIST_FIELDS:
            # polars cannot scatter into a list column: the column is rebuilt (only when something is masked)
            values = frame[base].to_list()
            for row in positions:
                for index, text in rows[row].items():
                    turn = values[row][index]
                    values[row][index] = (
                        {"role": turn["role"], "content": text} if base in MESSAGE_FIELDS else text
                    )
            columns.append(pl.Series(base, values, dtype=dtype_of(base)))
        else:
            new = pl.Series(base, [rows[row][None] for row in positions], dtype=pl.String)
            columns.append(frame[base].scatter(positions, new))
    return frame.with_columns(columns)


def run(frame: pl.DataFrame, cfg: PiiSettings, ctx: StageContext) -> StageOutput:
    """Mask (default) or drop rows holding personal information; evidence = kind, field and span only."""
    hits, matches = scan(frame, ctx.kind, cfg)
    lines = [
        (row, f"{field}[{m.start}:{m.end}]", m.kind)
        for (row, field), found in zip(hits.select("row", "field").iter_rows(), matches, strict=True)
        for m in found
    ]
    found = pl.DataFrame(
        lines, schema={"row": pl.UInt32, "where": pl.String, "kind": pl.String}, orient="row"
    )
    rank = {kind: i for i, kind in enumerate(PII_KINDS)}
    found = found.with_columns(rank=pl.col("kind").replace_strict(rank, return_dtype=pl.Int32))
    sample_ids = frame["sample_id"]
    per_kind = found.group_by("row", "kind", maintain_order=True).agg(
        n=pl.len(), rank=pl.col("rank").first(), where=pl.col("where").head(5).str.join(", ")
    )
    counts = found.group_by("kind").agg(n=pl.len())
    ctx.stats[STAGE] = {
        "action": cfg.action,
        "matches": {k: int(n) for k, n in counts.sort("kind").iter_rows()},
        "rows": {k: int(n) for k, n in per_kind.group_by("kind").agg(n=pl.len()).sort("kind").iter_rows()},
    }
    signal_frame = per_kind.select(
        sample_ids.gather(per_kind["row"]).alias("sample_id"),
        pl.lit(STAGE).alias("stage"),
        pl.lit(None, dtype=pl.String).alias("field"),
        pl.concat_str(pl.lit("pii_"), pl.col("kind")).alias("signal"),
        pl.col("n").cast(pl.Float64).alias("value"),
    ).cast(SIGNAL_SCHEMA)  # type: ignore[arg-type]
    evidence = pl.format("pii:{} x{} at {}", pl.col("kind"), pl.col("n"), pl.col("where"))
    if cfg.action == "drop":
        per_row = (
            per_kind.with_columns(evidence=evidence)
            .sort("row", "rank")
            .group_by("row", maintain_order=True)
            .agg(kind=pl.col("kind").first(), n=pl.col("n").sum(), evidence=pl.col("evidence").str.join("; "))
        )
        out = decisions(
            sample_ids.gather(per_row["row"]),
            STAGE,
            False,
            "pii:" + per_row["kind"],
            score=per_row["n"].cast(pl.Float64),
            evidence=per_row["evidence"],
        )
        ctx.stats[STAGE]["dropped"] = out.height
        result = survivors(frame, out)
        return StageOutput(result.frame, result.decisions, signals=signal_frame)
    ordered = per_kind.sort("row", "rank")
    out = decisions(
        sample_ids.gather(ordered["row"]),
        STAGE,
        True,
        "pii:" + ordered["kind"],
        score=ordered["n"].cast(pl.Float64),
        evidence=ordered.select(pl.concat_str(pl.lit("masked "), evidence))["literal"],
    )
    ctx.stats[STAGE]["masked_rows"] = int(per_kind["row"].n_unique())
    if hits.height == 0:
        return StageOutput(frame, out, signals=signal_frame)
    masked = _masked_frame(frame, hits, matches).drop("content", "content_hash", strict=False)
    return StageOutput(masked, out, signals=signal_frame)


def masked(frame: pl.DataFrame, kind: str, cfg: PiiSettings) -> pl.DataFrame:
    """`frame` with every value of `cfg.kinds` masked, whatever `cfg.action` says: the text the warehouse
    keeps of every read row (dropped rows included), so a value never reaches it."""
    hits, matches = scan(frame, kind, cfg)
    if hits.height == 0:
        return frame
    return _masked_frame(frame, hits, matches).drop("content", "content_hash", strict=False)
