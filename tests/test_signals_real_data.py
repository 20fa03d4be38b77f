"""The signal stages (pairs, language, pii, quality) through `tunelab audit`: hand-written rows whose reasons
and examples are known, then the real public datasets in ../shared/data with the counts per reason asserted
after the flagged rows were read (docs/curate.md "Signals on the shared datasets" lists them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tunelab.curate.audit import audit, default_config
from tunelab.records.config import DatasetConfig
from tunelab.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]

HAND_ROWS = [
    ("연락처 알려줘", "제 번호는 010-1234-5678 입니다. 연락 주세요."),  # 0 phone: masked, kept
    ("What is the capital of France?", "The capital of France is Paris, a large city."),  # 1 English: allowed
    ("안녕하세요 반갑습니다", "저는 AI 언어 모델이기 때문에 감정을 느낄 수 없습니다."),  # 2 refusal
    ("노래 불러줘", "아" * 35),  # 3 repetition
    ("오늘 날씨 어때?", "맑고 따뜻한 날씨가 이어지겠습니다.<|endoftext|>"),  # 4 special token
    (
        "[bold red]마크업[/bold red] 테스트",
        "[link=http://x]링크[/link] 010-9876-5432 로 전화",
    ),  # 5 markup + phone
    ("김치찌개 끓이는 법을 알려주세요.", "돼지고기와 김치를 볶은 뒤 물을 붓고 끓입니다."),  # 6 clean
]


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"prompt": p, "response": r}, ensure_ascii=False) for p, r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_audit_counts_reasons_with_examples_and_hides_personal_information(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "hand.jsonl", HAND_ROWS)
    found = audit(
        DatasetConfig(path=path, name="hand"),
        default_config(),
        Workspace(tmp_path / "ws"),
        show_progress=False,
    )
    groups = {(g["stage"], g["reason"], g["kept"]): g for g in found.examples}
    drops = {(s, r): g["count"] for (s, r, kept), g in groups.items() if not kept}
    assert drops == {
        ("quality", "quality:refusal"): 1,
        ("quality", "quality:repetition"): 1,
        ("quality", "quality:special_tokens"): 1,
    }
    assert [e["sample_id"] for e in groups[("quality", "quality:refusal", False)]["examples"]] == ["hand:2"]
    phone = groups[("pii", "pii:phone", True)]  # masked rows stay: a kept decision with its reason
    assert phone["count"] == 2 and [e["sample_id"] for e in phone["examples"]] == ["hand:0", "hand:5"]
    assert all("010-" not in e["text"] and "<PII:phone>" in e["text"] for e in phone["examples"])
    assert all("010-" not in (e["evidence"] or "") for e in phone["examples"])
    assert found.as_dict()["reason_examples"] == found.examples


def test_audit_prints_examples_as_text_never_as_markup(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "hand.jsonl", HAND_ROWS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "250"}
    shown = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "audit", str(path), "-w", str(tmp_path / "ws")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "reasons with examples" in out and "quality · quality:refusal" in out
    assert "[bold red]마크업[/bold red]" in out and "[link=http://x]링크[/link]" in out  # printed as written
    assert "<PII:phone>" in out and "010-1234-5678" not in out and "010-9876-5432" not in out
