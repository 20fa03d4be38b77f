"""No line stops a load: whatever the bytes, every record is read or quarantined with its error."""

import json
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records


def load(path, **kw):
    return load_dataset_records(DatasetConfig(path=path, name="t", **kw))


def test_the_three_lines_that_crashed_are_quarantined_with_their_error(tmp_path: Path):
    path = tmp_path / "crash.jsonl"
    lines = [
        '{"prompt": "\\ud800", "response": "lone surrogate"}',
        "[" * 50_000 + "]" * 50_000,
        '{"prompt": ' + "9" * 5_000 + ', "response": "x"}',
        '{"prompt": "멀쩡한 질문", "response": "멀쩡한 답"}',
        '{"prompt": "\\ud83d\\ude00 짝 맞는 서로게이트", "response": "ok"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load(path)
    assert (result.read, result.frame.height, result.quarantine.height) == (5, 2, 3)
    errors = result.quarantine["error"].to_list()
    assert errors[0].startswith("invalid JSON: no low surrogate in string")
    assert errors[1].startswith("invalid JSON: depth limit exceeded")
    assert errors[2].startswith("invalid JSON: number is infinity")
    assert result.quarantine["raw"].to_list() == lines[:3]  # whole, 100,000 characters included
    assert result.frame["prompt"].to_list() == ["멀쩡한 질문", "😀 짝 맞는 서로게이트"]


def test_deep_and_huge_json_documents_are_one_line_errors(tmp_path: Path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 50_000 + "]" * 50_000, encoding="utf-8")
    # the whole file is one document that cannot be parsed: one line, not a RecursionError
    result = load(path)
    assert (result.read, result.quarantine.height) == (1, 1)
    assert result.quarantine["error"][0].startswith("invalid JSON: depth limit exceeded")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
record = st.dictionaries(
    st.sampled_from(["prompt", "response", "messages", "label", "id", "instruction", "output", "x"]),
    json_values,
    max_size=5,
)
line = st.one_of(
    record.map(lambda r: json.dumps(r, ensure_ascii=False)),
    json_values.map(json.dumps),
    st.text(alphabet=string.printable + '가나다"{}[]\\', max_size=40),
)


def _check(path: Path, **kw) -> None:
    try:
        result = load(path, **kw)
    except UserError as exc:  # the intended outcome for a file with no record: one line naming the file
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert result.frame.height + result.quarantine.height == result.read
    assert result.read > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line, min_size=1, max_size=12))
def test_random_json_lines_never_escape_the_loader(tmp_path: Path, lines: list[str]):
    path = tmp_path / "random.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    for kind in ("sft", "chat", "dpo"):
        _check(path, kind=kind)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), name=st.sampled_from(["r.jsonl", "r.json", "r.csv", "r.tsv"]))
def test_random_bytes_never_escape_the_loader(tmp_path: Path, data: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(data)
    _check(path)
    _check(path, encoding="cp949")
