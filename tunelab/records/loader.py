"""Load any supported source into canonical columns, and every malformed record into a quarantine.

Nothing read is lost: each record becomes either a row of `frame` (even with missing or wrongly typed
fields: the schema stage judges those) or a row of `quarantine` (undecodable bytes, bad JSON, not an object,
wrong column count, a stray CSV quote ...), so `frame.height + quarantine.height == read` always.

A source is a file, a glob of shards, a folder of data files or a `datasets` save_to_disk folder; each file's
format is told by its content (formats.py) and its encoding detected (encoding.py). What was decided on the
way (encoding detected, JSON array in a .jsonl, labels rewritten ...) is said in `LoadResult.source`, which
the curation report carries.
"""

from __future__ import annotations

import glob
import json
import mmap
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.errors import UserError
from tunelab.records.adapters import adapt
from tunelab.records.config import DatasetConfig, DerivedField
from tunelab.records.fastpath import coerced, fast_canonical, read_jsonl
from tunelab.records.fields import (
    CANONICAL_FIELDS,
    LIST_FIELDS,
    fits,
    frame_schema,
    type_name,
)
from tunelab.records.formats import (
    FileInfo,
    _dump,
    _Record,
    format_by_name,
    frame_records,
    hf_splits,
    is_hf_dataset,
    open_bytes,
    read_file,
)

META_COLUMNS = ("sample_id", "dataset", "source_row", "source_line", "label", "field_types", "source_id")
QUARANTINE_SCHEMA = {
    "dataset": pl.String,
    "source_file": pl.String,
    "source_line": pl.Int64,
    "source_row": pl.Int64,
    "error": pl.String,
    "raw": pl.String,
}
# the record's own id, when the source has one (dataset.id_field overrides)
ID_COLUMNS = ("id", "_id", "uuid", "guid")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_INTEGRAL = re.compile(r"^[+-]?\d+\.0+$")


@dataclass
class LoadResult:
    frame: pl.DataFrame
    quarantine: pl.DataFrame
    read: int
    # {format, encoding, notes[, files]}: how the source was read, for the curation report
    source: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- which files


def source_files(path: Path) -> list[Path]:
    """The data files `path` names: itself, the files a glob matches, or the data files of a folder (sorted)."""
    text = str(path)
    if any(ch in text for ch in "*?[") and not path.exists():
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not matches:
            raise UserError(f"{path}: no file matches this pattern")
        return matches
    if path.is_dir() and not is_hf_dataset(path):
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and format_by_name(p) is not None
        )
        if not files:
            raise UserError(
                f"{path}: a folder with no data file (.jsonl, .json, .csv, .tsv, .parquet, .gz, .zst)"
            )
        return files
    return [path]


def _file_records(
    path: Path, cfg: DatasetConfig, mapped: set[str], infos: list[FileInfo]
) -> Iterator[tuple[str, Iterator[_Record]]]:
    """(source file name for the quarantine, its records) per file or per split of a datasets folder."""
    for file in source_files(path):
        if is_hf_dataset(file):
            for split, frame in hf_splits(file):
                infos.append(
                    FileInfo(file, "datasets", None, [f"{file.name}: a datasets folder (save_to_disk)"])
                )
                yield (f"{file}[{split}]" if split else str(file)), frame_records(frame)
            continue
        info, records = read_file(file, cfg.format, cfg.encoding, cfg.records, mapped)
        infos.append(info)
        yield str(file), records


# ---------------------------------------------------------------- values


def _resolve(record: dict[str, Any], source: str) -> Any:
    """`record[source]`, or the value at a path like `answers[0].text` when no column has that name."""
    if source in record:
        return record[source]
    value: Any = record
    for key, index in _PATH_PART.findall(source):
        if key and isinstance(value, dict) and key in value:
            value = value[key]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    return value


def canonical_label(value: Any) -> str | None:
    """One text per class: integral numbers as integers (1, 1.0, "1.0" -> "1"), booleans lower-case
    (True, "TRUE" -> "true"). Other text is kept as it is (the normalize stage trims whitespace)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lower() in ("true", "false"):
            return stripped.lower()
        if _INTEGRAL.match(stripped):
            return str(int(float(stripped)))
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _unify_labels(labels: list[str | None]) -> dict[str, str]:
    """0/1 beside true/false in one column are one pair of classes: the digits become the words."""
    present = {label for label in labels if label is not None}
    if present <= {"true", "false", "1", "0"} and present & {"true", "false"} and present & {"1", "0"}:
        return {"1": "true", "0": "false"}
    return {}


def _id_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return canonical_label(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _derive(record: dict[str, Any], spec: DerivedField) -> str | None:
    value = _resolve(record, spec.from_)
    if value is None:
        return None
    match = re.search(spec.regex, value if isinstance(value, str) else str(value))
    return None if match is None else match.group(1)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------- loading


def load_dataset_records(cfg: DatasetConfig, *, fast: bool = True, check_fields: bool = True) -> LoadResult:
    """Read `cfg.path` into canonical columns for `cfg.kind`; malformed records go to the quarantine.

    `fast=False` skips the polars fast path (fastpath.py); the result is the same either way.
    `check_fields=False` skips the "mapped column is in no record" check: a reader that loads a file in
    batches (curate/executors/streaming.py) checks its first batch only, since a later batch may lack a
    column that earlier ones had."""
    path = Path(cfg.path)
    kind = cfg.kind
    plain = cfg.source_fields()
    derived = {k: v for k, v in cfg.fields.items() if isinstance(v, DerivedField)}
    label_source = plain.pop("label", "label")
    known = set(CANONICAL_FIELDS[kind]) | {"instruction", "input"}
    unknown = sorted((set(plain) | set(derived)) - known - {"label"})
    if unknown:
        raise UserError(
            f"{path}: dataset.fields: {unknown[0]!r} is not a canonical field of kind {kind} ({', '.join(CANONICAL_FIELDS[kind])})"
        )
    # every source column the user named must exist somewhere (a typo would drop every row and exit 0)
    mapped = {f"dataset.fields.{k}": v for k, v in cfg.source_fields().items()}
    mapped |= {f"dataset.fields.{k}.from": v.from_ for k, v in derived.items()}
    if cfg.id_field:
        mapped["dataset.id_field"] = cfg.id_field
    nested = {k: v for k, v in plain.items() if any(ch in v for ch in ".[")}
    if fast and not (derived or nested or cfg.records) and cfg.format in ("auto", "jsonl"):
        fast = _load_fast(path, cfg, plain, label_source, mapped if check_fields else {})
        if fast is not None:
            return fast
    columns: dict[str, list[Any]] = {name: [] for name in frame_schema(kind)}
    columns["source_id"] = []
    quarantine: dict[str, list[Any]] = {name: [] for name in QUARANTINE_SCHEMA}
    read = 0
    seen_columns: set[str] = set()
    infos: list[FileInfo] = []
    raw_labels: list[Any] = []
    no_match: Counter[str] = Counter()
    id_columns: Counter[str] = Counter()
    files = list(_file_records(path, cfg, set(mapped.values()), infos))
    many = len(files) > 1
    for file_index, (source_file, records) in enumerate(files):
        for record in records:
            read += 1
            value = record.value
            canonical: dict[str, Any] | None = None
            error = record.error
            if error is None:
                try:
                    if nested:
                        value = {**value, **{src: _resolve(value, src) for src in nested.values()}}
                    canonical = adapt(value, kind, plain)
                except Exception as exc:  # a record no adapter can read is quarantined, never a crash
                    error = f"record could not be read as {kind}: {type(exc).__name__}: {exc}"
            if error is not None or canonical is None:
                quarantine["dataset"].append(cfg.name)
                quarantine["source_file"].append(source_file)
                quarantine["source_line"].append(record.line)
                quarantine["source_row"].append(record.row)
                quarantine["error"].append(error)
                quarantine["raw"].append(record.raw or _dump(value))
                continue
            if mapped:
                seen_columns.update(value)
            types = {}
            for name, spec in derived.items():
                if name != "label":
                    canonical[name] = _derive(value, spec)
            for name in CANONICAL_FIELDS[kind]:
                if name not in canonical or canonical[name] is None:
                    columns[name].append(None)
                    continue
                item = canonical[name]
                if name in LIST_FIELDS and isinstance(item, str):
                    item = [item]
                types[name] = (
                    type_name(item) if not (name in LIST_FIELDS and fits(name, item)) else "list[str]"
                )
                columns[name].append(item if fits(name, item) else None)
            if "label" in derived:
                label = _derive(value, derived["label"])
                if label is None:
                    no_match[derived["label"].from_] += 1
            else:
                label = _resolve(value, label_source)
            raw_labels.append(label)
            id_column = cfg.id_field or next((c for c in ID_COLUMNS if c in value), None)
            if id_column is not None:
                id_columns[id_column] += 1
            columns["source_id"].append(_id_text(_resolve(value, id_column)) if id_column else None)
            row = f"{file_index}-{record.row}" if many else str(record.row)
            columns["sample_id"].append(f"{cfg.name}:{row}")
            columns["dataset"].append(cfg.name)
            columns["source_row"].append(record.row)
            columns["source_line"].append(record.line)
            columns["field_types"].append(json.dumps(types, ensure_ascii=False))
    if read == 0:
        what = f"{len(files)} files" if many else "the file"
        raise UserError(f"{path}: no records: {what} is empty or holds only blank lines")
    for where, source in mapped.items() if check_fields else ():
        if read > len(quarantine["error"]) and source.split(".")[0].split("[")[0] not in seen_columns:
            have = ", ".join(sorted(seen_columns)[:12])
            raise UserError(f"{path}: {where}: column {source!r} is in no record (columns: {have})")
    notes = [note for info in infos for note in info.notes]
    columns["label"], label_notes = _labels(raw_labels)
    notes += label_notes
    for source, count in no_match.items():
        notes.append(
            f"label: {_plural(count, 'record')} where {source!r} did not match the regex (label null)"
        )
    if id_columns:
        names = ", ".join(repr(name) for name in id_columns)
        notes.append(f"source ids from {names} ({_plural(sum(id_columns.values()), 'record')})")
    schema = {**frame_schema(kind), "source_id": pl.String}
    frame = pl.DataFrame(columns, schema=schema)
    return LoadResult(
        frame=frame,
        quarantine=pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA),
        read=read,
        source=_source(infos, notes),
    )


def _load_fast(
    path: Path, cfg: DatasetConfig, plain: dict[str, str], label_source: str, mapped: dict[str, str]
) -> LoadResult | None:
    """One clean JSON-lines file through polars (fastpath.py), or None for the per-record path."""
    if cfg.encoding is not None and cfg.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return None
    files = source_files(path)
    if len(files) != 1 or is_hf_dataset(files[0]) or format_by_name(files[0]) in ("parquet", "csv", "tsv"):
        return None
    file = files[0]
    if file.suffix.lower() in (".gz", ".zst") or not file.is_file() or file.stat().st_size == 0:
        data = open_bytes(file)
        fast = read_jsonl(data, data)
    else:  # mapped, not copied: polars reads the file itself and numpy scans the same pages
        with file.open("rb") as handle:
            view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            fast = read_jsonl(file, view)
        finally:
            try:
                view.close()
            except BufferError:  # an array still views it: the map closes when that is collected
                pass
    if fast is None:
        return None
    frame = fast.frame
    if format_by_name(file) == "json" and fast.read == 1:  # one object in a .json file is a JSON document
        return None
    id_column = cfg.id_field or next((c for c in ID_COLUMNS if c in frame.columns), None)
    for column in (label_source, id_column):  # their text must be the source's, not polars' coercion
        if (
            column in frame.columns
            and frame[column].dtype == pl.String
            and coerced(frame, lambda: fast.lines, column)
        ):
            return None
    canonical = fast_canonical(frame, lambda: fast.lines, cfg, plain)
    if canonical is None:
        return None
    for where, source in mapped.items():
        if source not in frame.columns:
            have = ", ".join(sorted(frame.columns)[:12])
            raise UserError(f"{path}: {where}: column {source!r} is in no record (columns: {have})")
    notes = (
        [f"{files[0].name}: holds JSON lines: read as jsonl"] if format_by_name(files[0]) == "json" else []
    )
    labels, label_notes = _label_series(frame, label_source)
    notes += label_notes
    if id_column is not None:
        ids = frame[id_column]
        if ids.dtype != pl.String:
            ids = ids.cast(pl.String) if ids.dtype.is_integer() else _mapped(ids, _id_text)
        notes.append(f"source ids from {id_column!r} ({_plural(frame.height, 'record')})")
    else:
        ids = pl.Series("source_id", [None] * frame.height, dtype=pl.String)
    # each row's line index: every line, or (the hybrid) the lines polars parsed
    rows = pl.int_range(pl.len(), dtype=pl.Int64) if fast.rows is None else pl.lit(fast.rows)
    meta = pl.DataFrame({"label": labels.alias("label"), "source_id": ids.alias("source_id")})
    out = pl.concat([canonical, meta], how="horizontal").with_columns(
        pl.format("{}:{}", pl.lit(cfg.name), rows).alias("sample_id"),
        pl.lit(cfg.name).alias("dataset"),
        rows.alias("source_row"),
        (rows + 1).alias("source_line"),
    )
    schema = {**frame_schema(cfg.kind), "source_id": pl.String}
    out = out.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    quarantine = pl.DataFrame(
        {
            "dataset": [cfg.name] * len(fast.quarantine),
            "source_file": [str(file)] * len(fast.quarantine),
            "source_line": [r.line for r in fast.quarantine],
            "source_row": [r.row for r in fast.quarantine],
            "error": [r.error for r in fast.quarantine],
            "raw": [r.raw for r in fast.quarantine],
        },
        schema=QUARANTINE_SCHEMA,
    )
    return LoadResult(
        frame=out,
        quarantine=quarantine,
        read=fast.read,
        source={"format": "jsonl", "encoding": "utf-8", "notes": notes},
    )


def _mapped(series: pl.Series, fn: Any) -> pl.Series:
    """`fn` on each distinct value of `series` (labels and ids repeat, or are few): one Python call each."""
    mapping = {value: fn(value) for value in series.unique().to_list()}
    return series.replace_strict(mapping, return_dtype=pl.String)


def _label_series(frame: pl.DataFrame, label_source: str) -> tuple[pl.Series, list[str]]:
    """The fast path's labels: canonical_label and the 0/1 - true/false pairing, on distinct values."""
    if label_source not in frame.columns:
        return pl.Series("label", [None] * frame.height, dtype=pl.String), []
    column = frame[label_source]
    counts = dict(column.value_counts().iter_rows())
    mapping = {value: canonical_label(value) for value in counts}
    pairs = _unify_labels(list(mapping.values()))
    mapping = {
        value: pairs.get(label, label) if label is not None else None for value, label in mapping.items()
    }
    changed: Counter[tuple[str, str]] = Counter()
    for value, label in mapping.items():
        before = value if isinstance(value, str) else str(value)
        if label != before:
            changed[(before, str(label))] += counts[value]
    return column.replace_strict(mapping, return_dtype=pl.String), _label_notes(changed)


def _label_notes(changed: Counter[tuple[str, str]]) -> list[str]:
    if not changed:
        return []
    examples = ", ".join(f"{a!r} -> {b!r}" for (a, b), _ in changed.most_common(3))
    return [f"labels normalised: {_plural(sum(changed.values()), 'value')} rewritten ({examples})"]


def _labels(raw: list[Any]) -> tuple[list[str | None], list[str]]:
    labels = [canonical_label(value) for value in raw]
    pairs = _unify_labels(labels)
    if pairs:
        labels = [pairs.get(label, label) if label is not None else None for label in labels]
    changed: Counter[tuple[str, str]] = Counter()
    for value, label in zip(raw, labels, strict=True):
        before = value if isinstance(value, str) else str(value)
        if value is not None and label != before:
            changed[(before, str(label))] += 1
    return labels, _label_notes(changed)


def _source(infos: list[FileInfo], notes: list[str]) -> dict[str, Any]:
    def joined(values: list[str | None]) -> str | None:
        distinct = list(dict.fromkeys(v for v in values if v))
        return ", ".join(distinct) if distinct else None

    source: dict[str, Any] = {
        "format": joined([i.format for i in infos]),
        "encoding": joined([i.encoding for i in infos]),
        "notes": notes,
    }
    if len(infos) > 1:
        source["files"] = [str(i.path) for i in infos]
    return source
