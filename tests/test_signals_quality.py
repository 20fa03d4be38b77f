"""The quality stage on hand-written Korean (and a few English) rows: each reason fires on its true case
and stays quiet on the look-alike that is fine (a chat answer ending in 요 without a full stop, ㅋㅋㅋ
laughter, a legal "할 수 없습니다", a comparison with < and >). Frames come from the real loader."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tunelab.curate import quality
from tunelab.curate.common import SIGNAL_SCHEMA, StageContext
from tunelab.curate.config import CurateConfig, QualitySettings
from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records

PROMPT = "질문이 있어요"
# a long prose answer (>= truncation_min_chars) that ends properly; cut variants are made from it
LONG = (
    "사회복무요원이 공무 중 발생한 교통사고로 피해가 생겼다면 국가배상법에 따라 국가가 먼저 배상합니다. "
    "국가는 고의나 중대한 과실이 있는 경우에만 사회복무요원에게 구상권을 행사할 수 있습니다. "
    "따라서 피해자는 국가를 상대로 배상을 청구하는 것이 일반적이며, 구체적인 절차는 관할 지방검찰청의 "
    "배상심의회에 신청하는 방식으로 진행됩니다. 자세한 내용은 전문가와 상담하시기 바랍니다"
)


def load(tmp_path: Path, rows: list[dict], kind: str = "sft", name: str = "q") -> pl.DataFrame:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load_dataset_records(DatasetConfig(path=path, name=name, kind=kind)).frame


def judge(
    tmp_path: Path, responses: list[str], cfg: QualitySettings | None = None, prompts: list[str] | None = None
) -> dict[int, tuple[str | None, str | None, bool]]:
    """{row: (reason, evidence, kept)} for the rows the stage decided on."""
    prompts = prompts or [PROMPT] * len(responses)
    frame = load(tmp_path, [{"prompt": p, "response": r} for p, r in zip(prompts, responses, strict=True)])
    out = quality.run(frame, cfg or QualitySettings(), StageContext(kind="sft"))
    return {
        int(sid.split(":")[1]): (reason, evidence, kept)
        for sid, reason, evidence, kept in out.decisions.select(
            "sample_id", "reason", "evidence", "kept"
        ).iter_rows()
    }


def reasons(found: dict[int, tuple[str | None, str | None, bool]]) -> dict[int, str | None]:
    return {row: reason for row, (reason, _, _) in found.items()}


def test_truncated_answers_and_korean_endings_that_are_not(tmp_path: Path) -> None:
    fine = [
        "하루가 또 가네요",  # ChatbotData: no full stop, ends in 요
        "킁킁",
        "멍 때리기",
        "그럴 땐 푹 쉬는 게 최고죠",
        LONG,  # long, ends in 다 without a full stop
        LONG + ".",
        "환승은 30분 안에",  # short chat answers are never judged on their last word
        "1. 사과\n2. 배\n3. 포도 등 제철 과일",  # a list's last item needs no full stop
        LONG + ". 관련 법령은 국가법령정보센터에서 찾아볼 수 있어요. https://www.law.go.kr/법령/국가배상법",
        "그가 “안녕하세요.”라고 말했습니다.",
    ]
    cut = [
        LONG + ". 신청서는 우편이나 방문으로 제출할 수 있으며 처리 기간은 사안에 따라 달라지는 경우",  # cut
        "관련 조문은 다음과 같습니다. 제7조(노인복지시설의 종류), 제10조(노인복지시설",
        "필요한 서류는 다음과 같습니다:",
        "신청 방법은 두 가지입니다.\n1. 온라인으로 신청합니다.\n2.",
        "장갑 하나 사셔야겠어요,",
    ]
    found = judge(tmp_path, fine + cut)
    assert reasons(found) == {len(fine) + k: "quality:truncated" for k in range(len(cut))}, found
    evidence = [found[len(fine) + k][1] for k in range(len(cut))]
    assert evidence[0].startswith("response: no sentence end: '")
    assert evidence[1:] == [
        "response: unclosed '('",
        "response: ends with ':'",
        "response: ends on a list number",
        "response: ends with ','",
    ]


def test_a_quote_closed_by_another_form_is_not_a_cut(tmp_path: Path) -> None:
    """A straight quote closed by a curly one (or the reverse) read as `unclosed '"'` (new-user pass); any
    closing form after the sentence end closes it, while a quote left open is still a cut."""
    fine = [
        '그는 "정말 좋은 생각이에요.”',
        '그는 “정말 좋은 생각이에요."',
        "그는 '정말이다.’",
        "그는 ‘정말이다.'",
        "그는 「정말이다.』",
        '그가 "안녕" 하고 “반가워요."라고 말했어요',
    ]
    cut = [
        '그는 "정말 좋은 생각',
        "그는 “정말 좋은 생각",
        '그는 "정말" 그리고 "좋은 생각',
        "그는 「정말 좋은 생각",
    ]
    found = judge(tmp_path, fine + cut)
    assert reasons(found) == {len(fine) + k: "quality:truncated" for k in range(len(cut))}, found
    assert [found[len(fine) + k][1] for k in range(len(cut))] == [
        "response: unclosed '\"'",
        "response: unclosed '“'",
        "response: unclosed '\"'",
        "response: unclosed '「'",
    ]


def test_refusals_and_ai_boilerplate_in_answers_only(tmp_path: Path) -> None:
    responses = [
        "죄송하지만, 저는 그 요청을 도와드릴 수 없습니다.",
        "저는 AI 언어 모델이기 때문에 개인적인 의견을 가질 수 없어요.",
        "As an AI language model, I do not have feelings.",
        "본 사항에 대해서는 답변드릴 수 없습니다.",  # HRC's ChatGPT column
        # look-alikes that are fine: a legal "cannot", an apology that refuses nothing, AI as a topic
        "고의나 중대한 과실이 없으면 구상권을 행사할 수 없습니다.",
        "죄송해하지 않아도 돼요.",
        "아직 모르겠어요. 인공지능에 성별을 만드는 사람이 되어 주세요",
        "Sorry, I can't help with that.",  # harmlessness data prefers exactly this answer: not in the defaults
        "좋은 질문이에요.",  # its prompt holds boilerplate: prompts are not judged for refusals
    ]
    prompts = [PROMPT] * 8 + ["As an AI language model, answer this."]
    found = judge(tmp_path, responses, prompts=prompts)
    assert reasons(found) == {
        0: "quality:refusal",
        1: "quality:refusal",
        2: "quality:refusal",
        3: "quality:refusal",
    }
    assert found[0][1] == "response: '죄송하지만, 저는 그 요청을 도와드릴 수 없습니다'"
    assert found[2][1] == "response: 'As an AI language model'"
    # the list is extendable from the recipe, "…" standing for a short gap inside one sentence
    cfg = QualitySettings(extra_refusal_phrases=["Sorry, I … help"])
    assert reasons(judge(tmp_path, responses, cfg, prompts))[7] == "quality:refusal"
    # a typographic apostrophe matches a phrase written with a straight one (hh-rlhf writes I’m)
    assert reasons(judge(tmp_path, ["I’m just an AI, so I can’t say."])) == {0: "quality:refusal"}


def test_repetition_loops_runs_and_repeated_lines(tmp_path: Path) -> None:
    responses = [
        "아아아아아아아아",  # the loop of a broken generation: 아 x8
        "좋아요 " + "으아" * 9,
        "교육행정전자시스템을 이용하여 건강검진을 신청한 경우에는, " * 5,  # a looping sentence
        "1. 신분증을 챙기세요\n2. 서류를 챙기세요\n" + "3. 도장을 챙기세요\n" * 6,
        # fine: laughter in jamo, an ellipsis, a repeated word or two, a dotted rule
        "ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ 너무 웃겨요",
        "글쎄요............ 잘 모르겠어요",
        "네 네, 알겠습니다. 좋아요 좋아요.",
        LONG,
        "──────────",
        "1억은 100000000원이고 123456789 × 9 = 1111111101 입니다.",  # numbers, not runs
    ]
    found = judge(tmp_path, responses)
    assert reasons(found) == {k: "quality:repetition" for k in range(4)}, found
    assert found[0][1] == "response: '아' x8" and found[1][1] == "response: '으아' x9"
    assert found[2][1].startswith("response: repeated 10-grams 0.")
    assert found[3][1].startswith("response: repeated lines 0.")


def test_korean_laughter_and_tears_are_chat_unless_the_text_is_only_that(tmp_path: Path) -> None:
    """ㅋㅋㅋ / 하하하 / ㅠㅠ runs beside a reply are ordinary Korean chat (the new-user pass found
    "하하하하하하하하하 저도 웃겨요" dropped as '하' x9); a text that is nothing but the run is judged as before."""
    fine = [
        "하하하하하하하하하 저도 웃겨요",
        "호호호호호호호호호 좋아요",
        "ㅠ" * 22 + " 슬퍼요",  # over max_repeats_jamo
        "ㅋ" * 30 + " 진짜 웃기다 너무 재밌어요",  # 30 ㅋ repeated their 10-grams 20 times: 0.71 > 0.5
        "크크크크크크크크크크 키키키키키키키키키 진짜요",
    ]
    only = ["하하하하하하하하하하하하", "흐흐흐흐흐흐흐흐흐 음", "ㅋ" * 25, "아아아아아아아아 하하"]
    found = judge(tmp_path, fine + only)
    assert reasons(found) == {len(fine) + k: "quality:repetition" for k in range(len(only))}, found
    assert [found[len(fine) + k][1] for k in range(len(only))] == [
        "response: '하' x12",
        "response: '흐' x9",
        "response: 'ㅋ' x25",
        "response: '아' x8",
    ]


def test_special_tokens_in_any_field(tmp_path: Path) -> None:
    responses = [
        "좋은 하루 보내세요.<|endoftext|>",
        "네, 알겠습니다.</s>",
        "안녕하세요.",  # its prompt carries a chat-template token
        "[INST] 다시 답해 주세요 [/INST] 네.",
        "이 모델의 종료 토큰은 <|custom_eot|> 입니다.",  # any <|name|>
        "3 < 5 이고 7 > 2 입니다.",  # comparisons are not tokens
        "<b>굵게</b> 쓰세요.",
    ]
    prompts = [PROMPT, PROMPT, "<|im_start|>user 안녕<|im_end|>", PROMPT, PROMPT, PROMPT, PROMPT]
    found = judge(tmp_path, responses, prompts=prompts)
    assert reasons(found) == {k: "quality:special_tokens" for k in range(5)}, found
    # a token only at the end of a text is removed and the row stays; anywhere else the row goes
    assert found[0] == ("quality:special_tokens", "response: trailing <|endoftext|> removed", True)
    assert found[1] == ("quality:special_tokens", "response: trailing </s> removed", True)
    assert found[2] == ("quality:special_tokens", "prompt: <|im_start|> at 0", False)
    assert [kept for _, _, kept in (found[3], found[4])] == [False, False]
    kept_all = judge(tmp_path, responses, QualitySettings(strip_trailing_tokens=False), prompts)
    assert kept_all[0] == ("quality:special_tokens", "response: <|endoftext|> at 11", False)
    assert reasons(judge(tmp_path, responses, QualitySettings(bar_tokens=False), prompts)).get(4) is None


def test_trailing_tokens_are_cut_from_the_curated_text(tmp_path: Path) -> None:
    """The issue's Korean preference set: <|endoftext|> ends 1,022 chosen answers. The token goes, the pair
    stays; an answer that is nothing but tokens is not 'cleaned' into an empty one."""
    rows = [
        {"prompt": PROMPT, "chosen": "김치찌개는 이렇게 끓여요. <|endoftext|>", "rejected": "몰라요."},
        {"prompt": PROMPT, "chosen": "네, 가능합니다.</s><|endoftext|>", "rejected": "안 돼요."},
        {"prompt": PROMPT, "chosen": "<|endoftext|>", "rejected": "안 돼요."},
    ]
    frame = load(tmp_path, rows, "dpo")
    out = quality.run(frame, QualitySettings(), StageContext(kind="dpo"))
    assert out.frame["chosen"].to_list() == ["김치찌개는 이렇게 끓여요.", "네, 가능합니다."]
    assert out.decisions.select("sample_id", "kept", "evidence").rows() == [
        ("q:0", True, "chosen: trailing <|endoftext|> removed"),
        ("q:1", True, "chosen: trailing </s><|endoftext|> removed"),
        ("q:2", False, "chosen: <|endoftext|> at 0"),
    ]


def test_symbol_digit_and_url_ratios(tmp_path: Path) -> None:
    responses = [
        "★☆★☆■■■■□□□□▶▶▶◀◀◀ 특가 ★☆★☆",
        "0101234567 0109876543 0105551234 0107778888",
        "https://example.com/a/very/long/path/to/a/page https://example.com/another/long/path",
        "^^",  # shorter than ratio_min_chars
        "2023년 3월 15일에 1,000만원을 받았습니다.",
        "자세한 내용은 https://www.law.go.kr 에서 확인하실 수 있습니다. 상담 전화는 국번 없이 1331입니다.",
    ]
    found = judge(tmp_path, responses)
    assert reasons(found) == {0: "quality:symbol_ratio", 1: "quality:digit_ratio", 2: "quality:url_ratio"}


def test_digit_ratio_counts_id_like_numbers_not_arithmetic_or_figures(tmp_path: Path) -> None:
    """A math tutoring answer, a table of figures and prices are numbers a user keeps (the new-user pass found
    "12+35=47, 47×2=94입니다." dropped at 0.52); lists of phone or order numbers are still noise."""
    fine = [
        "12+35=47, 47×2=94입니다.",
        "1234 + 5678 = 6912 입니다.",
        "π ≈ 3.14159265358979 입니다.",
        "가격: 1500000원, 2300000원, 4500000원",
        "| 연도 | 매출 |\n|---|---|\n| 2021 | 1200 |\n| 2022 | 1350 |\n| 2023 | 1500 |\n매출이 늘었습니다.",
        "2023-01-15 2023-02-15 2023-03-15 결제",
        "합계는 1,500,000,000원과 2,300,000,000원",
    ]
    noise = ["0101234567 0109876543 0105551234 0107778888", "주문번호 20230115093412 20230115093413"]
    found = judge(tmp_path, fine + noise)
    assert reasons(found) == {len(fine): "quality:digit_ratio", len(fine) + 1: "quality:digit_ratio"}, found
    assert found[len(fine)][1] == "response: digit ratio 0.93 > 0.5"
    assert quality.numeric_noise("12345 67890 = 80235") == 5  # only the operand-free one


def test_flag_only_keeps_the_row_with_its_reason_and_signals_are_per_field(tmp_path: Path) -> None:
    frame = load(
        tmp_path, [{"prompt": PROMPT, "response": "아아아아아아아아"}, {"prompt": PROMPT, "response": LONG}]
    )
    out = quality.run(frame, QualitySettings(flag_only=["repetition"]), StageContext(kind="sft"))
    assert out.frame.height == 2
    assert out.decisions.select("sample_id", "kept", "reason").rows() == [("q:0", True, "quality:repetition")]
    signals = out.signals
    assert signals is not None and dict(signals.schema) == SIGNAL_SCHEMA
    # system is absent in these rows: no signal for it; two measurements for each present field
    assert sorted(set(signals.select("field", "signal").iter_rows())) == [
        ("prompt", "repetition"),
        ("prompt", "symbol_ratio"),
        ("response", "repetition"),
        ("response", "symbol_ratio"),
    ]
    loop = signals.filter((pl.col("sample_id") == "q:0") & (pl.col("field") == "response"))
    assert dict(loop.select("signal", "value").rows()) == {"repetition": 0.0, "symbol_ratio": 0.0}  # 8 < n
    with pytest.raises(
        UserError, match=r"^curate.quality.flag_only: 'refusal' is not in curate.quality.checks$"
    ):
        quality.run(frame, QualitySettings(checks=["repetition"], flag_only=["refusal"]), StageContext())


def test_chat_judges_the_last_assistant_turn(tmp_path: Path) -> None:
    def chat(last: str) -> dict:
        return {
            "messages": [
                {"role": "user", "content": "안녕"},
                {"role": "assistant", "content": "저는 AI 언어 모델이기 때문에 감정이 없어요."},
                {"role": "user", "content": "그래도 얘기해 줘"},
                {"role": "assistant", "content": last},
            ]
        }

    frame = load(
        tmp_path, [chat("좋아요, 무엇이든 물어보세요."), chat("As an AI language model, I can't.")], "chat"
    )
    out = quality.run(frame, QualitySettings(), StageContext(kind="chat"))
    assert out.decisions.select("sample_id", "reason", "evidence").rows() == [
        ("q:1", "quality:refusal", "messages: 'As an AI language model'")
    ]


def test_recipe_block_and_default_stage_order() -> None:
    cfg = CurateConfig.model_validate(
        {"quality": {"max_repeats": 12, "extra_refusal_phrases": ["제 능력 밖"]}}
    )
    assert cfg.quality.max_repeats == 12 and "제 능력 밖" in cfg.quality.extra_refusal_phrases
    stages = CurateConfig().stages
    assert (
        stages.index("normalize") < stages.index("quality") < stages.index("length") < stages.index("exact")
    )
    with pytest.raises(ValueError, match="max_dup_ngram_ratio"):
        CurateConfig.model_validate({"quality": {"max_dup_ngram_ratio": 2}})


# ---------------------------------------------------------------- the shared datasets (counts looked at)


def test_counts_on_shared_datasets(shared_data: Path) -> None:
    """What the defaults find on real data; every hit here was read (docs/curate.md, "Quality")."""
    from tunelab.curate.normalize import transform

    def run(cfg: DatasetConfig) -> dict[str, int]:
        frame = transform(load_dataset_records(cfg).frame, CurateConfig().normalize)
        out = quality.run(frame, QualitySettings(), StageContext(kind=cfg.kind))
        return dict(out.decisions.group_by("reason").len().iter_rows())

    chatbot = DatasetConfig(
        path=shared_data / "songys__Chatbot_data/ChatbotData.csv",
        name="c",
        fields={"prompt": "Q", "response": "A"},
    )
    assert run(chatbot) == {"quality:truncated": 2}  # "장갑 하나 사셔야겠어요," twice
    hrc = shared_data / "human-rights-corpus__HRC/humane_right_copus_v1.jsonl.json"
    gpt = DatasetConfig(path=hrc, name="g", fields={"prompt": "질의", "response": "ChatGPT API 답변"})
    assert run(gpt) == {"quality:refusal": 1, "quality:repetition": 1, "quality:truncated": 4}
    hh = DatasetConfig(
        path=shared_data / "anthropics__hh-rlhf/harmless-base_test.jsonl.gz", name="h", kind="dpo"
    )
    assert run(hh) == {
        # 98, not 99: hh:1624 quotes an encyclopedia from `"` to `”` and was read as an unclosed quote
        "quality:truncated": 98,
        "quality:repetition": 6,
        "quality:url_ratio": 4,
        "quality:symbol_ratio": 1,
    }
