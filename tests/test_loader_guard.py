"""The quarantine guard through the real CLI: written, but exit 3 with one line saying what to change."""

import json
from pathlib import Path

import pytest
import yaml

from tunelab.cli import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def recipe(tmp_path: Path, data: Path, **dataset) -> Path:
    path = tmp_path / "recipe.yaml"
    body = {
        "dataset": {"path": str(data), "name": "d", **dataset},
        "curate": {"stages": ["schema", "exact"]},
        "workspace": {"dir": str(tmp_path / "ws")},
    }
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return path


def rows(n: int) -> list[dict]:
    return [{"prompt": f"질문 {i}", "response": f"답변 {i}"} for i in range(n)]


def test_a_json_array_forced_as_jsonl_exits_3_with_the_hint(tmp_path: Path, capsys):
    data = tmp_path / "array.jsonl"
    data.write_text(json.dumps(rows(50), ensure_ascii=False, indent=2), encoding="utf-8")
    code, out, err = run(["curate", str(recipe(tmp_path, data, format="jsonl"))], capsys)
    assert code == 3
    (line,) = [text for text in err.splitlines() if text.startswith("error:")]  # progress goes to stderr too
    assert line.startswith("error: d (") and "202 of 202 records quarantined" in line
    assert line.endswith(": the file is one JSON document: set dataset.format: json (or auto)")
    assert "line 1 is '['" in line
    assert len(list((tmp_path / "ws" / "curations").iterdir())) == 1  # written, for inspection
    # left to auto, the same file reads fine
    code, out, err = run(["curate", str(recipe(tmp_path, data))], capsys)
    assert code == 0 and "error:" not in err


def test_a_wrong_forced_encoding_names_the_setting(tmp_path: Path, capsys):
    data = tmp_path / "korean.csv"
    data.write_bytes(
        ("prompt,response\n" + "\n".join(f"질문 {i},답변 {i}" for i in range(20)) + "\n").encode("cp949")
    )
    code, _, err = run(["curate", str(recipe(tmp_path, data, encoding="utf-8"))], capsys)
    assert code == 3
    assert "20 of 20 records quarantined" in err and "invalid UTF-8 at byte 16" in err
    assert "dataset.encoding is 'utf-8' but the file is not in it" in err
    code, out, err = run(["curate", str(recipe(tmp_path, data)), "--format", "json"], capsys)
    assert code == 0, err
    (curation,) = json.loads(out)["curations"]
    assert curation["counts"]["kept"] == 20 and curation["source"]["encoding"] == "cp949"


def test_empty_file_is_one_line_and_never_registered(tmp_path: Path, capsys):
    data = tmp_path / "blank.jsonl"
    data.write_text("\n\n   \n", encoding="utf-8")
    code, _, err = run(["curate", str(recipe(tmp_path, data))], capsys)
    assert code == 2
    assert err == f"error: {data}: no records: the file is empty or holds only blank lines\n"
    assert not (tmp_path / "ws" / "tunelab.duckdb").exists()
    code, _, err = run(["audit", str(data)], capsys)
    assert code == 2 and err.count("\n") == 1


def test_nothing_kept_exits_3_naming_the_reason(tmp_path: Path, capsys):
    data = tmp_path / "no-answers.jsonl"
    data.write_text(
        "\n".join(json.dumps({"prompt": f"질문 {i}"}, ensure_ascii=False) for i in range(5)), encoding="utf-8"
    )
    code, _, err = run(["audit", str(data), "--workspace", str(tmp_path / "ws")], capsys)
    assert code == 3
    assert "0 of 5 records kept; commonest reason: schema missing_field:response (5 records)" in err


def test_a_few_quarantined_lines_under_the_ratio_exit_0(tmp_path: Path, capsys):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows(40)] + ["{broken"]
    data = tmp_path / "mostly.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = run(["curate", str(recipe(tmp_path, data))], capsys)
    assert code == 0 and "error:" not in err  # 1 of 41 is under 0.05
    code, _, err = run(["audit", str(data), "--workspace", str(tmp_path / "ws")], capsys)
    assert code == 0
    strict = recipe(tmp_path, data)
    body = yaml.safe_load(strict.read_text(encoding="utf-8"))
    body["curate"]["max_quarantine_ratio"] = 0.01
    strict.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    code, _, err = run(["curate", str(strict)], capsys)
    assert code == 3 and "1 of 41 records quarantined" in err and "line 41 is '{broken'" in err
