"""The polars fast path gives exactly what the per-record path gives, or is not taken."""

import json
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.records.config import DatasetConfig
from tunelab.records.loader import _load_fast, load_dataset_records

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def both(path: Path, **kw):
    cfg = DatasetConfig(path=path, name="t", **kw)
    return load_dataset_records(cfg), load_dataset_records(cfg, fast=False)


def same(fast, slow) -> None:
    assert fast.read == slow.read
    assert fast.frame.schema == slow.frame.schema
    assert fast.frame.to_dicts() == slow.frame.to_dicts()
    assert fast.quarantine.to_dicts() == slow.quarantine.to_dicts()
    assert fast.source == slow.source


def alpaca(i: int, extra: str) -> dict:
    return {"id": f"sft_{i}", "instruction": f"질문 {i}", "input": extra, "output": f"답 {i}", "label": i % 2}


def test_a_clean_alpaca_file_takes_the_fast_path_and_matches(tmp_path: Path):
    path = tmp_path / "clean.jsonl"
    rows = [alpaca(i, "" if i % 3 else f"추가 {i}") for i in range(300)] + [alpaca(300, "  \t")]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    cfg = DatasetConfig(path=path, name="t")
    plain = {}
    assert _load_fast(path, cfg, plain, "label", {}) is not None  # the fast path is taken here
    fast, slow = both(path)
    same(fast, slow)
    assert fast.frame["prompt"][0] == "질문 0\n\n추가 0" and fast.frame["prompt"][1] == "질문 1"
    assert fast.frame["prompt"][300] == "질문 300"  # a blank input is no input
    assert fast.frame["source_id"][5] == "sft_5" and fast.frame["label"][:2].to_list() == ["0", "1"]


def test_what_the_fast_path_cannot_tell_sends_the_file_to_the_per_record_path(tmp_path: Path):
    cases = {
        "number_among_strings": [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": 5}],
        "explicit_null": [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": None}],
        "missing_key": [{"prompt": "a", "response": "b", "system": "s"}, {"prompt": "c", "response": "d"}],
        "hh_rlhf": [
            {"chosen": "\n\nHuman: hi\n\nAssistant: yes", "rejected": "\n\nHuman: hi\n\nAssistant: no"}
        ],
        "messages": [{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}],
    }
    for name, rows in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
        kind = "dpo" if name == "hh_rlhf" else "sft"
        cfg = DatasetConfig(path=path, name="t", kind=kind)
        assert _load_fast(path, cfg, {}, "label", {}) is None, name
        same(*both(path, kind=kind))
    lone = tmp_path / "lone.jsonl"
    lone.write_text(
        '{"prompt": "\\ud800", "response": "x"}\n{"prompt": "a", "response": "b"}\n', encoding="utf-8"
    )
    fast, slow = both(lone)
    same(fast, slow)
    assert fast.quarantine.height == 1


text = st.text(
    alphabet=st.sampled_from(list('가나 다\t\n,"\\x1A{}[]') + ["\x1c", "\u3000", "😀"]), max_size=8
)
value = st.one_of(text, st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
keys = st.sampled_from(["instruction", "input", "output", "prompt", "response", "label", "id", "text", "Q"])


@SETTINGS
@given(
    rows=st.lists(st.dictionaries(keys, value, min_size=1, max_size=5), min_size=1, max_size=8),
    kind=st.sampled_from(["sft", "dpo", "raft", "text"]),
    compact=st.booleans(),
)
def test_fast_and_per_record_paths_agree_on_random_flat_records(tmp_path: Path, rows, kind, compact):
    path = tmp_path / "random.jsonl"
    separators = (",", ":") if compact else (", ", ": ")
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False, separators=separators) for r in rows) + "\n",
        encoding="utf-8",
    )
    same(*both(path, kind=kind))


@SETTINGS
@given(n=st.integers(1, 40), blank_every=st.integers(1, 5), label=st.sampled_from([1, 1.0, "1", True, "x"]))
def test_fast_and_per_record_paths_agree_on_uniform_files(tmp_path: Path, n, blank_every, label):
    path = tmp_path / "uniform.jsonl"
    rows = [{**alpaca(i, "" if i % blank_every else "추가"), "label": label} for i in range(n)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    fast, slow = both(path)
    same(fast, slow)
    assert pl.Series(fast.frame["label"]).n_unique() == 1


def _lines_file(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_bytes(end.join(lines).encode("utf-8") + end.encode())
    return path


def test_a_few_bad_lines_take_the_hybrid_and_give_exactly_the_per_record_result(tmp_path: Path):
    rows = [json.dumps(alpaca(i, "" if i % 3 else f"추가 {i}"), ensure_ascii=False) for i in range(400)]
    rows[7] = '{"instruction": "잘린 줄", "output": '  # truncated
    rows[50] = ""  # blank: not a record, but its line still counts
    rows[120] = "[1, 2]"  # JSON, not an object
    rows[200] = '{"instruction": "a" "output": "b"}'  # looks like an object: polars refuses it
    rows[300] = '{"prompt": "\\ud800", "response": "x"}'  # lone surrogate: orjson refuses, polars would not
    rows[333] = "   "
    path = _lines_file(tmp_path / "few_bad.jsonl", rows)
    cfg = DatasetConfig(path=path, name="t")
    fast = _load_fast(path, cfg, {}, "label", {})
    assert fast is not None  # the hybrid is taken: polars parses the good lines
    assert fast.quarantine["source_line"].to_list() == [8, 121, 201, 301]
    slow = load_dataset_records(cfg, fast=False)
    same(fast, slow)
    assert fast.frame["source_row"][7] == 8 and fast.frame["sample_id"][7] == "t:8"
    same(*both(_lines_file(tmp_path / "crlf.jsonl", rows, "\r\n")))


def test_what_polars_types_or_keeps_differently_falls_back_or_matches(tmp_path: Path):
    head = [json.dumps(alpaca(i, ""), ensure_ascii=False) for i in range(150)]
    cases = {
        "int_label_then_float": [*head, json.dumps({**alpaca(150, ""), "label": 1.5})],
        "int_label_then_bool": [*head, json.dumps({**alpaca(150, ""), "label": True})],
        "key_after_inference": [*head, json.dumps({**alpaca(150, ""), "system": "s"})],
        "duplicate_key": [
            *head,
            '{"id": "x", "instruction": "a", "input": "", "output": "b", "output": "c"}',
        ],
        "surrogate_pair": [*head, json.dumps({**alpaca(150, ""), "output": "😀"})],
        "ascii_escapes": [json.dumps(alpaca(i, "추가")) for i in range(20)],
        "bad_first_line": ["{oops", *head],
        "bad_utf8_line": [*head[:5], '{"instruction": "\udcff"}', *head[5:]],
    }
    for name, lines in cases.items():
        path = tmp_path / f"{name}.jsonl"
        if name == "bad_utf8_line":
            path.write_bytes(b"\n".join(line.encode("utf-8", "surrogateescape") for line in lines) + b"\n")
        else:
            _lines_file(path, lines)
        same(*both(path))


bad_line = st.sampled_from(
    ["", "  ", "{", '{"a": 1', "[1]", "5", '"x"', '{"a": "x" "b": 1}', '{"a": "\\ud800"}', "\u3000", "{}"]
)


@SETTINGS
@given(
    rows=st.lists(st.dictionaries(keys, value, min_size=1, max_size=5), min_size=1, max_size=8),
    bad=st.lists(st.tuples(st.integers(0, 9), bad_line), max_size=3),
    kind=st.sampled_from(["sft", "text"]),
)
def test_fast_and_per_record_paths_agree_with_bad_lines_among_random_records(tmp_path: Path, rows, bad, kind):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    for at, line in bad:
        lines.insert(min(at, len(lines)), line)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    same(*both(path, kind=kind))
