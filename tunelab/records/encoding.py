"""Bytes to text: which encoding a file is in, decoded strictly, every undecodable run marked.

Order of evidence: a byte-order mark; else strict UTF-8 (a file that decodes as UTF-8 *is* UTF-8: no
detector overrules it); else a UTF-8 file with a few corrupt lines (most of its non-ASCII lines decode)
stays UTF-8 and only those lines go to quarantine; else charset-normalizer names the encoding (Korean
results are read as CP949, the superset of EUC-KR that Korean Excel and the public-data portal write).

Decoding is never lossy in silence: each undecodable run becomes one `MARK` character in the text and its
byte offset is kept, so the line holding it can be quarantined with "invalid cp949 at byte N".
"""

from __future__ import annotations

import bisect
import codecs
import re
import threading
from dataclasses import dataclass, field

import charset_normalizer

# a lone low surrogate: no strict decoder ever produces one, so it can only come from the handler below
MARK = "\udc00"
_ERROR_HANDLER = "tunelab-mark"
_state = threading.local()

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: FF FE 00 00 starts with FF FE
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# charset-normalizer's names for Korean text; CP949 decodes every EUC-KR file identically and more
_KOREAN = {"cp949", "euc_kr", "iso2022_kr", "johab"}


def _mark(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    _state.offsets.append(exc.start)
    return MARK, exc.end


codecs.register_error(_ERROR_HANDLER, _mark)


@dataclass
class Decoded:
    text: str
    encoding: str  # Python codec name, e.g. utf-8, cp949, utf-16-le
    notes: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # byte offset of each MARK in `text`, in order
    _positions: list[int] | None = None
    base: int = 0  # bytes before the decoded text (a BOM)

    def byte_offset(self, position: int) -> int:
        """Byte offset in the file of the MARK at text `position`."""
        if self._positions is None:
            self._positions = [m.start() for m in re.finditer(MARK, self.text)]
        index = bisect.bisect_left(self._positions, position)
        return self.base + self.offsets[min(index, len(self.offsets) - 1)]


def normalize_encoding(name: str) -> str:
    """Python's canonical codec name for `name` (ValueError when Python knows no such encoding)."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r} (e.g. utf-8, cp949, euc-kr, utf-16)") from None


def _decode_marked(data: bytes, encoding: str) -> tuple[str, list[int]]:
    _state.offsets = []
    try:
        text = data.decode(encoding, errors=_ERROR_HANDLER)
        return text, _state.offsets
    finally:
        _state.offsets = []


def _mostly_utf8(data: bytes) -> bool:
    """True when most lines with non-ASCII bytes are valid UTF-8: a UTF-8 file with a few corrupt lines,
    not a file in another encoding (CP949 Hangul is practically never valid UTF-8)."""
    good = bad = 0
    for line in data.split(b"\n"):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            good += 1
        except UnicodeDecodeError:
            bad += 1
    return good > bad


def _korean(data: bytes) -> str:
    """CP949 (what Korean Windows writes: all 11,172 syllables as two bytes), unless the file spells the
    syllables outside KS X 1001 as 8-byte jamo sequences (they start with the filler A4 D4): that is
    strict EUC-KR, and CP949 would show those syllables as loose jamo."""
    if b"\xa4\xd4" in data:
        try:
            data.decode("euc_kr")
            return "euc_kr"
        except UnicodeDecodeError:
            pass
    return "cp949"


def decode(data: bytes, forced: str | None = None) -> Decoded:
    """The text of `data`, in `forced` encoding or the detected one, undecodable runs marked."""
    if forced is not None:
        encoding = normalize_encoding(forced)
        base = 0
        for bom, name in _BOMS:  # a BOM of the forced encoding is not part of the text
            if data.startswith(bom) and (name == encoding or name.startswith(encoding + "-")):
                base = len(bom)
                encoding = name
                break
        text, offsets = _decode_marked(data[base:], encoding)
        return Decoded(text, encoding, [f"encoding {encoding} set by dataset.encoding"], offsets, base=base)
    for bom, name in _BOMS:
        if data.startswith(bom):
            text, offsets = _decode_marked(data[len(bom) :], name)
            notes = [] if name == "utf-8" else [f"encoding {name} (byte-order mark)"]
            return Decoded(text, name, notes, offsets, base=len(bom))
    # BOM-less UTF-16 is mostly valid UTF-8 byte-wise (ASCII with NULs): let the detector see it
    if b"\x00" not in data[:4096]:
        try:
            return Decoded(data.decode("utf-8"), "utf-8")
        except UnicodeDecodeError:
            if _mostly_utf8(data):
                text, offsets = _decode_marked(data, "utf-8")
                return Decoded(text, "utf-8", [], offsets)
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        text, offsets = _decode_marked(data, "utf-8")
        note = "encoding not recognised: read as UTF-8 (set dataset.encoding if that is wrong)"
        return Decoded(text, "utf-8", [note], offsets)
    encoding = normalize_encoding(best.encoding)
    if encoding in _KOREAN:
        encoding = _korean(data)
    text, offsets = _decode_marked(data, encoding)
    note = f"encoding {encoding} detected (not UTF-8); set dataset.encoding to force another"
    return Decoded(text, encoding, [note], offsets)
