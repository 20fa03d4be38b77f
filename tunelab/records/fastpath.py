"""The fast path for clean JSON lines: polars parses the whole file, the adapter runs once per record shape.

Taken only when it gives exactly what the per-record path would (loader.py falls back to that path when any
check fails, so the result never depends on which path ran):

- polars read the file (so: valid UTF-8, every line one JSON object) into as many rows as the file has lines
  (no blank line, no CR-only line end), with no null anywhere (a missing key and an explicit null look the
  same in a frame: only the per-record path tells them apart), and with every key of the file among its
  columns (polars infers the schema from the first rows and drops keys it did not see there);
- no `\\ud800`-style escape (polars turns a lone surrogate into text where the per-record path quarantines it);
- every column the adapter reads is text in every record: polars would turn a number among strings into its
  digits, so a column holding a value that looks like a number, a boolean or JSON is checked in the bytes;
- the adapter's output for each shape (which text columns are blank: alpaca's `input` changes the prompt) is
  a concatenation of source columns and fixed text, found by calling the real adapter with marker values,
  then checked against the real adapter on a sample of each shape's rows (hh-rlhf's split on
  "Assistant:", say, shows up there).
"""

from __future__ import annotations

import io
import json
import mmap
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tunelab.records.adapters import adapt
from tunelab.records.config import DatasetConfig
from tunelab.records.fields import CANONICAL_FIELDS, LIST_FIELDS, fits, frame_schema, type_name

_MARK = re.compile("\ue000(\\d+)\ue001")
_LOOKS_TYPED = r"^\s*(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|[\[{].*)\s*$"
_LONE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
SAMPLE_PER_SHAPE = 256
_PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())  # none above U+3000
Buffer = bytes | mmap.mmap
_SHAPE, _ROW, _ROWS = "\ue000shape", "\ue000row", "\ue000rows"  # names no source column has
_CHUNK = 1 << 24  # bytes per vectorised scan step: bounded temporary arrays


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


def coerced(frame: pl.DataFrame, data: Buffer, column: str) -> bool:
    """True when polars may have turned non-text JSON values of `column` into text."""
    if not frame.select(pl.col(column).str.contains(_LOOKS_TYPED).any()).item():
        return False
    key = json.dumps(column, ensure_ascii=False).encode("utf-8")
    data = data if isinstance(data, bytes) else bytes(data)
    # every value a JSON string: the key followed by a quote, as json.dumps / orjson / JS write it
    return data.count(key + b': "') + data.count(key + b':"') != frame.height


def _scan(data: Buffer) -> tuple[int, int] | None:
    """(lines, keys) in one vectorised pass over the bytes, or None for CR-only line ends (polars would read
    the lines as one) or a lone-surrogate escape. Every key ends with an unescaped `":` (a quote inside a
    string is escaped, and these records hold no nested object): counting them tells a key polars missed."""
    a = np.frombuffer(data, dtype=np.uint8)
    if data.find(b"\r") >= 0:  # CRLF is fine (polars reads it), a CR alone is not: count only then
        crs = int(np.count_nonzero(a == 13))
        if crs != int(np.count_nonzero((a[:-1] == 13) & (a[1:] == 10))):
            return None
    lines = keys = backslash_u = 0
    for start in range(0, len(a), _CHUNK):
        end = min(start + _CHUNK, len(a))
        c = a[start : end + 1]  # one byte past the chunk: two-byte patterns starting at its last byte
        m, k = end - start, len(c) - 1
        lines += int(np.count_nonzero(c[:m] == 10))
        quote_colon = (c[:k] == 34) & (c[1 : k + 1] == 58)
        backslash = c[:k] == 92
        keys += int(np.count_nonzero(quote_colon)) - int(np.count_nonzero(quote_colon[1:] & backslash[:-1]))
        if start and quote_colon[:1].any() and a[start - 1] == 92:
            keys -= 1
        backslash_u += int(np.count_nonzero(backslash & (c[1 : k + 1] == 117)))
    if backslash_u and _LONE_SURROGATE_ESCAPE.search(data):
        return None
    if len(data) and data[-1:] != b"\n":
        lines += 1
    return lines, keys


def read_clean_jsonl(data: Buffer, source: Path | None = None) -> pl.DataFrame | None:
    """The records of `data` (the file's bytes, or a map of them) as a frame when polars reads it exactly as
    the per-record path would; polars reads `source` when given (the same bytes, without a copy)."""
    if not data[:4096].lstrip()[:1] == b"{":  # a BOM too sends the file to the per-record path
        return None
    # polars parses in its own threads without the GIL, numpy scans without it too: both at once
    with ThreadPoolExecutor(max_workers=1) as pool:
        parsing = pool.submit(pl.read_ndjson, source or io.BytesIO(data))  # schema from the first rows
        scanned = _scan(data)
        try:
            frame = parsing.result()
        except Exception:  # any parse problem: the per-record path quarantines line by line
            return None
    if scanned is None:
        return None
    lines, keys = scanned
    if frame.height != lines or frame.height == 0 or frame.width == 0:
        return None
    if sum(frame.null_count().row(0)) != 0 or keys != frame.height * frame.width:
        return None
    return frame


def fast_canonical(
    frame: pl.DataFrame, data: Buffer, cfg: DatasetConfig, fields: dict[str, str]
) -> pl.DataFrame | None:
    """Canonical columns (the per-record path's, less label and ids) for `frame`, or None to fall back."""
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
    bits = [
        pl.col(c).str.strip_chars(_PY_WHITESPACE).eq("").cast(pl.Int64) * (1 << i)
        for i, c in enumerate(text_columns)
    ]
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
        type_exprs.append((condition, json.dumps(types, ensure_ascii=False)))
        step = max(1, len(rows) // SAMPLE_PER_SHAPE)
        samples.append(sorted({*rows[::step], rows[-1]}))
    schema = frame_schema(kind)
    selected = []
    for field, branches in field_exprs.items():
        selected.append(_when(branches, pl.lit(None, dtype=schema[field])).cast(schema[field]).alias(field))
    selected.append(
        _when([(c, pl.lit(t)) for c, t in type_exprs], pl.lit(None, dtype=pl.String)).alias("field_types")
    )
    # with_columns, not select: fixed text alone must still give one value per row
    canonical = keyed.with_columns(selected).select([*CANONICAL_FIELDS[kind], "field_types"])
    if not all(_agrees(frame, canonical, rows, kind, fields) for rows in samples):
        return None
    if any(coerced(frame, data, column) for column in used):
        return None
    return canonical


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
