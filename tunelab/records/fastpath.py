"""The fast path for JSON lines: polars parses the records, the adapter runs once per record shape, and only
lines polars cannot take go through the per-record reader (a hybrid: a few bad lines no longer send the whole
file to the slow path).

Taken only when it gives exactly what the per-record path would (loader.py falls back to that path when any
check fails, so the result never depends on which path ran):

- numpy finds the line ends in the bytes (LF or CRLF; a CR-only end falls back) while polars parses the
  whole file; a line that does not start with `{` and end with `}` (a truncated line, a blank line, a list,
  padding ...) or holds a surrogate escape (polars turns a lone `\\ud800` into text, orjson refuses it) is
  read by the per-record reader's own code: blank lines are skipped, bad ones become quarantine rows with
  their error, a good object joins the lines polars parses (a line that is not UTF-8 falls back: the
  per-record path decides the whole file's encoding); when any line was quarantined, polars parses the runs
  of lines between them; an invalid line that does look like an object makes polars fail, and is then found
  chunk by chunk;
- polars parsed every kept line into one row with no null anywhere (a missing key and an explicit null look
  the same in a frame), and the kept lines hold exactly rows x columns keys (`":` counted in the bytes,
  less the lines left out: polars infers the schema from the first rows and drops keys it did not see
  there, and keeps the first of two duplicate keys where orjson keeps the last);
- a column polars typed as a number or a boolean holds that JSON type on every line (polars casts 1.5 to 1 in
  a column it inferred as integers), and a text column the adapter, the label or the id reads holds JSON
  strings on every line when any value looks like a number (polars writes a number among strings as text);
- the adapter's output for each shape (which text columns are blank: alpaca's `input` changes the prompt) is
  a concatenation of source columns and fixed text, found by calling the real adapter with marker values,
  then checked against the real adapter on a sample of each shape's rows (hh-rlhf's split on
  "Assistant:", say, shows up there).
"""

from __future__ import annotations

import functools
import io
import json
import mmap
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from tunelab.records.adapters import adapt
from tunelab.records.config import DatasetConfig
from tunelab.records.encoding import Decoded
from tunelab.records.fields import CANONICAL_FIELDS, LIST_FIELDS, fits, frame_schema, type_name
from tunelab.records.formats import _Record, jsonl_records

_MARK = re.compile("\ue000(\\d+)\ue001")
_LOOKS_TYPED = r"^\s*(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|[\[{].*)\s*$"
_SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F]"
SAMPLE_PER_SHAPE = 256
_PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())  # none above U+3000
# blank as Python's str.strip sees it; a regex test, not strip_chars, which copies every value
# (measured: the shape bits went from ~0.05 s to ~0.01 s per 200k rows)
_BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in _PY_WHITESPACE) + "]*$"
_WHITESPACE_LEADS = np.array(sorted({c.encode("utf-8")[0] for c in _PY_WHITESPACE}), dtype=np.uint8)
# first bytes of what polars writes for a non-text JSON value: a number, true/false/null, a list, an object
_TYPED_LEADS = np.frombuffer(b"-0123456789tfn[{", dtype=np.uint8)
_SHAPE, _ROW, _ROWS = "\ue000shape", "\ue000row", "\ue000rows"  # names no source column has
_CHUNK_LINES = 8192  # when polars refuses the kept lines: read in chunks, a failing chunk line by line
_CHUNK = 1 << 20  # bytes per vectorised step: four tests while it is in cache
_JSON_TYPES = {
    "int": r"-?\d+",
    "float": r"-?\d+(\.\d+([eE][+-]?\d+)?|[eE][+-]?\d+)",
    "bool": r"(true|false)",
    "str": r'"',
}


@dataclass
class FastRead:
    """A JSON-lines file as polars read it: the records it parsed, and what the per-record reader made of the
    lines polars was not given."""

    frame: pl.DataFrame  # one row per record parsed by polars, in line order
    keep: np.ndarray  # per line: parsed by polars
    data: Path | bytes | bytearray  # what polars read (the bad lines blanked out)
    quarantine: list[_Record] = dataclass_field(default_factory=list)  # bad lines, in line order

    @property
    def read(self) -> int:
        return self.frame.height + len(self.quarantine)

    @property
    def rows(self) -> pl.Series | None:
        """Each row's 0-based line index; None when row i is line i."""
        if bool(self.keep.all()):
            return None
        return pl.Series(np.flatnonzero(self.keep), dtype=pl.Int64)

    @functools.cached_property
    def lines(self) -> pl.Series | None:
        """The JSON text of each row (read on demand: only the typed-value checks need it)."""
        try:
            frame = pl.read_csv(
                bytes(self.data) if isinstance(self.data, bytearray) else self.data,
                has_header=False,
                separator="\x00",  # JSON text never holds a raw NUL
                quote_char=None,
                new_columns=["line"],
                schema={"line": pl.String},
            )
        except Exception:
            return None
        lines = frame.to_series()
        if lines.len() != len(self.keep):
            return None
        return lines if bool(self.keep.all()) else lines.filter(pl.Series(self.keep))


def _line_record(text: str, index: int) -> _Record | None:
    """The per-record reader's view of one line (formats.jsonl_records itself): None for a blank line."""
    records = list(jsonl_records(Decoded(text, "utf-8")))
    if not records:
        return None
    record = records[0]
    record.row, record.line = index, index + 1
    return record


def _scan(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """(start, end without the line end, doubt) per line and the number of key ends in the file, in
    cache-sized steps (every test reads a step while it is in cache; no temporary is as large as the file):
    positions of line ends, of CRs and backslashes only where a step has any, and a count of `":`. The
    previous whole-file mask scan took ~0.36 s per 200k rows; this one ~0.3 s per 1M on a loaded machine.
    None for a CR-only line end (the per-record reader splits there, polars does not)."""
    n = len(a)
    found: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    quote_colons = 0
    for start in range(0, n, _CHUNK):
        c = a[start : start + _CHUNK + 1]  # one byte past the step: a `":` starting at its last byte
        body = c[:_CHUNK]
        for out, byte in zip(found, (10, 13, 92), strict=True):
            hits = body == byte
            if byte == 10 or np.count_nonzero(hits):
                out.append(np.flatnonzero(hits) + start)
        quote_colons += int(np.count_nonzero((c[:-1] == 34) & (c[1:] == 58)))
    newlines, crs, backslashes = (np.concatenate(f) if f else np.zeros(0, dtype=np.int64) for f in found)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [n]))
    if starts[-1] == n:  # the file ends with a line end: no empty last line
        starts, ends = starts[:-1], ends[:-1]
    if len(crs):
        if crs[-1] == n - 1 or not bool((a[crs + 1] == 10).all()):
            return None
        ends = ends - ((ends > starts) & (a[np.maximum(ends - 1, 0)] == 13))
    filled = ends > starts
    doubt = ~(filled & (a[np.minimum(starts, n - 1)] == 123) & (a[np.maximum(ends - 1, 0)] == 125))
    # a key ends with an unescaped `":` (a quote inside a string is escaped; a key ending in an escaped
    # backslash counts short and falls back)
    keys = quote_colons
    if len(backslashes):
        b = backslashes[backslashes + 2 < n]
        keys -= int(np.count_nonzero((a[b + 1] == 34) & (a[b + 2] == 58)))
        b = b[b + 3 < n]
        # a surrogate escape (\uD800-\uDFFF): polars turns a lone one into text where orjson refuses it,
        # so its line goes to the per-record reader (a pair passes there and comes back)
        high = np.frombuffer(b"89abcdefABCDEF", np.uint8)
        hit = (a[b + 1] == 117) & ((a[b + 2] | 32) == 100) & np.isin(a[b + 3], high)
        doubt[np.searchsorted(starts, b[hit], side="right") - 1] = True
    return starts, ends, doubt, keys


def _keys(line: bytes) -> int:
    return line.count(b'":') - line.count(b'\\":')


def read_jsonl(source: Path | bytes, data: bytes | mmap.mmap) -> FastRead | None:
    """The records of a JSON-lines file (`source`: its path, or its bytes when it was compressed; `data`: its
    bytes or a map of them) when polars reads them exactly as the per-record reader would, the lines it is
    not given read by that reader; None to send the whole file to the per-record path."""
    # a BOM, a blank first line, a JSON array, a NUL (the encoding detector's cue): the per-record path
    if data[:1] != b"{" or b"\x00" in data[:4096]:
        return None
    # polars parses the whole file in its threads while numpy scans the bytes (both without the GIL); on a
    # file with a bad line polars fails within a few ms (measured 0.02-0.03 s per 200k rows) and the lines
    # it can read are parsed again with the bad ones blanked out
    with ThreadPoolExecutor(max_workers=1) as pool:
        parsing = pool.submit(_parse, source)
        scanned = _scan(np.frombuffer(data, dtype=np.uint8))
        whole = parsing.result()
    if scanned is None:
        return None
    starts, ends, doubt, keys = scanned
    keep = ~doubt
    quarantine: list[_Record] = []
    for index in np.flatnonzero(doubt).tolist():
        try:
            text = bytes(data[starts[index] : ends[index]]).decode("utf-8")
        except UnicodeDecodeError:  # the per-record path decides the encoding of the whole file
            return None
        record = _line_record(text, index)
        if record is None:
            continue  # blank: not a record (the per-record reader skips it too)
        if record.error is not None:
            quarantine.append(record)
        else:
            keep[index] = True  # a good object after all (padding, a surrogate pair): polars reads it
    if not keep[0]:  # line 1 is what sniffing the format reads: the per-record path decides
        return None
    read: Path | bytes | bytearray = source
    frame = whole  # the lines left out are all blank (polars skips them too) when none is quarantined
    if quarantine:
        frame = _parse(_segments(data, starts, ends, keep))
    if frame is None:
        found = _locate(data, starts, ends, keep, quarantine)
        if found is None:
            return None
        read, frame = found
    # read_ndjson gives ~1,200 chunks per 1M rows; one chunk makes the canonical columns ~0.2 s faster at 1M
    # (the rechunk copies only the 16-byte string views: ~0.02 s)
    frame = frame.rechunk()
    if frame.height != int(keep.sum()) or frame.width == 0:
        return None
    if sum(frame.null_count().row(0)) != 0:
        return None
    for index in np.flatnonzero(~keep).tolist():  # the lines left out: few, counted one by one
        keys -= _keys(bytes(data[starts[index] : ends[index]]))
    if keys != frame.height * frame.width:
        return None
    quarantine.sort(key=lambda r: r.row)
    fast = FastRead(frame, keep, read, quarantine)
    for column, dtype in frame.schema.items():
        kind = (
            "int"
            if dtype.is_integer()
            else "float"
            if dtype.is_float()
            else "bool"
            if dtype == pl.Boolean
            else None
        )
        if kind is not None and not holds(fast.lines, column, kind):
            return None
    return fast


def _segments(
    data: bytes | mmap.mmap, starts: np.ndarray, ends: np.ndarray, keep: np.ndarray
) -> list[io.BytesIO]:
    """The runs of lines between those polars is not to read, as sources for one read_ndjson call: rows stay
    the kept lines in order, and the bytes are copied once (measured at 1M rows: 0.84-1.18 s against
    1.57-1.91 s for one copy with the bad lines blanked out, which polars needs as bytes: a second copy)."""
    pieces = []
    start = 0
    for index in np.flatnonzero(~keep).tolist():
        if starts[index] > start:
            pieces.append(data[start : int(starts[index])])
        start = int(ends[index])
    if start < len(data):
        pieces.append(data[start:])
    # a run of line ends alone would be an empty source, which polars refuses
    return [io.BytesIO(piece) for piece in pieces if len(piece) > 4096 or piece.strip()]


def _parse(read: Path | bytes | bytearray | list[io.BytesIO]) -> pl.DataFrame | None:
    try:
        return pl.read_ndjson(bytes(read) if isinstance(read, bytearray) else read)
    except Exception:  # a bad line that looks like an object, or a type polars cannot unify
        return None


def _locate(
    data: bytes | mmap.mmap,
    starts: np.ndarray,
    ends: np.ndarray,
    keep: np.ndarray,
    quarantine: list[_Record],
) -> tuple[bytearray, pl.DataFrame] | None:
    """Polars refused the kept lines: chunks of lines find the ones it refuses, the per-record reader
    quarantines those that are bad; a good record polars cannot read sends the file to the per-record path."""
    buffer = bytearray(data)
    for index in np.flatnonzero(~keep).tolist():  # polars skips blank lines: rows stay the kept lines
        buffer[starts[index] : ends[index]] = b" " * int(ends[index] - starts[index])
    kept = np.flatnonzero(keep)
    dropped = False
    for first in range(0, len(kept), _CHUNK_LINES):
        chunk = kept[first : first + _CHUNK_LINES]
        if _parse(bytes(buffer[starts[chunk[0]] : ends[chunk[-1]]])) is not None:
            continue
        for index in chunk.tolist():
            line = bytes(buffer[starts[index] : ends[index]])
            if _parse(line) is not None:
                continue
            try:
                record = _line_record(line.decode("utf-8"), index)
            except UnicodeDecodeError:  # the per-record path decides the encoding of the whole file
                return None
            if record is None or record.error is None:
                return None
            quarantine.append(record)
            keep[index] = False
            buffer[starts[index] : ends[index]] = b" " * (ends[index] - starts[index])
            dropped = True
    if not dropped or not keep[0]:
        return None
    frame = _parse(buffer)
    return None if frame is None else (buffer, frame)


def _key_pattern(column: str) -> str:
    forms = {json.dumps(column, ensure_ascii=False), json.dumps(column)}
    return "(" + "|".join(re.escape(form) for form in sorted(forms)) + ")"


def holds(lines: pl.Series | None, column: str, kind: str) -> bool:
    """Every line gives `column` a JSON value of `kind` (int, float, bool, str): polars' types and text can
    hide the source's (1.5 read as 1 in an integer column, 5 as "5" among strings)."""
    if lines is None:
        return False
    pattern = _key_pattern(column) + r"\s*:\s*" + _JSON_TYPES[kind]
    if kind in ("int", "float"):
        pattern += r"\s*[,}]"
    return lines.str.contains(pattern).sum() == lines.len()


def coerced(frame: pl.DataFrame, lines: Callable[[], pl.Series | None], column: str) -> bool:
    """True when polars may have turned non-text JSON values of `column` into text."""
    if not looks_typed(frame[column]):
        return False
    return not holds(lines(), column, "str")


def _marker(index: int) -> str:
    return f"\ue000{index}\ue001"


def _template(value: Any, columns: list[str]) -> list[str | int] | None:
    """The adapter's output as parts: text, or the index of a source column; None when it is not such a
    concatenation (a list, a number, a marker cut in two ...)."""
    if not isinstance(value, str):
        return None
    parts: list[str | int] = []
    last = 0
    for match in _MARK.finditer(value):
        if match.start() > last:
            parts.append(value[last : match.start()])
        index = int(match.group(1))
        if index >= len(columns):
            return None
        parts.append(index)
        last = match.end()
    tail = value[last:]
    if tail:
        parts.append(tail)
    text = "".join(p for p in parts if isinstance(p, str))
    if "\ue000" in text or "\ue001" in text:
        return None
    return parts


def _expr(parts: list[str | int], columns: list[str]) -> pl.Expr:
    pieces = [pl.lit(p) if isinstance(p, str) else pl.col(columns[p]) for p in parts]
    if not pieces:
        return pl.lit("")
    return pieces[0] if len(pieces) == 1 else pl.concat_str(pieces)


def fast_canonical(
    frame: pl.DataFrame, lines: Callable[[], pl.Series | None], cfg: DatasetConfig, fields: dict[str, str]
) -> pl.DataFrame | None:
    """Canonical columns (the per-record path's, less label and ids) for `frame`, or None to fall back;
    `lines()` gives the rows' JSON text (read only when a value looks typed)."""
    kind = cfg.kind
    columns = frame.columns
    text_columns = [c for c, dtype in frame.schema.items() if dtype == pl.String]
    scalar = all(dtype == pl.String or dtype.is_numeric() or dtype == pl.Boolean for dtype in frame.dtypes)
    if not scalar:  # lists and objects (messages, contexts): adapters read them record by record
        return None

    if len(text_columns) > 62:
        return None
    # which text columns are blank decides some adapters (alpaca's input): blank as Python's str.strip sees
    # it, one bit per text column; rows with the same bits are one shape
    bits = [pl.Series(_blank(frame[c]).astype(np.int64) << i) for i, c in enumerate(text_columns)]
    shape = pl.sum_horizontal(bits) if bits else pl.lit(0, dtype=pl.Int64)
    keyed = frame.with_columns(shape.alias(_SHAPE))
    groups = (
        keyed.select(_SHAPE)
        .with_row_index(_ROW)
        .group_by(_SHAPE, maintain_order=True)
        .agg(pl.col(_ROW).alias(_ROWS))
    )
    used: set[str] = set()
    field_exprs: dict[str, list[tuple[pl.Expr, pl.Expr]]] = {f: [] for f in CANONICAL_FIELDS[kind]}
    field_parts: dict[str, set[tuple[str | int, ...]]] = {f: set() for f in CANONICAL_FIELDS[kind]}
    type_exprs: list[tuple[pl.Expr, str]] = []
    samples: list[list[int]] = []
    for group in groups.iter_rows(named=True):
        rows, key = group[_ROWS], group[_SHAPE]
        first = frame.row(rows[0], named=True)
        probe: dict[str, Any] = {}
        for index, column in enumerate(columns):
            if column in text_columns:
                probe[column] = "" if key >> text_columns.index(column) & 1 else _marker(index)
            else:  # a number or a boolean (checked above): as it is; templates never use it
                probe[column] = first[column]
        try:
            out = adapt(probe, kind, fields)
        except Exception:
            return None
        condition = pl.col(_SHAPE) == key
        types: dict[str, str] = {}
        for field in CANONICAL_FIELDS[kind]:
            value = out.get(field)
            if value is None:
                continue
            parts = _template(value, columns)
            if parts is None:
                return None
            for part in parts:
                if isinstance(part, int):
                    if columns[part] not in text_columns:
                        return None
                    used.add(columns[part])
            expr = _expr(parts, columns)
            if field in LIST_FIELDS:
                expr = pl.concat_list([expr])
                types[field] = "list[str]"
            else:
                types[field] = "str"
            field_exprs[field].append((condition, expr))
            field_parts[field].add(tuple(parts))
        type_exprs.append((condition, json.dumps(types, ensure_ascii=False)))
        step = max(1, len(rows) // SAMPLE_PER_SHAPE)
        samples.append(sorted({*rows[::step], rows[-1]}))
    schema = frame_schema(kind)
    selected = []
    shapes = len(type_exprs)
    # a field every shape builds the same way is one expression, not a when/then chain that evaluates each
    # branch on every row (measured: ~0.1 s less per 1M alpaca rows, whose response is the same everywhere)
    for field, branches in field_exprs.items():
        if len(branches) == shapes and len(field_parts[field]) == 1:
            value = branches[0][1]
        else:
            value = _when(branches, pl.lit(None, dtype=schema[field]))
        selected.append(value.cast(schema[field]).alias(field))
    if len({t for _, t in type_exprs}) == 1:
        selected.append(pl.lit(type_exprs[0][1], dtype=pl.String).alias("field_types"))
    else:
        selected.append(
            _when([(c, pl.lit(t)) for c, t in type_exprs], pl.lit(None, dtype=pl.String)).alias("field_types")
        )
    # with_columns, not select: fixed text alone must still give one value per row
    canonical = keyed.with_columns(selected).select([*CANONICAL_FIELDS[kind], "field_types"])
    if not all(_agrees(frame, canonical, rows, kind, fields) for rows in samples):
        return None
    if any(coerced(frame, lines, column) for column in used):
        return None
    return canonical


def _heads(column: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(byte length, first byte) of every value of a text column without a null, read from its string
    views (16 bytes a value, the first four bytes of the text inlined): no pass over the text, where each
    regex test cost ~0.05 s per column at 1M rows."""
    array = column.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.string_view() or array.null_count:
        first = column.str.head(1).fill_null("")
        return column.str.len_bytes().fill_null(0).to_numpy(), np.array(
            [text.encode("utf-8")[:1][0] if text else 0 for text in first.to_list()], dtype=np.uint8
        )
    views = np.frombuffer(array.buffers()[1], dtype=np.uint8).reshape(-1, 16)
    views = views[array.offset : array.offset + len(array)]
    return views[:, :4].copy().view("<i4").ravel(), views[:, 4]


def _only(column: pl.Series, candidates: np.ndarray, pattern: str) -> np.ndarray:
    """`pattern` tested on the candidate rows alone (False elsewhere)."""
    out = np.zeros(column.len(), dtype=bool)
    rows = np.flatnonzero(candidates)
    if len(rows):
        out[rows] = column.gather(rows).str.contains(pattern).fill_null(False).to_numpy()
    return out


def _blank(column: pl.Series) -> np.ndarray:
    """Which values are blank as Python's str.strip sees them: empty, or whitespace throughout; only values
    whose first byte can start a whitespace character meet the regex."""
    lengths, first = _heads(column)
    return (lengths == 0) | _only(column, (lengths > 0) & np.isin(first, _WHITESPACE_LEADS), _BLANK)


def looks_typed(column: pl.Series) -> bool:
    """Some value reads like a number, a boolean, null, a list or an object (what polars writes when it
    turns such a JSON value into text); the regex runs only where the first byte could start one."""
    lengths, first = _heads(column)
    return bool(_only(column, (lengths > 0) & np.isin(first, _TYPED_LEADS), _LOOKS_TYPED).any())


def _when(branches: list[tuple[pl.Expr, pl.Expr]], otherwise: pl.Expr) -> pl.Expr:
    if not branches:
        return otherwise
    if len(branches) == 1:
        return pl.when(branches[0][0]).then(branches[0][1]).otherwise(otherwise)
    chain = pl.when(branches[0][0]).then(branches[0][1])
    for condition, value in branches[1:]:
        chain = chain.when(condition).then(value)
    return chain.otherwise(otherwise)


def _agrees(
    frame: pl.DataFrame, canonical: pl.DataFrame, rows: list[int], kind: str, fields: dict[str, str]
) -> bool:
    """The real adapter on these rows gives what the templates gave."""
    for row in rows:
        out = adapt(frame.row(row, named=True), kind, fields)  # type: ignore[arg-type]
        got = canonical.row(row, named=True)
        types: dict[str, str] = {}
        for field in CANONICAL_FIELDS[kind]:
            value = out.get(field)
            if value is not None and field in LIST_FIELDS and isinstance(value, str):
                value = [value]
            if value is not None:
                types[field] = (
                    "list[str]" if field in LIST_FIELDS and fits(field, value) else type_name(value)
                )
                if not fits(field, value):
                    return False
            if got[field] != value:
                return False
        if json.dumps(types, ensure_ascii=False) != got["field_types"]:
            return False
    return True
