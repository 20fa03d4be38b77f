"""One data file to records: its format told by content (not only by its name), each record or its error.

A reader yields `_Record`s: a parsed object, or an error with the raw text (whole: what must be inspected
is never cut) and where it was (1-based line; for a JSON document, the record number). Nothing a file
holds makes a reader raise but a file that cannot be read at all (a UserError naming the file).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tunelab.errors import UserError
from tunelab.records.encoding import MARK, Decoded, decode

COMPRESSED = (".gz", ".zst")
TEXT_FORMATS = ("jsonl", "json", "csv", "tsv")
# physical line ends as the csv module counts them: CRLF, CR alone (old Mac exports), LF
_LINE_END = re.compile(r"\r\n|\r|\n")
_SELECTOR = re.compile(r"^(\[\]|[^.\[\]]+(\[\])?)(\.[^.\[\]]+(\[\])?)*$")
# a one-column delimited file is a real table only when its header names a column someone would map
_ONE_COLUMN_NAMES = {"text", "content", "document", "prompt", "question", "instruction", "sentence"}


@dataclass
class _Record:
    row: int  # 0-based record index in its file
    line: int  # 1-based line where the record starts (for a JSON document: the record number)
    value: Any  # the parsed record, or None when `error` is set
    error: str | None = None
    raw: str = ""


@dataclass
class FileInfo:
    path: Path
    format: str = ""
    encoding: str | None = None  # None for binary formats (parquet, a datasets folder)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- bytes


def open_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed (.gz, .zst); a missing or broken file is a UserError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a data file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    suffix = path.suffix.lower()
    if suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: not a valid gzip file ({exc})") from None
    elif suffix == ".zst":
        import zstandard

        try:
            # a stream reader: frames written without their content size (zstd CLI pipes) decode too
            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        except zstandard.ZstdError as exc:
            raise UserError(f"{path}: not a valid zstd file ({exc})") from None
    return data


def _base_name(path: Path) -> str:
    name = path.name.lower()
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    return name


def format_by_name(path: Path) -> str | None:
    name = _base_name(path)
    for ext, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "json"),
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".parquet", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    return None


# ---------------------------------------------------------------- telling the format by content


def _loads(text: str | bytes) -> tuple[Any, str | None]:
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:  # lone surrogates, 1,024+ levels, huge numbers land here too
        return None, str(exc)


def sniff(text: str, named: str | None, path: Path) -> tuple[str, Any, list[str]]:
    """(format, the parsed document when the whole text is one JSON document, notes) for a text file."""
    body = text.lstrip(" \t\r\n")
    if body.startswith(("[", "{")):
        first = _LINE_END.split(body, maxsplit=1)
        rest = first[1].strip() if len(first) > 1 else ""
        head_value, head_error = _loads(first[0])
        # a complete object on line 1 and more after it (or alone in a file not named .json): JSON lines
        if head_error is None and isinstance(head_value, dict) and (rest or named != "json"):
            fmt = "jsonl"  # a complete object on line 1 and more after it: JSON lines
            notes = [] if named in ("jsonl", None) else [f"{path.name}: holds JSON lines: read as jsonl"]
            return fmt, None, notes
        doc, error = _loads(body)
        if error is None:
            notes = (
                []
                if named in ("json", None)
                else [
                    f"{path.name}: holds one JSON {'array' if body[0] == '[' else 'document'}, not JSON lines: read as json"
                ]
            )
            return "json", doc, notes
        return "jsonl", None, []  # neither: line by line, the bad lines quarantined
    if named in ("csv", "tsv"):
        return named, None, []
    if named in ("jsonl", "json"):
        return "jsonl", None, []  # not JSON at all: line by line, each line quarantined with its error
    line = _LINE_END.split(body, maxsplit=1)[0]
    if "\t" in line:
        return "tsv", None, [f"{path.name}: tab-separated by content (read as tsv)"]
    if "," in line:
        return "csv", None, [f"{path.name}: comma-separated by content (read as csv)"]
    raise UserError(
        f"{path}: cannot tell the format from the name or the content; set dataset.format in the recipe "
        "(or --format): jsonl, json, csv, tsv or parquet"
    )


# ---------------------------------------------------------------- record selectors


def parse_selector(selector: str) -> list[tuple[str, bool]]:
    """`data[].paragraphs[].qas[]` -> [('data', True), ('paragraphs', True), ('qas', True)]."""
    if not _SELECTOR.match(selector):
        raise ValueError(
            f"{selector!r}: expected keys joined by '.', a list marked '[]' (e.g. data[].paragraphs[].qas[])"
        )
    return [(part.removesuffix("[]"), part.endswith("[]")) for part in selector.split(".")]


def _dump(value: Any) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return repr(value)


def select(doc: Any, selector: str) -> Iterator[tuple[str, Any, str | None]]:
    """(where, record, error) for each record (on an error, the offending value instead of a record) `selector` names in `doc`. A record is an item of the innermost
    list, with the scalar fields of every enclosing object merged in under their own names (nearer parents
    win, the record's own fields win over all: a KorQuAD question gets its paragraph's `context` and its
    article's `title`). A parent lacking the next key is one error, not a stop."""
    segments = parse_selector(selector)

    def walk(
        node: Any, depth: int, where: str, inherited: dict[str, Any]
    ) -> Iterator[tuple[str, Any, str | None]]:
        if depth == len(segments):
            if isinstance(node, dict):
                yield where, {**inherited, **node}, None
            else:
                yield where, node, f"record {where} is not a JSON object (a {type(node).__name__})"
            return
        key, many = segments[depth]
        if key:
            if not isinstance(node, dict) or key not in node:
                yield where or "$", node, f"dataset.records: {where or 'the document'} has no {key!r}"
                return
            scalars = {k: v for k, v in node.items() if not isinstance(v, dict | list)}
            inherited = {**inherited, **scalars}
            node, where = node[key], f"{where}.{key}" if where else key
        if not many:
            yield from walk(node, depth + 1, where, inherited)
            return
        if not isinstance(node, list):
            yield where or "$", node, f"dataset.records: {where or 'the document'} is not a list"
            return
        for index, item in enumerate(node):
            yield from walk(item, depth + 1, f"{where}[{index}]", inherited)

    yield from walk(doc, 0, "", {})


# ---------------------------------------------------------------- readers


def _marked(decoded: Decoded, line: str, position: int) -> str | None:
    at = line.find(MARK)
    if at < 0:
        return None
    return f"invalid {decoded.encoding.upper()} at byte {decoded.byte_offset(position + at)}"


def _shown(line: str) -> str:
    return line.replace(MARK, "\ufffd")


def jsonl_records(decoded: Decoded, selector: str | None = None) -> Iterator[_Record]:
    """One record per non-blank line (CR, LF or CRLF ends); `row` is the line index, so sample ids stay
    put when a line before them is fixed. With a selector, each line is a document holding records."""
    counter = 0
    for number, (line, position) in enumerate(_iter_lines(decoded.text), 1):
        if not line.strip():
            continue
        row = counter if selector is not None else number - 1
        error = _marked(decoded, line, position)
        if error:
            yield _Record(row, number, None, error, _shown(line))
            counter += 1
            continue
        value, error = _loads(line)
        if error is not None:
            yield _Record(row, number, None, f"invalid JSON: {error}", line)
            counter += 1
            continue
        if selector is not None:
            for _where, record, problem in select(value, selector):
                if problem is None:
                    yield _Record(counter, number, record)
                else:
                    yield _Record(counter, number, None, f"{problem} (line {number})", line)
                counter += 1
            continue
        if not isinstance(value, dict):
            yield _Record(row, number, None, f"not a JSON object (a {type(value).__name__})", line)
        else:
            yield _Record(row, number, value)


def _iter_lines(text: str) -> Iterator[tuple[str, int]]:
    start = 0
    for match in _LINE_END.finditer(text):
        yield text[start : match.start()], start
        start = match.end()
    if start < len(text):
        yield text[start:], start


def _is_squad(doc: dict[str, Any]) -> bool:
    data = doc.get("data")
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "paragraphs" in data[0]


def json_records(doc: Any, path: Path, selector: str | None, notes: list[str]) -> Iterator[_Record]:
    if selector is not None:
        notes.append(f"{path.name}: records from {selector}, with their parents' scalar fields merged in")
        for index, (_where, value, problem) in enumerate(select(doc, selector)):
            if problem is None:
                yield _Record(index, index + 1, value)
            else:
                yield _Record(index, index + 1, None, problem, _dump(value))
        return
    if isinstance(doc, dict) and _is_squad(doc):
        # read as below it is one record per article (or one for the file): say how to get questions
        notes.append(
            f"{path.name}: SQuAD/KorQuAD JSON (data -> paragraphs -> qas); for RAFT rows run "
            f"`tunelab raft build {path.name} --out raft.jsonl`, or read each question with "
            "dataset.records: data[].paragraphs[].qas[]"
        )
    if isinstance(doc, dict):
        # {"data": [...]} wrappers, or records keyed by id (PubMedQA: {pmid: {...}})
        lists = [(k, v) for k, v in doc.items() if isinstance(v, list)]
        if len(doc) == 1 and lists:
            notes.append(f"{path.name}: records from the list under {lists[0][0]!r}")
            doc = lists[0][1]
        elif doc and all(isinstance(v, dict) for v in doc.values()):
            notes.append(f"{path.name}: records keyed by id (the key is kept as 'id')")
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
            error = f"record is not a JSON object (a {type(value).__name__})"
            yield _Record(index, index + 1, None, error, _dump(value))


def _looks_like_row(line: str, delimiter: str, width: int) -> bool:
    cells = next(csv.reader([line], delimiter=delimiter), [])
    return len(cells) in (width, width + 1) and width > 1


def delimited_records(decoded: Decoded, delimiter: str, path: Path, mapped: set[str]) -> Iterator[_Record]:
    """CSV (quotes honoured) or TSV (quotes are text: KorSTS has stray '"' in cells) rows as records.

    A CSV record whose quoted field runs over lines that each look like a row of their own (a stray or
    unterminated quote) is not one record: each of its lines is quarantined with the span, so nothing
    merges silently and `read` still counts every line. A legitimately multi-line cell (continuation lines
    that do not split into the header's column count) is kept.
    """
    text = decoded.text.removeprefix("\ufeff")
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # the default 128 KiB cell limit would quarantine long documents; the length stage judges those
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    lines = _LINE_END.split(text)
    shift = len(decoded.text) - len(text)  # a BOM character removed above
    positions = [p + shift for p in _line_positions(text)] if decoded.offsets else []
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise UserError(f"{path}:1: unreadable header ({exc})") from None
    # a trailing delimiter on every line gives an empty last header cell (songys Question_pair)
    trailing_empty = bool(header) and len(header) > 1 and header[-1].strip() == ""
    if trailing_empty:
        header = header[:-1]
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        raise UserError(f"{path}:1: duplicate column names in header: {names}")
    if MARK in "".join(names):
        raise UserError(
            f"{path}:1: the header is not valid {decoded.encoding}: set dataset.encoding (e.g. cp949, utf-16)"
        )
    records: list[_Record] = []
    first_cells: list[str] = []
    for line, cells, error, raw in _rows(reader, lines, delimiter, len(names), quoting):
        index = len(records)
        if error is not None:
            records.append(_Record(index, line, None, error, raw))
            continue
        if trailing_empty and len(cells) == len(names) + 1 and not cells[-1].strip():
            cells = cells[:-1]
        if MARK in raw:
            offset = decoded.byte_offset(positions[line - 1] + raw.find(MARK))
            records.append(
                _Record(
                    index, line, None, f"invalid {decoded.encoding.upper()} at byte {offset}", _shown(raw)
                )
            )
        elif len(cells) != len(names):
            error = f"wrong column count: {len(cells)} fields, header has {len(names)}"
            records.append(_Record(index, line, None, error, raw))
        else:
            records.append(_Record(index, line, dict(zip(names, cells, strict=True))))
            if len(first_cells) < 1000:
                first_cells.append(cells[0])
    one_column = len(names) == 1 and names[0] not in mapped and names[0].lower() not in _ONE_COLUMN_NAMES
    _judge_header(path, names, first_cells, len(records), one_column, delimiter)
    yield from records


def _judge_header(
    path: Path, names: list[str], first_cells: list[str], rows: int, one_column: bool, delimiter: str
) -> None:
    """Refuse a text that is not a table: a transcript or a plain text read with its first line as header."""
    what = "tab" if delimiter == "\t" else repr(delimiter)
    if one_column and rows and len(first_cells) >= 0.9 * min(rows, 1000):
        raise UserError(
            f"{path}:1: the first line {names[0][:60]!r} has no {what}, nor has nearly any other line: this is "
            "plain text (a transcript?), not a table; convert it to JSONL, or put a header naming its "
            "column (e.g. text) on line 1"
        )
    # a transcript's speaker tags repeat: a header cell that is also the first cell of many rows is data
    if first_cells and names[0]:
        repeats = sum(cell.strip() == names[0] for cell in first_cells)
        if repeats >= max(2, 0.1 * len(first_cells)):
            raise UserError(
                f"{path}:1: the first line looks like data, not a header: its first cell {names[0][:40]!r} "
                f"is also the first cell of {repeats:,} of the first {len(first_cells):,} rows (a transcript?); "
                "put a header line naming the columns first"
            )


def _line_positions(text: str) -> list[int]:
    starts = [0]
    starts.extend(m.end() for m in _LINE_END.finditer(text))
    return starts


def _rows(
    reader: Any, lines: list[str], delimiter: str, width: int, quoting: int
) -> Iterator[tuple[int, list[str], str | None, str]]:
    """(first line, cells, error, raw) per record; a suspicious multi-line record comes back line by line."""
    line_start = reader.line_num + 1
    total = len(lines) - (1 if lines and lines[-1] == "" else 0)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raw = "\n".join(lines[line_start - 1 : reader.line_num])
            yield line_start, [], f"unparseable {delimiter!r}-separated line: {exc}", raw
            line_start = reader.line_num + 1
            continue
        first, last = line_start, reader.line_num
        line_start = last + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        span = lines[first - 1 : last]
        if last > first and quoting != csv.QUOTE_NONE:
            inner = [line for line in span[1:] if line.strip()]
            if any(_looks_like_row(line, delimiter, width) for line in inner):
                closes = "never closes" if last >= total else f"closes on line {last}"
                where = f"a quote on line {first} opens a field that {closes}, over lines that look like rows"
                for offset, line in enumerate(span):
                    if line.strip():
                        yield first + offset, [], f"stray quote: {where} (lines {first}-{last})", line
                continue
        yield first, cells, None, "\n".join(span)


# ---------------------------------------------------------------- binary formats


def parquet_records(path: Path) -> Iterator[_Record]:
    import polars as pl

    try:
        table = pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for a corrupt file
        raise UserError(f"{path}: not a readable parquet file ({exc.__class__.__name__})") from None
    for index, value in enumerate(table.iter_rows(named=True)):
        yield _Record(index, index + 1, value)


def is_hf_dataset(path: Path) -> bool:
    """A folder written by `datasets`' save_to_disk (a Dataset, or a DatasetDict of splits)."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def hf_splits(path: Path) -> list[tuple[str, Any]]:
    """(split name, polars frame) of a save_to_disk folder, splits in the order the folder lists them."""
    import datasets
    import polars as pl

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, ... for a broken folder
        raise UserError(f"{path}: not a readable datasets folder ({exc.__class__.__name__}: {exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        return [(name, pl.from_arrow(split.with_format("arrow")[:])) for name, split in loaded.items()]
    return [("", pl.from_arrow(loaded.with_format("arrow")[:]))]


def frame_records(frame: Any) -> Iterator[_Record]:
    for index, value in enumerate(frame.iter_rows(named=True)):
        yield _Record(index, index + 1, value)


# ---------------------------------------------------------------- one file


def read_file(
    path: Path, fmt: str, encoding: str | None, selector: str | None, mapped: set[str]
) -> tuple[FileInfo, Iterator[_Record]]:
    """What `path` holds (format, encoding, notes) and its records."""
    info = FileInfo(path)
    named = format_by_name(path)
    if fmt == "parquet" or (fmt == "auto" and named == "parquet"):
        info.format = "parquet"
        return info, parquet_records(path)
    data = open_bytes(path)
    if not data.strip():
        return info, iter(())
    decoded = decode(data, encoding)
    info.encoding, info.notes = decoded.encoding, list(decoded.notes)
    doc = None
    if fmt == "auto":
        fmt, doc, notes = sniff(decoded.text.removeprefix("\ufeff"), named, path)
        info.notes += notes
    elif fmt == "json" and MARK not in decoded.text:
        doc, error = _loads(decoded.text.removeprefix("\ufeff"))
        if error is not None:
            raise UserError(f"{path}: invalid JSON: {error}")
    info.format = fmt
    if fmt == "json":
        if doc is None:
            raise UserError(
                f"{path}: not valid {decoded.encoding} (byte {decoded.byte_offset(decoded.text.find(MARK))}); "
                "a .json file is one document, so nothing could be read: set dataset.encoding"
            )
        return info, json_records(doc, path, selector, info.notes)
    if fmt == "jsonl":
        return info, jsonl_records(decoded, selector)
    if selector is not None:
        raise UserError(f"{path}: dataset.records selects inside JSON; this file is {fmt}")
    return info, delimited_records(decoded, "," if fmt == "csv" else "\t", path, mapped)
