"""Regressions found by a new user's QA pass over the curation side (small hand-written inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from tunelab.curate import language
from tunelab.curate.calibrate import read_pairs
from tunelab.curate.common import StageContext
from tunelab.curate.config import LanguageSettings
from tunelab.errors import UserError


def dpo(*rows: tuple[str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": [f"d:{i}" for i in range(len(rows))],
            "prompt": [p for p, _, _ in rows],
            "chosen": [c for _, c, _ in rows],
            "rejected": [r for _, _, r in rows],
        }
    )


def test_language_does_not_count_special_tokens_as_latin_letters() -> None:
    # language runs before quality cuts a trailing <|endoftext|>: the token's letters made a short Korean
    # answer read as hangul_ratio 0.25 and dropped the pair
    frame = dpo(
        ("인사해 주세요", "안녕하세요 반가워요<|endoftext|>", "싫어요<|endoftext|>"),
        ("인사해 주세요", "네, 맞아요.</s>", "아니요[|endofturn|]"),
        ("인사해 주세요", "안녕하세요 반가워요", "Hello there, nice to meet you all"),
    )
    # with the chat-data floor on (the default is off): the tokens must not push the ratio under it
    out = language.run(frame, LanguageSettings(min_hangul_ratio=0.3), StageContext(kind="dpo"))
    dropped = out.decisions.filter(~pl.col("kept"))
    assert dropped["sample_id"].to_list() == ["d:2"]  # a real English answer is still a finding
    assert out.frame["sample_id"].to_list() == ["d:0", "d:1"]


def test_calibrate_reads_a_tsv_whose_text_opens_with_a_quote(tmp_path: Path) -> None:
    # KorSTS-style TSV: a sentence starting with a quoted word made the CSV quote rule swallow the rest
    path = tmp_path / "pairs.tsv"
    path.write_text(
        "score\ttext_a\ttext_b\n"
        '5.0\t한 남자가 춤을 추고 있다.\t"한" 남자가 춤을 추고 있다.\n'
        '0.5\t"일반화된 행성"에 대한 정의\t고양이가 잔다.\n'
        "4.5\t아이가 말을 타고 있다.\t어린아이가 말을 타고 있다.\n",
        encoding="utf-8",
    )
    pairs = read_pairs(path)
    assert pairs.text_a[1] == '"일반화된 행성"에 대한 정의'
    assert pairs.text_b[0] == '"한" 남자가 춤을 추고 있다.'
    assert pairs.positive.tolist() == [True, False, True]


def test_raft_build_refuses_to_write_over_its_input_or_the_warehouse(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    qa = tmp_path / "qa.json"
    original = json.dumps(
        {
            "data": [
                {
                    "paragraphs": [
                        {
                            "context": "서울은 대한민국의 수도이다.",
                            "qas": [{"id": "q1", "question": "수도는?", "answers": [{"text": "서울"}]}],
                        },
                        {
                            "context": "부산은 항구 도시이다.",
                            "qas": [{"id": "q2", "question": "항구 도시는?", "answers": [{"text": "부산"}]}],
                        },
                    ]
                }
            ]
        },
        ensure_ascii=False,
    )
    qa.write_text(original, encoding="utf-8")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tunelab.duckdb").write_bytes(b"not to be replaced")
    runner = CliRunner()
    for out in (qa, ws / "tunelab.duckdb", ws / "curations" / "raft.jsonl"):
        result = runner.invoke(app, ["raft", "build", str(qa), "--out", str(out), "-w", str(ws)])
        # in-process the UserError surfaces as such; tunelab's entry point prints it as one line, exit 2
        assert isinstance(result.exception, UserError), result.output
    assert qa.read_text(encoding="utf-8") == original
    assert (ws / "tunelab.duckdb").read_bytes() == b"not to be replaced"
    ok = runner.invoke(app, ["raft", "build", str(qa), "--out", str(tmp_path / "raft.jsonl"), "-w", str(ws)])
    assert ok.exit_code == 0, ok.output
    assert (
        json.loads((tmp_path / "raft.jsonl").read_text(encoding="utf-8").splitlines()[0])["answer"] == "서울"
    )


def test_audit_threshold_sweep_pairs_hide_personal_information(tmp_path: Path) -> None:
    # the sweep runs on the rows before the pii stage: its "pairs just above" printed raw phone numbers
    # and e-mail addresses while the reason examples beside them were masked
    from tunelab.curate.audit import audit, default_config
    from tunelab.records.config import DatasetConfig
    from tunelab.workspace import Workspace

    path = tmp_path / "dup.jsonl"
    rows = [
        {
            "prompt": f"제 연락처는 010-{1000 + i}-5678 입니다{tail} 상담 예약",
            "response": f"메일 u{i}@naver.com 로 보냈어요.",
        }
        for i in range(4)
        for tail in ("", ".")
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    found = audit(
        DatasetConfig(path=path, name="dup"),
        default_config(),
        Workspace(tmp_path / "ws"),
        minhash_thresholds=(0.5,),
        show_progress=False,
    )
    pairs = [pair for result in found.sweep.results for pair in result.examples]
    assert pairs, "the planted near-duplicates give the sweep example pairs"
    text = json.dumps(pairs, ensure_ascii=False)
    assert "010-" not in text and "@naver.com" not in text
    assert "<PII:phone>" in text and "<PII:email>" in text


def test_language_does_not_count_an_email_address_as_english() -> None:
    frame = pl.DataFrame(
        {
            "sample_id": ["s:0", "s:1"],
            "prompt": ["이메일 형식 예시 알려줘", "이메일 형식 예시 알려줘"],
            "response": [
                "example.user@example.com 같은 형식입니다.",
                "It looks like name at example dot com 형식",
            ],
        }
    )
    out = language.run(frame, LanguageSettings(min_hangul_ratio=0.3), StageContext(kind="sft"))
    assert out.frame["sample_id"].to_list() == ["s:0"]  # the English prose still reads as English


def test_normalize_keeps_the_indentation_of_code_and_nested_lists() -> None:
    from tunelab.curate import normalize
    from tunelab.curate.config import NormalizeSettings
    from tunelab.textnorm import normalize_text

    code = "예시입니다:\n```python\nfor i in range(3):\n    if i:\n        print(i)\n```"
    texts = [code, "- 과일\n  - 사과  \n\t- 배", "두  칸   띄어쓰기\t탭  \n\n\n\n 끝 "]
    frame = pl.DataFrame({"sample_id": ["a", "b", "c"], "prompt": ["질문"] * 3, "response": texts})
    clean = normalize.transform(frame, NormalizeSettings())["response"].to_list()
    assert clean == [code, "- 과일\n  - 사과\n\t- 배", "두 칸 띄어쓰기 탭\n\n 끝"]
    assert clean == [normalize_text(t) for t in texts]  # the reference agrees with the polars pass


def test_truncation_reads_doubled_korean_chat_endings_as_complete() -> None:
    from tunelab.curate.quality import truncation

    texts = [
        "흐음 이거 고민인데여;;",  # ;; is an emoticon (Question_pair train)
        "여자친구와 헤어진지 어느덧 6개월이네,,",
        "그래서 말인데,",  # a single comma still reads as cut
        '그는 "안녕이라고 말했다.',  # and an odd straight quote
    ]
    assert truncation(pl.Series(texts), 200).to_list() == [None, None, "ends with ','", "unclosed '\"'"]
