"""The pii stage: hand-written Korean true and false cases per kind, mask vs drop, evidence without values,
and `tunelab curate` / `tunelab audit` on a small file (reasons in decisions.parquet and the warehouse)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tunelab.curate import pii
from tunelab.curate.common import SIGNAL_SCHEMA, StageContext, with_content
from tunelab.curate.config import PiiSettings
from tunelab.errors import UserError
from tunelab.recipe import load_recipe
from tunelab.warehouse import store

# a valid resident registration number (check digit 8) and the same number with a wrong check digit
RRN = "900101-1234568"
RRN_BAD = "900101-1234561"


def kinds(text: str, **options) -> list[str]:
    return [m.kind for m in pii.find(text, **options)]


def test_rrn_needs_the_check_digit() -> None:
    assert pii.rrn_check_digit("900101123456") == 8  # 11 - (9*2+1*5+1*7+1*8+2*9+3*2+4*3+5*4+6*5) % 11
    assert kinds(f"제 주민등록번호는 {RRN} 입니다") == ["kr_rrn"]
    assert kinds(f"주민번호 {RRN.replace('-', '')}") == ["kr_rrn"]
    # the same digits with a wrong check digit: not a resident registration number, and not a card either
    assert kinds(f"제 주민등록번호는 {RRN_BAD} 입니다") == []
    assert kinds("1234567890123") == []  # 13 digits, month 56
    assert kinds("901301-1234567") == []  # month 13


def test_rrn_without_check_digit_when_asked() -> None:
    # the numbers issued since October 2020 carry no check digit: the dashed form is taken on request
    assert kinds(f"번호 {RRN_BAD}", rrn_checksum=False) == ["kr_rrn"]
    assert kinds(f"번호 {RRN_BAD.replace('-', '')}", rrn_checksum=False) == []
    assert kinds("번호 900101-9234561", rrn_checksum=False) == []  # gender digit 9 does not exist


@pytest.mark.parametrize(
    "text",
    ["010-1234-5678", "01012345678", "010 1234 5678", "010.1234.5678", "+82 10-1234-5678", "016-123-4567",
     "02-123-4567", "031-1234-5678", "(02) 2100-7000", "070-1234-5678"],
)  # fmt: skip
def test_phone_numbers(text: str) -> None:
    assert kinds(f"연락처는 {text} 입니다") == ["phone"]


@pytest.mark.parametrize(
    "text",
    ["2023-01-15", "2023.01.15", "20230115", "02.03.2021", "1588-1234", "0212345678", "010-12-5678",
     "버전 1.2.3", "12:30", "2010-1234-5678"],
)  # fmt: skip
def test_dates_and_other_numbers_are_not_phones(text: str) -> None:
    assert kinds(f"기록: {text} 참고") == []


def test_cards_need_luhn_and_an_issuer_prefix() -> None:
    assert kinds("카드번호 4111 1111 1111 1111 로 결제") == ["card"]
    assert kinds("카드번호 4111-1111-1111-1111") == ["card"]
    assert kinds("카드 5500000000000004") == ["card"]
    assert kinds("아멕스 3782-822463-10005") == ["card"]
    assert kinds("카드번호 4111 1111 1111 1112") == []  # Luhn fails
    assert kinds("주문번호 1111 1111 1111 1117") == []  # passes Luhn, no issuer starts with 1
    assert kinds("카드 4111-1111 1111-1111") == []  # mixed separators: not how a card is written


def test_accounts_only_near_a_keyword() -> None:
    assert kinds("국민은행 계좌 123456-01-234567 로 보내주세요") == ["account"]
    assert kinds("입금 계좌: 110-123-456789 (신한)") == ["account"]
    assert kinds("제품 코드 123456-01-234567 확인") == []  # no keyword
    assert (
        kinds("계좌 없음. 사건번호 2020-12-3456") == []
    )  # 10 digits: a case number, below the 11 accounts have
    # a phone number after 은행 stays a phone
    assert kinds("은행 대표번호 02-123-4567") == ["phone"]


def test_email_and_ip() -> None:
    assert kinds("메일 kim.minsu@naver.com 으로") == ["email"]
    assert kinds("예시: user@example.com, test@example.org") == []  # documentation domains
    assert kinds("접속 IP 8.8.8.8 에서") == ["ip"]
    assert kinds("공유기 192.168.0.1, 루프백 127.0.0.1, 마스크 255.255.255.0") == []
    assert kinds("파이썬 버전 3.10.4.1 설치") == []
    assert kinds("v1.2.3.4 릴리스") == []
    assert kinds("999.1.1.1") == []


@pytest.mark.parametrize(
    "text",
    ["０１０－１２３４－５６７８", "010—1234—5678", "010–1234–5678", "010‐1234‐5678", "010－1234－5678",
     "０２－１２３－４５６７"],
)  # fmt: skip
def test_phones_typed_full_width_or_with_other_dashes(text: str) -> None:
    """Missed before (new-user pass): an IME's full-width digits and a word processor's dashes."""
    found = pii.find(f"연락처는 {text}로 주세요")
    assert [(m.kind, f"연락처는 {text}로 주세요"[m.start : m.end]) for m in found] == [("phone", text)]


def test_international_emails_and_values_before_a_particle() -> None:
    """Korean-domain / IDN addresses and values right before a particle were missed (new-user pass)."""
    assert kinds("메일 홍길동@회사.한국 으로") == ["email"]
    assert kinds("메일 user@도메인.kr 로") == ["email"]
    assert kinds("kim.minsu@naver.com으로 보내 주세요") == ["email"]
    assert kinds("메일은 lee@daum.net. 확인 부탁") == ["email"]
    assert kinds("접속 IP 8.8.8.8에서 막혔어요") == ["ip"]
    assert kinds("예시 주소 홍길동@example.com 으로") == []  # still a placeholder
    text = "메일 홍길동@회사.한국 으로"
    assert pii.mask(text, pii.find(text)) == "메일 <PII:email> 으로"
    # an ASCII address right after Korean text: only the address is masked
    text = "이메일은abc@gmail.com로 보내 주세요"
    assert pii.mask(text, pii.find(text)) == "이메일은<PII:email>로 보내 주세요"


@pytest.mark.parametrize(
    "text",
    ["버전 1.2.3.4로 업데이트", "버전은 1.2.3.4 입니다", "v 1.2.3.4", "version: 1.2.3.4", "릴리스 1.2.3.4",
     "1.2.3.4 버전으로 올렸어요", "빌드 1.2.3.4 배포", "1.2.3.4.5 빌드"],
)  # fmt: skip
def test_version_numbers_are_not_ip_addresses(text: str) -> None:
    assert kinds(text) == []


def test_full_width_values_are_masked_and_never_in_the_evidence() -> None:
    value = "０１０－９８７６－５４３２"
    frame = pl.DataFrame({"sample_id": ["w:0"], "prompt": [f"번호 {value}로 연락"], "response": ["네"]})
    ctx = StageContext(kind="sft")
    out = pii.run(frame, PiiSettings(), ctx)
    assert out.frame["prompt"][0] == "번호 <PII:phone>로 연락"
    assert out.decisions["evidence"][0] == "masked pii:phone x1 at prompt[3:16]"
    text = json.dumps([out.decisions.to_dicts(), out.signals.to_dicts(), ctx.stats], ensure_ascii=False)
    assert value not in text and "9876" not in text and "９８７６" not in text


def frame_sft() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": ["d:0", "d:1", "d:2", "d:3"],
            "prompt": [
                f"제 주민번호는 {RRN} 이에요",
                "연락처 010-9876-5432 로 주세요",
                "안녕하세요",
                "IP 8.8.4.4",
            ],
            "response": ["알겠습니다.", "메일 lee@daum.net 도 드릴게요", "반갑습니다.", "네"],
        }
    )


VALUES = (RRN, "010-9876-5432", "lee@daum.net", "8.8.4.4")


def test_mask_writes_placeholders_keeps_rows_and_drops_content_columns() -> None:
    frame = with_content(frame_sft(), "sft")
    ctx = StageContext(kind="sft")
    out = pii.run(frame, PiiSettings(), ctx)
    assert (
        out.frame.height == 4
        and "content" not in out.frame.columns
        and "content_hash" not in out.frame.columns
    )
    rows = {r["sample_id"]: r for r in out.frame.to_dicts()}
    assert rows["d:0"]["prompt"] == "제 주민번호는 <PII:kr_rrn> 이에요"
    assert rows["d:1"]["prompt"] == "연락처 <PII:phone> 로 주세요"
    assert rows["d:1"]["response"] == "메일 <PII:email> 도 드릴게요"
    assert rows["d:2"] == frame_sft().row(2, named=True)
    d = out.decisions
    assert d["kept"].all() and sorted(d["reason"]) == ["pii:email", "pii:ip", "pii:kr_rrn", "pii:phone"]
    assert d.filter(pl.col("reason") == "pii:phone")["evidence"][0] == "masked pii:phone x1 at prompt[4:17]"
    text = json.dumps([d.to_dicts(), out.signals.to_dicts(), ctx.stats], ensure_ascii=False)
    assert not any(value in text for value in VALUES), "a value reached the evidence, signals or stats"
    assert dict(out.signals.schema) == SIGNAL_SCHEMA
    assert set(out.signals["signal"]) == {"pii_kr_rrn", "pii_phone", "pii_email", "pii_ip"}


def test_drop_keeps_one_decision_per_row_with_the_first_kind() -> None:
    frame = frame_sft().with_columns(pl.lit("카드 4111111111111111, 전화 010-1111-2222").alias("system"))
    out = pii.run(
        frame.head(2), PiiSettings(action="drop", kinds=["card", "phone"]), StageContext(kind="sft")
    )
    assert out.frame.height == 0
    assert out.decisions["reason"].to_list() == ["pii:card", "pii:card"]
    assert (~out.decisions["kept"]).all() and out.decisions["sample_id"].n_unique() == 2
    assert "pii:phone x" in out.decisions["evidence"][1] and "4111" not in out.decisions["evidence"][0]


def test_conversation_turns_are_masked_in_place() -> None:
    messages = [
        {"role": "system", "content": "상담원입니다"},
        {"role": "user", "content": "제 번호는 010-2222-3333 이에요"},
        {"role": "assistant", "content": "확인했습니다"},
    ]
    frame = pl.DataFrame({"sample_id": ["c:0"], "messages": [messages]})
    out = pii.run(frame, PiiSettings(), StageContext(kind="chat"))
    turns = out.frame["messages"][0].to_list()
    assert [t["role"] for t in turns] == ["system", "user", "assistant"]
    assert turns[1]["content"] == "제 번호는 <PII:phone> 이에요" and turns[2]["content"] == "확인했습니다"
    assert out.decisions["evidence"][0] == "masked pii:phone x1 at messages[1][6:19]"


def test_a_label_is_masked_or_dropped_like_any_field() -> None:
    """A label holding a phone number reached train/val and the warehouse unmasked (new-user pass)."""
    frame = pl.DataFrame(
        {
            "sample_id": ["l:0", "l:1"],
            "prompt": ["연락처를 분류해 줘", "감정을 분류해 줘"],
            "response": ["네", "네"],
            "label": ["010-4444-7777", "기쁨"],
        }
    )
    ctx = StageContext(kind="sft")
    out = pii.run(frame, PiiSettings(), ctx)
    assert out.frame["label"].to_list() == ["<PII:phone>", "기쁨"]
    assert out.decisions.select("sample_id", "reason", "evidence").rows() == [
        ("l:0", "pii:phone", "masked pii:phone x1 at label[0:13]")
    ]
    assert "4444" not in json.dumps([out.decisions.to_dicts(), ctx.stats], ensure_ascii=False)
    dropped = pii.run(frame, PiiSettings(action="drop"), StageContext(kind="sft"))
    assert dropped.frame["sample_id"].to_list() == ["l:1"]
    # the warehouse copy of every read row is masked too
    assert pii.masked(frame, "sft", PiiSettings(action="drop"))["label"].to_list() == ["<PII:phone>", "기쁨"]


def test_dpo_and_raft_fields() -> None:
    dpo = pl.DataFrame(
        {"sample_id": ["p:0"], "prompt": ["질문"], "chosen": ["답"], "rejected": ["이메일은 a.b@gmail.com"]}
    )
    out = pii.run(dpo, PiiSettings(), StageContext(kind="dpo"))
    assert out.frame["rejected"][0] == "이메일은 <PII:email>" and out.frame["chosen"][0] == "답"
    raft = pl.DataFrame(
        {
            "sample_id": ["r:0"],
            "context": [["문서 하나", "문의: 02-123-4567"]],
            "question": ["?"],
            "answer": ["!"],
        }
    )
    out = pii.run(raft, PiiSettings(), StageContext(kind="raft"))
    assert out.frame["context"][0].to_list() == ["문서 하나", "문의: <PII:phone>"]


def test_unknown_kind_is_a_recipe_error(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dataset: {path: d.jsonl, name: d}\ncurate: {pii: {kinds: [ssn]}}\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_recipe(recipe)
    assert "pii" in str(info.value) and "\n" not in str(info.value)


ROWS = [
    {"instruction": "오늘 날씨 어때요?", "output": "맑고 따뜻합니다."},
    {"instruction": "연락처 남길게요 010-5555-6666", "output": "네, 저장했습니다."},
    {"instruction": "한국어로 인사해 주세요", "output": "Hello, nice to meet you."},
    {"instruction": "これは何ですか", "output": "日本語の質問です"},
    {"instruction": "제 주민번호는 " + RRN + " 입니다", "output": "그런 정보는 보내지 마세요."},
    {"instruction": "감사합니다", "output": "천만에요!"},
]


def run_cli(args: list[str]):
    from tunelab.cli import app

    return CliRunner().invoke(app, args, env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


def test_cli_curate_and_audit_show_language_and_pii_reasons(tmp_path: Path) -> None:
    data = tmp_path / "small.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in ROWS] + ['{"instruction": "broken']
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"dataset: {{path: {data}, name: small}}\n"
        "curate:\n  stages: [schema, normalize, language, pii, split]\n  split: {val_ratio: 0.0}\n"
        "  max_quarantine_ratio: 0.5\n"
        f"workspace: {{dir: {tmp_path / 'ws'}}}\n",
        encoding="utf-8",
    )
    out = run_cli(["curate", str(recipe)])
    assert out.exit_code == 0, out.output
    curation_id = out.output.strip().splitlines()[-1]
    folder = tmp_path / "ws" / "curations" / curation_id
    report = json.loads((folder / "report.json").read_text())
    counts = report["counts"]
    assert (counts["read"], counts["kept"], counts["dropped"], counts["quarantined"]) == (7, 4, 2, 1)
    # the report lists masked rows (kept, with their reason) beside the drops
    listed = {
        (r["reason"], r["kept"], r["count"]) for r in report["reasons"] if r["stage"] in ("language", "pii")
    }
    assert listed == {
        ("lang:en", False, 1),
        ("lang:ja", False, 1),
        ("pii:phone", True, 1),
        ("pii:kr_rrn", True, 1),
    }
    assert "pii:phone" in html.unescape(
        (folder / "report.md").read_text(encoding="utf-8")
    )  # cells are char refs
    decisions = pl.read_parquet(folder / "decisions.parquet")
    by_reason = dict(
        decisions.filter(pl.col("stage").is_in(["language", "pii"])).select("reason", "sample_id").iter_rows()
    )
    assert by_reason == {
        "lang:en": "small:2",
        "lang:ja": "small:3",
        "pii:phone": "small:1",
        "pii:kr_rrn": "small:4",
    }
    train = pl.read_parquet(folder / "train.parquet")
    assert "연락처 남길게요 <PII:phone>" in train["prompt"].to_list()
    assert not any("010-5555-6666" in t or RRN in t for t in train["prompt"].to_list())
    db = tmp_path / "ws" / "tunelab.duckdb"
    stored = store.query(db, "SELECT reason, evidence FROM decisions WHERE stage IN ('language', 'pii')")
    assert sorted(stored["reason"]) == ["lang:en", "lang:ja", "pii:kr_rrn", "pii:phone"]
    assert not any(v in e for e in stored["evidence"] for v in ("010-5555-6666", RRN))
    signals = store.query(db, "SELECT stage, signal, count(*) AS n FROM signals GROUP BY ALL")
    assert {"hangul_ratio", "lang_confidence", "pii_phone", "pii_kr_rrn"} <= set(signals["signal"])
    samples = store.query(db, "SELECT prompt FROM samples WHERE curation_id = ?", [curation_id])
    assert not any(RRN in (p or "") for p in samples["prompt"])

    audit = run_cli(["audit", str(data), "--format", "json", "-w", str(tmp_path / "ws2")])
    assert audit.exit_code in (0, 3), audit.output
    found = json.loads(audit.stdout)
    dropped = {r["reason"] for r in found["reasons"]}
    assert {"lang:en", "lang:ja"} <= dropped  # what the audit would drop, counted
    examples = {r["reason"]: r for r in found["reason_examples"]}
    assert examples["pii:phone"]["kept"] and "<PII:phone>" in examples["pii:phone"]["examples"][0]["text"]
    assert "010-5555-6666" not in audit.output and RRN not in audit.output


def test_shared_datasets_pii_counts() -> None:
    """Counts looked at on the real data (docs/curate.md): HRC's answers quote three public institutions'
    phone numbers (법무부 02 2100 7000, 인권위원회 02 2125 9700, 02 731 0210), ChatbotData holds none."""
    hrc = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "human-rights-corpus__HRC"
    chatbot = hrc.parent / "songys__Chatbot_data" / "ChatbotData.csv"
    if not hrc.is_dir() or not chatbot.exists():
        pytest.skip(f"{hrc.parent} absent (the shared datasets are not part of a fresh clone)")
    rows = [
        json.loads(line)
        for line in (hrc / "humane_right_copus_v1.jsonl.json").read_text("utf-8").splitlines()
    ]
    frame = pl.DataFrame(
        {
            "sample_id": [f"h:{i}" for i in range(len(rows))],
            "prompt": [r["질의"] for r in rows],
            "chosen": [r["상담례, 결정례 기반 답변"] for r in rows],
            "rejected": [r["ChatGPT API 답변"] for r in rows],
        }
    )
    ctx = StageContext(kind="dpo")
    pii.run(frame, PiiSettings(), ctx)
    assert ctx.stats["pii"]["matches"] == {"phone": 3}
    qa = pl.read_csv(chatbot, infer_schema=False)
    frame = qa.select(pl.format("c:{}", pl.int_range(pl.len())).alias("sample_id"), prompt="Q", response="A")
    ctx = StageContext(kind="sft")
    pii.run(frame, PiiSettings(), ctx)
    assert ctx.stats["pii"]["matches"] == {}


def test_a_malformed_line_never_carries_personal_information_into_the_quarantine(tmp_path: Path) -> None:
    """Found in the new-user pass: a broken JSON line is quarantined raw — quarantine.parquet, the warehouse's
    quarantine table and the exit-3 message showed the RRN and phone number the pii stage masks elsewhere."""
    data = tmp_path / "leaky.jsonl"
    good = [
        json.dumps({"prompt": f"질문 {i}", "response": f"답 {i}입니다"}, ensure_ascii=False) for i in range(3)
    ]
    broken = f'{{"prompt": "제 주민번호는 {RRN} 이고 전화 010-2222-3333 입니다", "response": '
    data.write_text("\n".join([*good, broken]) + "\n", encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"dataset: {{path: {data}, name: leaky}}\n"
        "curate: {stages: [schema, pii, split], split: {val_ratio: 0.0}, max_quarantine_ratio: 0.1}\n"
        f"workspace: {{dir: {tmp_path / 'ws'}}}\n",
        encoding="utf-8",
    )
    out = run_cli(["curate", str(recipe)])
    assert out.exit_code == 3, out.output  # a quarter quarantined: written, and said so
    assert RRN not in out.output and "010-2222-3333" not in out.output
    db = tmp_path / "ws" / "tunelab.duckdb"
    raw = store.query(db, "SELECT raw, error FROM quarantine")
    assert raw.height == 1 and "<PII:kr_rrn>" in raw["raw"][0] and "<PII:phone>" in raw["raw"][0]
    stored = "".join(raw["raw"].to_list() + raw["error"].to_list())
    assert RRN not in stored and "010-2222-3333" not in stored
    folder = next((tmp_path / "ws" / "curations").iterdir())
    on_disk = pl.read_parquet(folder / "quarantine.parquet")
    assert not any(RRN in (text or "") for text in on_disk["raw"].to_list())
