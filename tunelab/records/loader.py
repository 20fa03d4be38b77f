"""Load any supported file into canonical columns, and every malformed record into a quarantine.

Nothing read is lost: each record becomes either a row of `frame` (even with missing or wrongly typed
fields: the schema stage judges those) or a row of `quarantine` (bad JSON, invalid UTF-8, not an object,
wrong column count), so `frame.height + quarantine.height == read` always.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.errors import UserError
from tunelab.records.adapters import adapt
from tunelab.records.config import DatasetConfig
from tunelab.records.fields import (
    CANONICAL_FIELDS,
    LIST_FIELDS,
    fits,
    frame_schema,
    type_name,
)

META_COLUMNS = ("sample_id", "dataset", "source_row", "source_line", "label", "field_types")
QUARANTINE_SCHEMA = {
    "dataset": pl.String,
    "source_file": pl.String,
    "source_line": pl.Int64,
    "source_row": pl.Int64,
    "error": pl.String,
    "raw": pl.String,
}
RAW_LIMIT = 2000


@dataclass
class LoadResult:
    frame: pl.DataFrame
    quarantine: pl.DataFrame
    read: int


@dataclass
class _Record:
    row: int  # 0-based record index (line formats: line number - 1)
    line: int  # 1-based line where the record starts, or 1-based record number for JSON/parquet
    value: Any  # the parsed record, or None when `error` is set
    error: str | None = None
    raw: str = ""


# ---------------------------------------------------------------- reading files


def _open_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a data file") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: not a valid gzip file ({exc})") from None
    return data


def detect_format(path: Path, head: bytes) -> str:
    name = path.name.lower().removesuffix(".gz")
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"), (".tsv", "tsv")):
        if name.endswith(ext):
            return fmt
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".json"):
        # '.jsonl.json' files (HRC) and one-object-per-line '.json' files exist in the wild
        stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if stripped.startswith(b"{"):
            first_line = stripped.split(b"\n", 1)[0].strip()
            try:
                json.loads(first_line)
                return "jsonl" if b"\n" in stripped.strip() else "json"
            except ValueError:
                return "json"
        return "json"
    raise UserError(
        f"{path}: cannot tell the format from the name; set dataset.format in the recipe (or --format): jsonl, json, csv, tsv or parquet"
    )


def _decode(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace"), f"invalid UTF-8 at byte {exc.start}"


def _jsonl_records(data: bytes) -> Iterator[_Record]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for index, raw in enumerate(data.split(b"\n")):
        if not raw.strip():
            continue
        text, error = _decode(raw.rstrip(b"\r"))
        if error:
            yield _Record(index, index + 1, None, error, text)
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _Record(index, index + 1, None, f"invalid JSON: {exc.msg} at column {exc.colno}", text)
            continue
        if not isinstance(value, dict):
            yield _Record(index, index + 1, None, f"not a JSON object (a {type(value).__name__})", text)
            continue
        yield _Record(index, index + 1, value)


def _json_records(data: bytes, path: Path) -> Iterator[_Record]:
    text, error = _decode(data.removeprefix(b"\xef\xbb\xbf"))
    if error:
        raise UserError(f"{path}: {error}; a .json file is one document, so nothing could be read")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(doc, dict):
        # {"data": [...]} wrappers, or records keyed by id (PubMedQA: {pmid: {...}})
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(doc) == 1 and lists:
            doc = lists[0]
        elif doc and all(isinstance(v, dict) for v in doc.values()):
            doc = [{"id": key, **value} for key, value in doc.items()]
        else:
            doc = [doc]
    if not isinstance(doc, list):
        raise UserError(
            f"{path}: expected a list of records or an object of records, got {type(doc).__name__}"
        )
    for index, value in enumerate(doc):
        if isinstance(value, dict):
            yield _Record(index, index + 1, value)
        else:
            raw = json.dumps(value, ensure_ascii=False)[:RAW_LIMIT]
            yield _Record(
                index, index + 1, None, f"record is not a JSON object (a {type(value).__name__})", raw
            )


def _delimited_records(data: bytes, delimiter: str, path: Path) -> Iterator[_Record]:
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    # TSV files in the wild don't quote (KorSTS has stray '"' inside cells); CSV does
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # the default 128 KiB cell limit would quarantine long documents; the length stage judges those
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        return
    # a trailing delimiter on every line gives an empty last header cell (songys Question_pair)
    trailing_empty = bool(header) and header[-1].strip() == ""
    if trailing_empty:
        header = header[:-1]
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        raise UserError(f"{path}:1: duplicate column names in header: {names}")
    index = 0
    line_start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield _Record(index, line_start, None, f"unparseable {delimiter!r}-separated line: {exc}", "")
            index += 1
            line_start = reader.line_num + 1
            continue
        line = line_start
        line_start = reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        raw = delimiter.join(cells)
        if trailing_empty and len(cells) == len(names) + 1 and not cells[-1].strip():
            cells = cells[:-1]
        if any("\udc80" <= ch <= "\udcff" for cell in cells for ch in cell):
            fixed = raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
            yield _Record(index, line, None, "invalid UTF-8", fixed[:RAW_LIMIT])
        elif len(cells) != len(names):
            error = f"wrong column count: {len(cells)} fields, header has {len(names)}"
            yield _Record(index, line, None, error, raw[:RAW_LIMIT])
        else:
            yield _Record(index, line, dict(zip(names, cells, strict=True)))
        index += 1


def _parquet_records(path: Path) -> Iterator[_Record]:
    try:
        table = pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for a corrupt file
        raise UserError(f"{path}: not a readable parquet file ({exc.__class__.__name__})") from None
    for index, value in enumerate(table.iter_rows(named=True)):
        yield _Record(index, index + 1, value)


def read_records(path: Path, fmt: str = "auto") -> Iterator[_Record]:
    if fmt == "parquet" or (fmt == "auto" and path.name.lower().endswith(".parquet")):
        yield from _parquet_records(path)
        return
    data = _open_bytes(path)
    fmt = detect_format(path, data[:4096]) if fmt == "auto" else fmt
    if fmt == "jsonl":
        yield from _jsonl_records(data)
    elif fmt == "json":
        yield from _json_records(data, path)
    elif fmt in ("csv", "tsv"):
        yield from _delimited_records(data, "," if fmt == "csv" else "\t", path)
    else:  # pragma: no cover - pydantic restricts the values
        raise UserError(f"{path}: unsupported format {fmt}")


def load_dataset_records(cfg: DatasetConfig) -> LoadResult:
    """Read `cfg.path` into canonical columns for `cfg.kind`; malformed records go to the quarantine."""
    path = Path(cfg.path)
    kind = cfg.kind
    fields = dict(cfg.fields)
    mapped = dict(fields)  # every source column the user named, label included, must exist somewhere
    label_source = fields.pop("label", "label")
    known = set(CANONICAL_FIELDS[kind]) | {"instruction", "input"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UserError(
            f"{path}: dataset.fields: {unknown[0]!r} is not a canonical field of kind {kind} ({', '.join(CANONICAL_FIELDS[kind])})"
        )
    columns: dict[str, list[Any]] = {name: [] for name in frame_schema(kind)}
    quarantine: dict[str, list[Any]] = {name: [] for name in QUARANTINE_SCHEMA}
    read = 0
    seen_columns: set[str] = set()
    for record in read_records(path, cfg.format):
        read += 1
        if record.error is not None:
            quarantine["dataset"].append(cfg.name)
            quarantine["source_file"].append(str(path))
            quarantine["source_line"].append(record.line)
            quarantine["source_row"].append(record.row)
            quarantine["error"].append(record.error)
            quarantine["raw"].append(record.raw[:RAW_LIMIT])
            continue
        if mapped:
            seen_columns.update(record.value)
        canonical = adapt(record.value, kind, fields)
        types = {}
        for field in CANONICAL_FIELDS[kind]:
            if field not in canonical or canonical[field] is None:
                columns[field].append(None)
                continue
            value = canonical[field]
            if field in LIST_FIELDS and isinstance(value, str):
                value = [value]
            types[field] = (
                type_name(value) if not (field in LIST_FIELDS and fits(field, value)) else "list[str]"
            )
            columns[field].append(value if fits(field, value) else None)
        label = record.value.get(label_source)
        columns["label"].append(None if label is None else str(label))
        columns["sample_id"].append(f"{cfg.name}:{record.row}")
        columns["dataset"].append(cfg.name)
        columns["source_row"].append(record.row)
        columns["source_line"].append(record.line)
        columns["field_types"].append(json.dumps(types, ensure_ascii=False))
    # a misspelt column would otherwise drop every row as missing_field and exit 0
    for canonical, source in mapped.items():
        if read > len(quarantine["error"]) and source not in seen_columns:
            have = ", ".join(sorted(seen_columns)[:12])
            raise UserError(
                f"{path}: dataset.fields.{canonical}: column {source!r} is in no record (columns: {have})"
            )
    frame = pl.DataFrame(columns, schema=frame_schema(kind))
    return LoadResult(frame=frame, quarantine=pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA), read=read)
