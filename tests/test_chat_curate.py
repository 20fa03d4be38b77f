"""Conversations as a first-class kind: adapters, the schema stage turn by turn, normalisation, dedup and
decontamination on whole conversations, trl's conversational DPO formats, and single-field maps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.curate.config import CurateConfig
from tunelab.curate.pipeline import curate_dataset
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def s(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


TWO_EXCHANGES = [u("서울은 어디야?"), a("한국의 수도입니다."), u("그럼 부산은?"), a("제2의 도시입니다.")]
TRAILING_USER = [u("오늘 날씨 어때?"), a("맑아요."), u("내일은?")]
SECOND_SYSTEM = [
    s("친절하게 답해."),
    u("안녕?"),
    a("안녕하세요!"),
    s("이제 반말로 답해."),
    u("뭐 해?"),
    a("그냥 있어."),
]
TWO_USERS = [u("김치찌개 끓이는 법"), u("간단하게 알려줘"), a("김치와 돼지고기를 볶고 물을 부어 끓여요.")]
ONE_EXCHANGE = [s("너는 요리사야."), u("라면 맛있게 끓이는 법?"), a("물이 끓으면 면과 스프를 넣고 4분.")]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def curate(path: Path, kind: str, workspace: Path, stages: list[str] | None = None, **curate_cfg: Any):
    cfg = CurateConfig(**curate_cfg)
    cfg = cfg.with_stages(stages or ["schema", "normalize", "exact", "minhash", "split"])
    return curate_dataset(
        DatasetConfig(path=path, name="chat", kind=kind), cfg, workspace, write=False, show_progress=False
    )


def outcomes(result) -> dict[str, str]:
    """sample_id -> the reason it was dropped, or 'kept'."""
    dropped = result.decisions.filter(~pl.col("kept"))
    out = {sid: "kept" for sid in [*result.train["sample_id"], *result.val["sample_id"]]}
    out.update(dict(dropped.select("sample_id", "reason").iter_rows()))
    return out


def test_openai_and_sharegpt_conversations_keep_every_turn_in_order(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"messages": TWO_EXCHANGES},
            {
                "conversations": [
                    {"from": "system", "value": "너는 친절한 비서야."},
                    {"from": "human", "value": "서울은 어디야?"},
                    {"from": "gpt", "value": "한국의 수도입니다."},
                    {"from": "human", "value": "인구는?"},
                    {"from": "gpt", "value": "약 940만 명입니다."},
                ]
            },
            # other role names in the wild, content parts, and a top-level system beside the turns
            {
                "system": "짧게 답해.",
                "messages": [
                    {"role": "Prompter", "content": [{"type": "text", "text": "고마워"}]},
                    {"role": "model", "content": "천만에요."},
                ],
            },
            {"prompt": "평평한 질문", "response": "평평한 답"},  # a flat record is a one-turn conversation
        ],
    )
    frame = load_dataset_records(DatasetConfig(path=path, name="c", kind="chat")).frame
    assert frame["messages"].to_list() == [
        TWO_EXCHANGES,
        [
            s("너는 친절한 비서야."),
            u("서울은 어디야?"),
            a("한국의 수도입니다."),
            u("인구는?"),
            a("약 940만 명입니다."),
        ],
        [s("짧게 답해."), u("고마워"), a("천만에요.")],
        [u("평평한 질문"), a("평평한 답")],
    ]
    assert frame.schema["messages"] == pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def test_kind_sft_never_cuts_a_conversation_and_kind_chat_judges_every_turn(tmp_path: Path) -> None:
    records = [
        {"messages": TWO_EXCHANGES},  # chat:0
        {"messages": TRAILING_USER},  # chat:1
        {"messages": SECOND_SYSTEM},  # chat:2
        {"messages": TWO_USERS},  # chat:3
        {"messages": ONE_EXCHANGE},  # chat:4
        {"messages": [u("질문"), a("   ")]},  # chat:5 empty turn
        {"messages": [u("날씨 알려줘"), {"role": "tool", "content": "{}"}, a("맑음")]},  # chat:6
        {"messages": [a("먼저 말하는 비서"), u("응?")]},  # chat:7
        {"messages": []},  # chat:8
        {"messages": "문자열 하나"},  # chat:9
    ]
    path = write_jsonl(tmp_path / "cases.jsonl", records)
    sft = curate(path, "sft", tmp_path)
    multi = "multi_turn:use_kind_chat"
    assert outcomes(sft) == {
        "chat:0": multi,
        "chat:1": multi,
        "chat:2": multi,
        "chat:3": multi,
        "chat:4": "kept",
        "chat:5": "empty:response",
        "chat:6": multi,
        "chat:7": multi,
        "chat:8": "missing_field:prompt",
        "chat:9": "missing_field:response",  # a string under `messages` is read as the prompt
    }
    evidence = sft.decisions.filter(pl.col("sample_id") == "chat:0")["evidence"][0]
    assert "(user,assistant,user,assistant)" in evidence and "dataset.kind: chat" in evidence
    assert sft.kept + sft.dropped + sft.quarantined == sft.read == len(records)

    chat = curate(path, "chat", tmp_path)
    assert outcomes(chat) == {
        "chat:0": "kept",
        "chat:1": "no_final_assistant",
        "chat:2": "misplaced_system:3",
        "chat:3": "consecutive_roles:1",
        "chat:4": "kept",
        "chat:5": "empty_turn:1",
        "chat:6": "invalid_role:1",
        "chat:7": "assistant_first:0",
        "chat:8": "empty:messages",
        "chat:9": "wrong_type:messages",
    }
    assert chat.kept + chat.dropped + chat.quarantined == chat.read == len(records)
    kept = pl.concat([chat.train, chat.val]).sort("sample_id")
    assert kept["messages"].to_list() == [TWO_EXCHANGES, ONE_EXCHANGE]


def test_normalize_cleans_every_turn_and_dedup_compares_whole_conversations(tmp_path: Path) -> None:
    decomposed = "\u1109\u1165\u110b\u116e\u11af"  # 서울 in conjoining jamo (NFD)
    first = [
        u(f"{decomposed}은 어디야?\u200b"),
        a("한국의   수도입니다."),
        u("그럼 부산은?"),
        a("제2의 도시입니다."),
    ]
    same_start = [*TWO_EXCHANGES[:3], a("바다가 있는 항구 도시입니다.")]  # shares the first exchange
    records = [
        {"messages": first},  # chat:0 normalises to TWO_EXCHANGES
        {"messages": TWO_EXCHANGES},  # chat:1 exact copy of chat:0 after normalisation
        {"messages": same_start},  # chat:2 another answer to the second question: a different sample
        {"messages": [*TWO_EXCHANGES[:3], a("제2의 도시입니다!")]},  # chat:3 near copy of chat:0
    ]
    path = write_jsonl(tmp_path / "dups.jsonl", records)
    result = curate(path, "chat", tmp_path)
    assert outcomes(result) == {
        "chat:0": "kept",
        "chat:1": "exact_dup",
        "chat:2": "kept",
        "chat:3": "near_dup_minhash",
    }
    kept = pl.concat([result.train, result.val]).sort("sample_id")
    assert kept["messages"].to_list()[0] == TWO_EXCHANGES  # NFC, zero-width gone, spaces collapsed
    refs = dict(result.decisions.filter(~pl.col("kept")).select("sample_id", "ref_sample_id").iter_rows())
    assert refs == {"chat:1": "chat:0", "chat:3": "chat:0"}


def test_decontamination_compares_each_user_turn_with_eval_prompts(tmp_path: Path) -> None:
    question = "대한민국의 수도와 그 도시의 대표적인 관광지를 세 가지 알려주세요"
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": question, "response": "서울, 경복궁 ..."}])
    records = [
        # the eval question hidden as the second user turn: contaminated
        {
            "messages": [
                u("안녕하세요"),
                a("네, 안녕하세요!"),
                u(question),
                a("서울입니다. 경복궁, 남산, 한강."),
            ]
        },
        # the same words only in an assistant turn: not a user turn, kept
        {"messages": [u("아무 말이나 해봐"), a(question)]},
        {"messages": ONE_EXCHANGE},
    ]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    stages = ["schema", "normalize", "decontaminate", "split"]
    result = curate(path, "chat", tmp_path, stages, decontaminate={"eval_path": str(eval_path)})
    # the eval file is read with the training kind (chat): its flat record is a one-turn conversation
    assert outcomes(result) == {"chat:0": "contaminated:eval", "chat:1": "kept", "chat:2": "kept"}
    row = result.decisions.filter(pl.col("reason") == "contaminated:eval").row(0, named=True)
    assert row["ref_sample_id"] == "eval:0" and row["score"] == 1.0
    assert row["evidence"].startswith("user turn Jaccard 1.00")


def test_trl_conversational_preference_formats_load_and_keep_their_history(tmp_path: Path) -> None:
    from tunelab.modeling.chat import prompt_messages

    records = [
        # explicit prompt as a message list, chosen/rejected as single assistant messages
        {"prompt": [u("부산 맛집 추천해줘")], "chosen": [a("돼지국밥 어때요?")], "rejected": [a("몰라요.")]},
        # a multi-turn prompt: the turns before the final user turn are the history
        {
            "prompt": [s("친절하게."), u("서울은 어디야?"), a("한국의 수도입니다."), u("그럼 부산은?")],
            "chosen": [a("제2의 도시입니다.")],
            "rejected": [a("모릅니다.")],
        },
        # implicit prompt: two whole conversations sharing every turn but the last answer
        {
            "chosen": [u("안녕"), a("안녕하세요!"), u("기분 어때?"), a("좋아요, 고마워요.")],
            "rejected": [u("안녕"), a("안녕하세요!"), u("기분 어때?"), a("왜요?")],
        },
        # UltraFeedback style: prompt text, chosen/rejected the whole conversation
        {
            "prompt": "라면 끓이는 법",
            "chosen": [u("라면 끓이는 법"), a("물 550ml에 4분.")],
            "rejected": [u("라면 끓이는 법"), a("그냥 드세요.")],
            "system": "요리사처럼.",
        },  # fmt: skip
    ]
    path = write_jsonl(tmp_path / "prefs.jsonl", records)
    result = curate(path, "dpo", tmp_path, ["schema", "normalize", "exact", "split"])
    assert outcomes(result) == {f"chat:{i}": "kept" for i in range(4)}
    rows = pl.concat([result.train, result.val]).sort("sample_id").to_dicts()
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        ("부산 맛집 추천해줘", "돼지국밥 어때요?", "몰라요."),
        ("그럼 부산은?", "제2의 도시입니다.", "모릅니다."),
        ("기분 어때?", "좋아요, 고마워요.", "왜요?"),
        ("라면 끓이는 법", "물 550ml에 4분.", "그냥 드세요."),
    ]
    assert [r["history"] for r in rows] == [
        None,
        [s("친절하게."), u("서울은 어디야?"), a("한국의 수도입니다.")],
        [u("안녕"), a("안녕하세요!")],
        [s("요리사처럼.")],
    ]
    # training renders the whole prompt conversation (history + final user turn)
    assert prompt_messages(rows[1], "dpo") == [*rows[1]["history"], u("그럼 부산은?")]
    # a pair whose conversations part before the last answer is no implicit prompt: dropped, named
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"chosen": [u("a"), a("b")], "rejected": [u("c"), a("d")]}])
    assert outcomes(curate(bad, "dpo", tmp_path, ["schema", "split"])) == {"chat:0": "missing_field:prompt"}


def test_a_field_map_of_one_field_leaves_the_adapter_the_rest(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "김치의 주재료는?", "output": "배추와 고춧가루입니다.", "answer": "오답 칸"},
            {"instruction": "요약해줘", "input": "긴 글", "output": "짧은 글"},
            {"question": "출력 칸이 없는 행", "answer": "이것은 쓰지 않는다"},
        ],
    )
    frame = load_dataset_records(
        DatasetConfig(path=path, name="qa", kind="sft", fields={"response": "output"})
    ).frame
    assert frame.select("prompt", "response").rows() == [
        ("김치의 주재료는?", "배추와 고춧가루입니다."),  # the map wins over the adapter's alias `answer`
        ("요약해줘\n\n긴 글", "짧은 글"),  # alpaca's instruction + input still become the prompt
        ("출력 칸이 없는 행", None),  # the mapped column is missing: missing, never guessed from `answer`
    ]
    result = curate(path, "sft", tmp_path, ["schema", "split"], **{})
    assert set(outcomes(result).values()) == {"kept"}  # without the map `answer`/`output` both fit
    mapped = curate_dataset(
        DatasetConfig(path=path, name="qa", kind="sft", fields={"response": "output"}),
        CurateConfig().with_stages(["schema", "split"]),
        tmp_path,
        write=False,
        show_progress=False,
    )
    assert outcomes(mapped) == {"qa:0": "kept", "qa:1": "kept", "qa:2": "missing_field:response"}
    # a mapped conversation column is read like a native one
    dialog = [{"from": "human", "value": "안녕"}, {"from": "gpt", "value": "반가워요"}]
    chat = write_jsonl(
        tmp_path / "dialog.jsonl", [{"id": 1, "dialog": dialog}, {"id": 2, "dialog": dialog[:1]}]
    )
    loaded = load_dataset_records(
        DatasetConfig(path=chat, name="d", kind="chat", fields={"messages": "dialog"})
    )
    assert loaded.frame["messages"].to_list() == [[u("안녕"), a("반가워요")], [u("안녕")]]
