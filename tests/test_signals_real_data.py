"""The signal stages (pairs, language, pii, quality) through `tunelab audit`: hand-written rows whose reasons
and examples are known, then the real public datasets in ../shared/data with the counts per reason asserted
after the flagged rows were read (docs/curate.md "Signals on the shared datasets" lists them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.curate import pii
from tunelab.curate.audit import Audit, audit, default_config
from tunelab.curate.config import CurateConfig
from tunelab.records.config import DatasetConfig
from tunelab.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

HAND_ROWS = [
    ("연락처 알려줘", "제 번호는 010-1234-5678 입니다. 연락 주세요."),  # 0 phone: masked, kept
    ("What is the capital of France?", "The capital of France is Paris, a large city."),  # 1 English: allowed
    ("안녕하세요 반갑습니다", "저는 AI 언어 모델이기 때문에 감정을 느낄 수 없습니다."),  # 2 refusal
    ("노래 불러줘", "아" * 35),  # 3 repetition
    ("오늘 날씨 어때?", "맑고 따뜻한 날씨가<|im_end|> 이어지겠습니다."),  # 4 special token inside the answer
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
    from typer.testing import CliRunner

    from tunelab.cli import app

    path = write_rows(tmp_path / "hand.jsonl", HAND_ROWS)
    shown = CliRunner().invoke(app, ["audit", str(path), "-w", str(tmp_path / "ws")], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "reasons with examples" in out and "quality · quality:refusal" in out
    assert "[bold red]마크업[/bold red]" in out and "[link=http://x]링크[/link]" in out  # printed as written
    assert "<PII:phone>" in out and "010-1234-5678" not in out and "010-9876-5432" not in out


# ---------------------------------------------------------------- the shared datasets

SIGNAL_STAGES = ["schema", "normalize", "pairs", "language", "pii", "quality"]


def shared_datasets(folder: Path, scratch: Path) -> dict[str, DatasetConfig]:
    """The shared files that load through the loader, with their field maps (MT-Bench: its questions and
    GPT-4's reference answers written as ShareGPT conversations, as tests/test_chat_fastchat.py does)."""
    from test_chat_fastchat import sharegpt_conversations

    mt_bench = scratch / "mt_bench_sharegpt.jsonl"
    conversations = sharegpt_conversations(folder / "lm-sys__FastChat")
    mt_bench.write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations), encoding="utf-8"
    )
    hrc = folder / "human-rights-corpus__HRC/humane_right_copus_v1.jsonl.json"
    return {
        "chatbot": DatasetConfig(
            path=folder / "songys__Chatbot_data/ChatbotData.csv",
            name="chatbot",
            fields={"prompt": "Q", "response": "A"},
        ),
        "hrc": DatasetConfig(
            path=hrc,
            name="hrc",
            fields={"prompt": "질의", "response": "상담례, 결정례 기반 답변", "label": "종류"},
        ),
        "hrcdpo": DatasetConfig(
            path=hrc,
            name="hrcdpo",
            kind="dpo",
            fields={"prompt": "질의", "chosen": "상담례, 결정례 기반 답변", "rejected": "ChatGPT API 답변"},
        ),  # fmt: skip
        "kullm": DatasetConfig(
            path=folder / "nlpai-lab__KULLM/user_oriented_instructions_eval.jsonl",
            name="kullm",
            fields={"prompt": "instruction", "response": "instances[0].output"},
        ),
        "hh": DatasetConfig(
            path=folder / "anthropics__hh-rlhf/harmless-base_test.jsonl.gz", name="hh", kind="dpo"
        ),
        "mtbench": DatasetConfig(path=mt_bench, name="mtbench", kind="chat"),
    }


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Audit]:
    if not SHARED.is_dir():
        pytest.skip(f"real datasets not found at {SHARED} (a fresh clone has no ../shared/data)")
    scratch = tmp_path_factory.mktemp("signals_real")
    cfg = CurateConfig(stages=SIGNAL_STAGES)
    workspace = Workspace(scratch / "ws")
    return {
        name: audit(dataset, cfg, workspace, show_progress=False)
        for name, dataset in shared_datasets(SHARED, scratch).items()
    }


def counts(found: Audit) -> dict[tuple[str, str, bool], int]:
    """Rows per (stage, reason, kept) of the signal stages and schema (normalize's `normalized` left out)."""
    return {
        (g["stage"], g["reason"], g["kept"]): g["count"] for g in found.examples if g["stage"] != "normalize"
    }


def flagged(found: Audit, reason: str) -> set[str]:
    """The sample ids of one reason (the audit keeps three examples; the decisions hold all)."""
    decisions = found.result.decisions
    return set(decisions.filter(decisions["reason"] == reason)["sample_id"].to_list())


# Counts per reason, asserted after reading every flagged row (docs/curate.md "Signals on the shared
# datasets" has the table and what was found in each). (stage, reason, kept): rows; kept=True = masked.
EXPECTED = {
    # two answers ending on a stray comma (`장갑 하나 사셔야겠어요,`): complete sentences, wrongly "truncated"
    "chatbot": {("quality", "quality:truncated", False): 2},
    # truncated: both really cut (`… 적절한 돌`, `… 제10조(노인복지시설`); the repetition is an answer repeating
    # the whole question in each list item; the phone is a public office number (02 …), not a person's
    "hrc": {
        ("quality", "quality:truncated", False): 2,
        ("quality", "quality:repetition", False): 1,
        ("pii", "pii:phone", True): 1,
    },
    # as DPO the ChatGPT answer is `rejected`: one of them loops a clause (0.90); the three phone numbers
    # are public office numbers (법무부, 인권위원회), masked all the same
    "hrcdpo": {
        ("quality", "quality:truncated", False): 2,
        ("quality", "quality:repetition", False): 2,
        ("pii", "pii:phone", True): 3,
    },
    # Korean instructions with the English reference outputs (MANIFEST): a Korean prompt answered in English
    # is a finding; the 12 rows kept have answers under 5 letters (`True`, `Spam`, `#DB7093`) or markup alone
    # (`<img src="url" alt="alternatetext">`: no English, read; it was a 236th lang:en while tags counted as
    # letters); url/symbol ratios flag four link lists the instructions asked for and a sudoku grid
    "kullm": {
        ("language", "lang:en", False): 235,
        ("quality", "quality:url_ratio", False): 4,
        ("quality", "quality:symbol_ratio", False): 1,
    },
    # truncated: answers cut mid-sentence (the data's own length cut); repetition: dot runs, `*cough*` x13,
    # a looped list (and one user's `hahaha…` in a prompt); e-mail: six addresses handed out in answers
    # or prompts; url: answers that are mostly one link; symbol: a masked card number. 98 truncated, not
    # 99: hh:1624 (read) quotes an encyclopedia from `"` to `”`, a complete answer, not an unclosed quote
    "hh": {
        ("quality", "quality:truncated", False): 98,
        ("quality", "quality:repetition", False): 6,
        ("schema", "empty:chosen", False): 4,
        ("quality", "quality:url_ratio", False): 4,
        ("quality", "quality:symbol_ratio", False): 1,
        ("pii", "pii:email", True): 6,
    },
    "mtbench": {},
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_counts_per_reason_on_the_shared_datasets(audits: dict[str, Audit], name: str) -> None:
    found = audits[name]
    assert counts(found) == EXPECTED[name]
    result = found.result
    assert result.kept + result.dropped + result.quarantined == result.read
    for group in found.examples:  # no example shows a value the pii stage looks for
        for example in group["examples"]:
            assert pii.find(example["text"]) == [], (name, group["reason"], example["sample_id"])


def test_the_rows_read_are_the_rows_flagged(audits: dict[str, Audit]) -> None:
    """The rows judged by eye are the ones the stages flag (a changed detector that finds as many other
    rows fails here)."""
    assert flagged(audits["chatbot"], "quality:truncated") == {"chatbot:2541", "chatbot:2554"}
    assert flagged(audits["hrc"], "quality:truncated") == {"hrc:320", "hrc:870"}
    assert flagged(audits["hrc"], "quality:repetition") == {"hrc:1401"}
    assert flagged(audits["hrc"], "pii:phone") == {"hrc:16"}
    assert flagged(audits["hrcdpo"], "quality:repetition") == {"hrcdpo:167", "hrcdpo:1401"}
    assert flagged(audits["hrcdpo"], "pii:phone") == {"hrcdpo:16", "hrcdpo:946", "hrcdpo:1277"}
    assert {"kullm:0", "kullm:1", "kullm:2"} <= flagged(audits["kullm"], "lang:en")
    assert flagged(audits["kullm"], "quality:symbol_ratio") == {"kullm:133"}
    assert flagged(audits["hh"], "quality:repetition") == {
        f"hh:{i}" for i in (1070, 1406, 1840, 1895, 2171, 2210)
    }
    assert flagged(audits["hh"], "pii:email") == {f"hh:{i}" for i in (352, 476, 653, 1259, 2167, 2188)}
    assert flagged(audits["hh"], "quality:url_ratio") == {f"hh:{i}" for i in (559, 1403, 1561, 1907)}
    assert flagged(audits["hh"], "quality:symbol_ratio") == {"hh:190"}
