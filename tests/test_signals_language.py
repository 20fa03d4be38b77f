"""The language stage per field and kind, its signals, and korean_answer_rate; real data when present."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tunelab.curate import language
from tunelab.curate.common import SIGNAL_SCHEMA, StageContext
from tunelab.curate.config import CurateConfig, LanguageSettings
from tunelab.errors import UserError
from tunelab.evaluate.compare import compare_models
from tunelab.evaluate.metrics import score_pairs

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def run(frame: pl.DataFrame, kind: str = "sft", **settings):
    return language.run(frame, LanguageSettings(**settings), StageContext(kind=kind))


def sft(*pairs: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": [f"s:{i}" for i in range(len(pairs))],
            "prompt": [p for p, _ in pairs],
            "response": [r for _, r in pairs],
        }
    )


def dropped(out) -> dict[str, tuple[str, str]]:
    d = out.decisions.filter(~pl.col("kept"))
    return {
        sid: (reason, evidence)
        for sid, reason, evidence in d.select("sample_id", "reason", "evidence").iter_rows()
    }


def test_english_answer_to_a_korean_prompt_is_a_finding_naming_the_field() -> None:
    out = run(
        sft(
            ("오늘 날씨가 어때요?", "It is sunny and warm today."),
            ("오늘 날씨가 어때요?", "맑고 따뜻합니다."),
            ("What is the capital of Korea?", "The capital is Seoul."),
            ("SNS 흔적", "SNS 흔적 삭제하세요."),  # Hangul on both sides: no mismatch (ChatbotData)
            ("안녕하세요 반가워요", "OK"),  # under min_letters: not judged
        )
    )
    found = dropped(out)
    assert set(found) == {"s:0"}
    reason, evidence = found["s:0"]
    assert reason == "lang:en" and evidence.startswith("response: en") and "question is ko" in evidence
    assert out.frame["sample_id"].to_list() == ["s:1", "s:2", "s:3", "s:4"]


def test_match_prompt_off_keeps_mixed_pairs() -> None:
    assert dropped(run(sft(("오늘 날씨가 어때요?", "It is sunny today.")), match_prompt=False)) == {}


def test_languages_outside_allow() -> None:
    frame = sft(
        ("これは何ですか", "これはペンです"),
        ("这是什么东西", "这是一支笔"),
        ("Tell me a joke please", "Why did the chicken cross the road?"),
        ("농담 하나 해줘", "닭이 길을 건넌 이유는?"),
    )
    found = dropped(run(frame))
    assert {sid: r for sid, (r, _) in found.items()} == {"s:0": "lang:ja", "s:1": "lang:zh"}
    assert "prompt: ja" in found["s:0"][1] and "not in allow" in found["s:0"][1]
    korean_only = dropped(run(frame, allow=["ko"]))
    assert korean_only["s:2"][0] == "lang:en" and "s:3" not in korean_only


def test_hangul_ratio_floor_and_code_blocks() -> None:
    mostly_english = "이건 a very long English sentence with only one Korean word in it, really"
    code_answer = (
        "정렬 코드는 다음과 같습니다.\n```python\nnumbers = sorted(numbers, key=lambda value: value.priority)\n"
        "print(numbers)\n```\n이 코드는 `numbers` 리스트를 우선순위로 정렬합니다. https://docs.python.org/3/howto/sorting.html"
    )
    out = run(
        sft((mostly_english, "네 알겠습니다"), ("파이썬으로 정렬하는 법", code_answer)), min_hangul_ratio=0.3
    )
    found = dropped(out)
    assert set(found) == {"s:0"}
    assert found["s:0"][0] == "lang:hangul_ratio<0.3" and found["s:0"][1].startswith(
        "prompt: hangul_ratio 0.0"
    )
    assert dropped(run(sft((mostly_english, "네")), min_hangul_ratio=0.0)) == {}


def test_korean_wrapped_in_html_is_korean() -> None:
    """Tags and their attributes are no letters (new-user pass: a Korean greeting in a styled <div> read as
    English with hangul_ratio 0.08 and was dropped by `allow: [ko]`); a comparison is no tag."""
    answers = (
        "<p>안녕하세요 반갑습니다</p>",
        '<div class="greeting-container"><span style="font-weight:bold">안녕하세요</span></div>',
        "<style>body { font-family: sans-serif; }</style><p>반갑습니다 여러분</p>",
        "안녕하세요&nbsp;여러분<br/>반갑습니다<!-- greeting template v2 -->",
    )
    out = run(
        sft(*((f"인사말 {i}번 알려줘", a) for i, a in enumerate(answers))), allow=["ko"], min_hangul_ratio=0.3
    )
    assert dropped(out) == {}
    ratios = out.signals.filter((pl.col("field") == "response") & (pl.col("signal") == "hangul_ratio"))
    assert ratios["value"].to_list() == [1.0] * len(answers)
    assert language.languages_of(answers) == ["ko"] * len(answers)
    # `<` and `>` of a comparison keep their letters
    assert language.languages_of(["3 < 5 and 7 > 2 is true"]) == ["en"]


def test_the_hangul_floor_is_off_by_default_korean_developer_questions_stay() -> None:
    """Ordinary Korean tech questions are mostly Latin letters (found by the new-user pass): by default only
    the language itself decides, and these are Korean."""
    questions = ("React에서 useState hook 어떻게 써요?", "Spring Boot application.yml 설정 예시 알려줘")
    frame = sft(*((q, "예시 코드를 보여드릴게요.") for q in questions))
    assert dropped(run(frame)) == {}
    floor = dropped(run(frame, min_hangul_ratio=0.3))
    assert {r for r, _ in floor.values()} == {"lang:hangul_ratio<0.3"} and set(floor) == {"s:0", "s:1"}


def test_every_reason_starts_with_lang() -> None:
    frame = sft(
        ("これは何ですか", "네"),
        ("질문입니다 정말로", "Answer in English"),
        ("이건 mostly English text here", "ok"),
    )
    reasons = run(frame, min_hangul_ratio=0.5).decisions
    assert reasons.height == 3 and reasons["reason"].str.starts_with("lang:").all()


def test_chat_turns_dpo_and_raft_fields() -> None:
    chat = pl.DataFrame(
        {
            "sample_id": ["c:0", "c:1"],
            "messages": [
                [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "안녕하세요, 김치찌개 만드는 법 알려주세요"},
                    {"role": "assistant", "content": "김치와 돼지고기를 볶은 뒤 물을 붓고 끓이세요."},
                    {"role": "user", "content": "두부는 언제 넣어요?"},
                    {"role": "assistant", "content": "Add the tofu in the last five minutes."},
                ],
                [
                    {"role": "user", "content": "How do I boil an egg?"},
                    {"role": "assistant", "content": "Put it in boiling water for nine minutes."},
                ],
            ],
        }
    )
    found = dropped(run(chat, kind="chat"))
    assert set(found) == {"c:0"} and found["c:0"][1].startswith(
        "messages[4]: en"
    )  # the system turn is English: fine
    dpo = pl.DataFrame(
        {
            "sample_id": ["p:0"],
            "prompt": ["한국의 수도는 어디인가요?"],
            "chosen": ["서울입니다."],
            "rejected": ["It is Seoul."],
        }
    )
    found = dropped(run(dpo, kind="dpo"))
    assert found["p:0"][0] == "lang:en" and found["p:0"][1].startswith("rejected: en")
    raft = pl.DataFrame(
        {
            "sample_id": ["r:0"],
            "context": [["서울은 한국의 수도이다.", "東京は日本の首都です。"]],
            "question": ["한국의 수도는?"],
            "answer": ["서울"],
        }
    )
    found = dropped(run(raft, kind="raft"))
    assert found["r:0"][0] == "lang:ja" and found["r:0"][1].startswith("context[1]: ja")
    text = pl.DataFrame({"sample_id": ["t:0", "t:1"], "text": ["한국어 문장입니다.", "这是一个中文句子。"]})
    assert set(dropped(run(text, kind="text"))) == {"t:1"}


def test_signals_per_field() -> None:
    out = run(sft(("오늘 날씨가 어때요?", "It is sunny."), ("123", "456")))
    signals = out.signals
    assert dict(signals.schema) == SIGNAL_SCHEMA and set(signals["stage"]) == {"language"}
    values = {
        (s, f, n): v for s, f, n, v in signals.select("sample_id", "field", "signal", "value").iter_rows()
    }
    assert (
        values[("s:0", "prompt", "hangul_ratio")] == 1.0
        and values[("s:0", "response", "hangul_ratio")] == 0.0
    )
    assert values[("s:0", "prompt", "lang_confidence")] == 1.0  # the Hangul shortcut
    assert 0.5 < values[("s:0", "response", "lang_confidence")] <= 1.0
    assert ("s:1", "prompt", "hangul_ratio") not in values  # no letters: no ratio


def test_unknown_language_code_is_one_line_naming_the_block() -> None:
    with pytest.raises(UserError) as info:
        run(sft(("hello there friend", "hi")), allow=["ko", "klingon"])
    assert str(info.value).startswith("curate.language:") and "\n" not in str(info.value)


def test_default_stage_list_runs_language_and_pii_after_normalize_before_length() -> None:
    stages = CurateConfig().stages
    assert stages.index("normalize") < stages.index("language") < stages.index("pii") < stages.index("length")


def test_korean_answer_rate_with_interval() -> None:
    predictions = [
        "안녕하세요, 반갑습니다.",
        "Hello there.",
        "",
        "<|endoftext|>",
        "12345",
        "これは日本語です",
    ]
    pairs = pl.DataFrame(
        {
            "model": ["base"] * 6 + ["sft"] * 6,
            "sample_id": [f"e:{i}" for i in range(6)] * 2,
            "reference": ["참고"] * 12,
            "prediction": predictions + ["네, 알겠습니다."] * 5 + ["Sure."],
        }
    )
    scores, metrics = score_pairs(pairs, metrics=("korean_answer_rate",))
    base = scores.filter((pl.col("model") == "base") & (pl.col("metric") == "korean_answer_rate"))
    assert base["value"].to_list() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # no letters / degenerate: not Korean
    corpus = dict(
        metrics.filter(pl.col("metric") == "korean_answer_rate").select("model", "value").iter_rows()
    )
    assert corpus == {"base": pytest.approx(1 / 6), "sft": pytest.approx(5 / 6)}
    table = compare_models(pairs, scores).estimates.filter(pl.col("metric") == "korean_answer_rate")
    assert table["n"].to_list() == [6, 6] and (table["ci_low"] <= table["value"]).all()


def test_shared_datasets_language_counts() -> None:
    """Counts looked at on the real data (docs/curate.md): ChatbotData and HRC are Korean on both sides,
    KULLM's user-oriented eval pairs Korean instructions with English reference outputs."""
    chatbot = SHARED / "songys__Chatbot_data" / "ChatbotData.csv"
    kullm = SHARED / "nlpai-lab__KULLM" / "user_oriented_instructions_eval.jsonl"
    if not (chatbot.exists() and kullm.exists()):
        pytest.skip(f"{SHARED} absent (the shared datasets are not part of a fresh clone)")
    qa = pl.read_csv(chatbot, infer_schema=False)
    frame = qa.select(
        pl.format("c:{}", pl.int_range(pl.len())).alias("sample_id"),
        pl.col("Q").alias("prompt"),
        pl.col("A").alias("response"),
    )
    assert dropped(run(frame)) == {}  # 11,823 rows, none dropped (measured)
    rows = [json.loads(line) for line in kullm.read_text(encoding="utf-8").splitlines()]
    frame = pl.DataFrame(
        {
            "sample_id": [r["id"] for r in rows],
            "prompt": [r["instruction"] + "\n" + r["instances"][0]["input"] for r in rows],
            "response": [r["instances"][0]["output"] for r in rows],
        }
    )
    found = dropped(run(frame))
    reasons = pl.Series([r for r, _ in found.values()]).value_counts()
    # of 252; the rest: < 5 letters or no Korean prompt. 234, not 235: User_oriented_task_242 answers "HTML
    # for adding an image" with `<img src="url" alt="alternatetext">`, markup and no English (read)
    assert dict(reasons.iter_rows()) == {"lang:en": 234}
