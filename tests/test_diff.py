"""`tunelab diff`: two real curations of one small file (different stages) and of an edited copy, written to a
warehouse by the real pipeline; the rows whose decision must change are known in advance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tunelab.curate.config import CurateConfig
from tunelab.curate.diff import diff_curations
from tunelab.curate.diff_commands import compare
from tunelab.curate.pipeline import curate_dataset
from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig

ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    ("서울의 인구는 몇 명인가요?", "서울의 인구는 약 천만 명입니다."),  # 0 kept on both sides
    ("서울의 인구는 몇 명인가요?", "서울의 인구는 약 천만 명입니다."),  # 1 exact dup of 0 in A; kept in B
    ("주말에 뭐 할까요?", "네"),  # 2 kept in A; too short in B
    ("괜찮아요?", "응"),  # 3 kept in A (first of a dup pair); too short in B
    ("괜찮아요?", "응"),  # 4 exact dup of 3 in A; too short in B: same row, another reason
    ("김치찌개 끓이는 법을 알려주세요.", "돼지고기와 김치를 볶은 뒤 물을 붓고 끓입니다."),  # 5 kept
]
# A drops exact duplicates; B drops responses under 5 characters and keeps duplicates
STAGES_A = ["schema", "normalize", "exact", "split"]
STAGES_B = ["schema", "normalize", "length", "split"]


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"prompt": p, "response": r}, ensure_ascii=False) for p, r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def curate(path: Path, workspace: Path, stages: list[str], name: str = "tiny") -> str:
    cfg = CurateConfig(
        stages=stages, length={"min_chars": {"response": 5}}, split={"val_ratio": 0.0, "stratify": None}
    )
    result = curate_dataset(DatasetConfig(path=path, name=name), cfg, workspace, show_progress=False)
    return result.curation_id


@pytest.fixture(scope="module")
def curations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("diff")
    workspace = root / "ws"
    data = write_rows(root / "tiny.jsonl", ROWS)
    # the same file with a new first line: every row moves one row down (its sample id changes)
    edited = write_rows(
        root / "tiny_edited.jsonl", [("새로 넣은 질문입니다", "새로 넣은 답변입니다.")] + ROWS
    )
    ids = {
        "a": curate(data, workspace, STAGES_A),
        "b": curate(data, workspace, STAGES_B),
        "edited": curate(edited, workspace, STAGES_A),
    }
    return {"workspace": workspace, "db": workspace / "tunelab.duckdb", **ids}


def test_known_rows_change_with_both_reasons(curations: dict) -> None:
    found = compare(curations["db"], curations["a"], curations["b"])
    assert (found.paired_by_id, found.paired_by_content, found.added.height, found.removed.height) == (
        6,
        0,
        0,
        0,
    )
    assert found.change_counts == {"kept_to_dropped": 2, "dropped_to_kept": 1, "reason_changed": 1}
    changes = {row["sample_id_b"]: row for row in found.changes.to_dicts()}
    assert set(changes) == {"tiny:1", "tiny:2", "tiny:3", "tiny:4"}
    assert changes["tiny:1"]["change"] == "dropped_to_kept"
    assert (changes["tiny:1"]["stage_a"], changes["tiny:1"]["reason_a"]) == ("exact", "exact_dup")
    assert changes["tiny:1"]["stage_b"] is None
    for sid in ("tiny:2", "tiny:3"):
        assert changes[sid]["change"] == "kept_to_dropped"
        assert changes[sid]["stage_a"] is None
        assert changes[sid]["stage_b"] == "length" and "response" in changes[sid]["reason_b"]
    four = changes["tiny:4"]
    assert four["change"] == "reason_changed"
    assert (four["stage_a"], four["reason_a"]) == ("exact", "exact_dup")
    assert four["stage_b"] == "length" and four["reason_b"].startswith("too_short")
    reasons = {(r["stage"], r["reason"]): (r["a"], r["b"], r["delta"]) for r in found.reasons.to_dicts()}
    assert reasons[("exact", "exact_dup")] == (2, 0, -2)
    length_reason = next(key for key in reasons if key[0] == "length")
    assert reasons[length_reason] == (0, 3, 3)
    # the same curation against itself: nothing changed
    same = compare(curations["db"], curations["a"], curations["a"])
    assert same.changes.height == 0 and same.reasons["delta"].abs().sum() == 0


def test_rows_of_an_edited_file_pair_by_content(curations: dict) -> None:
    found = compare(curations["db"], curations["a"], curations["edited"])
    # a line inserted on top renumbers every row: aligned by content, each row meets its old self
    assert (found.paired_by_id, found.paired_by_content, found.content_changed) == (0, 6, 0)
    assert found.added["sample_id"].to_list() == ["tiny:0"] and found.removed.height == 0
    assert found.changes.height == 0  # the same rows got the same decisions (the first copy kept)
    assert found.as_dict()["added_rows"] == [
        {"sample_id": "tiny:0", "outcome": "kept", "stage": None, "reason": None}
    ]


def test_renamed_dataset_pairs_by_content(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "tiny.jsonl", ROWS)
    edited = write_rows(tmp_path / "more.jsonl", [("새로 넣은 질문입니다", "새로 넣은 답변입니다.")] + ROWS)
    a = curate(data, tmp_path / "ws", STAGES_A, name="tiny")
    b = curate(edited, tmp_path / "ws", STAGES_A, name="more")
    found = compare(tmp_path / "ws" / "tunelab.duckdb", a, b)
    assert (found.paired_by_id, found.paired_by_content) == (0, 6)
    assert found.added["sample_id"].to_list() == ["more:0"] and found.removed.height == 0
    assert found.changes.height == 0  # the same rows got the same decisions
    assert any("different datasets" in note for note in found.notes)


def tunelab(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_json_table_and_unknown_id(curations: dict) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    ws = str(curations["workspace"])
    runner = CliRunner()
    result = runner.invoke(app, ["diff", curations["a"], curations["b"], "-w", ws, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changes"] == {"kept_to_dropped": 2, "dropped_to_kept": 1, "reason_changed": 1}
    assert {row["sample_id_b"] for row in data["changed_rows"]} == {"tiny:1", "tiny:2", "tiny:3", "tiny:4"}

    # a unique prefix names a curation
    table = runner.invoke(
        app, ["diff", curations["a"][:-3], curations["b"], "-w", ws], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "kept → dropped" in table.stdout and "exact · exact_dup" in table.stdout
    assert "주말에 뭐 할까요?" in table.stdout  # the changed row's text
    with pytest.raises(UserError, match="give more of it"):
        compare(curations["db"], "tiny-", curations["b"])

    # through the real entry point: one line on stderr, exit code 2, nothing on stdout
    missing = tunelab("diff", "no-such-curation", curations["b"], "-w", ws)
    assert missing.returncode == 2 and missing.stdout == ""
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CURATION_A: no curation 'no-such-curation'")


def outcomes(hashes: list[str], dropped: dict[int, str] | None = None) -> pl.DataFrame:
    dropped = dropped or {}
    return pl.DataFrame(
        {
            "sample_id": [f"d:{i}" for i in range(len(hashes))],
            "content_hash": hashes,
            "outcome": ["dropped" if i in dropped else "kept" for i in range(len(hashes))],
            "stage": ["quality" if i in dropped else None for i in range(len(hashes))],
            "reason": [dropped.get(i) for i in range(len(hashes))],
            "evidence": [None] * len(hashes),
            "split": [None if i in dropped else "train" for i in range(len(hashes))],
        }
    )


def test_pairing_of_an_edited_file_in_memory() -> None:
    """3,000 rows with a repeated boilerplate text; B inserts a line on top, deletes row 1000 and rewrites
    row 2000: rows before 1000 pair by content (their ids moved), rows after by id, the rewritten one by id
    with another text."""
    a_hash = [f"h{i}" for i in range(3000)]
    for i in (10, 20, 30):
        a_hash[i] = "boilerplate"
    b_hash = ["new"] + a_hash[:1000] + a_hash[1001:]
    b_hash[2000] = "rewritten"
    empty = pl.DataFrame(schema={"stage": pl.String, "reason": pl.String, "kept": pl.Boolean, "n": pl.Int64})
    info = {"curation_id": "x", "dataset": "d", "read": 3000}
    found = diff_curations(
        info,
        outcomes(a_hash),
        empty,
        info,
        outcomes(b_hash, {2000: "quality:truncated", 11: "quality:refusal"}),
        empty,
    )
    assert (found.paired_by_content, found.paired_by_id, found.content_changed) == (1000, 1999, 1)
    assert found.added["sample_id"].to_list() == ["d:0"] and found.removed["sample_id"].to_list() == [
        "d:1000"
    ]
    assert found.changes.select("change", "sample_id_a", "sample_id_b", "paired_by").rows() == [
        ("kept_to_dropped", "d:10", "d:11", "content"),  # the first boilerplate copy meets the first copy
        ("kept_to_dropped", "d:2000", "d:2000", "id"),
    ]
