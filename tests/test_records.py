import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records


def load(path, **kw):
    return load_dataset_records(DatasetConfig(path=path, name=kw.pop("name", "t"), **kw))


def test_mixed_jsonl_good_rows_load_and_broken_lines_are_quarantined_with_line_numbers(tmp_path: Path):
    lines = [
        json.dumps(
            {"instruction": "안녕", "input": "", "output": "반가워요", "label": "egen"}, ensure_ascii=False
        ).encode(),
        b'{"instruction": "broken", "output": ',  # line 2: bad JSON
        b"",  # line 3: blank, not a record
        b'["not", "an", "object"]',  # line 4
        b'{"instruction": "\xff\xfe bad bytes", "output": "x"}',  # line 5: invalid UTF-8
        json.dumps(
            {"instruction": "질문", "input": "추가", "output": 123}, ensure_ascii=False
        ).encode(),  # line 6
        json.dumps({"instruction": "출력 없음"}, ensure_ascii=False).encode(),  # line 7: missing output
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = load(path)
    assert result.read == 6
    assert result.frame.height + result.quarantine.height == result.read
    q = result.quarantine.sort("source_line")
    assert q["source_line"].to_list() == [2, 4, 5]
    assert q["error"][0].startswith("invalid JSON")
    assert q["error"][1] == "not a JSON object (a list)"
    assert q["error"][2].startswith("invalid UTF-8")
    assert set(q["source_file"]) == {str(path)}
    frame = result.frame
    assert frame["sample_id"].to_list() == ["t:0", "t:5", "t:6"]
    assert frame["source_line"].to_list() == [1, 6, 7]
    assert frame["prompt"].to_list() == ["안녕", "질문\n\n추가", "출력 없음"]
    assert frame["response"].to_list() == ["반가워요", None, None]
    types = [json.loads(t) for t in frame["field_types"]]
    assert types[1]["response"] == "int"  # wrong type is recorded, value left null
    assert "response" not in types[2]  # missing is told apart from wrong type
    assert frame["label"].to_list() == ["egen", None, None]


def test_csv_wrong_column_count_goes_to_quarantine(tmp_path: Path):
    path = tmp_path / "qa.csv"
    path.write_text(
        'Q,A,label\n"안녕, 친구",반가워,0\n너무 많은,열,1,extra\n좋아,"여러\n줄 답",2\n', encoding="utf-8"
    )
    result = load(path, fields={"prompt": "Q", "response": "A"})
    assert result.read == 3
    assert result.frame["prompt"].to_list() == ["안녕, 친구", "좋아"]
    assert result.frame["response"].to_list() == ["반가워", "여러\n줄 답"]
    assert result.frame["source_line"].to_list() == [2, 4]
    assert result.quarantine["source_line"].to_list() == [3]
    assert result.quarantine["error"][0] == "wrong column count: 4 fields, header has 3"


def test_chat_messages_and_dpo_conversational(tmp_path: Path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "너는 친절해"},
                    {"role": "user", "content": "첫 질문"},
                    {"role": "assistant", "content": "첫 답"},
                    {"role": "user", "content": "두번째"},
                    {"role": "assistant", "content": "마지막 답"},
                ]
            },
            ensure_ascii=False,
        )
        + "\n"
        + json.dumps(
            {"conversations": [{"from": "human", "value": "안녕"}, {"from": "gpt", "value": "반가워요"}]},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    # kind sft holds one exchange: a longer conversation is never cut to its last one, it reaches the
    # schema stage marked as a conversation (dropped there as multi_turn:use_kind_chat)
    row = load(chat).frame.row(0, named=True)
    assert (row["system"], row["prompt"], row["response"]) == (None, None, None)
    assert json.loads(row["field_types"]) == {"prompt": "conversation[system,user,assistant,user,assistant]"}
    # one ShareGPT exchange is a flat sft record
    assert load(chat).frame.select("prompt", "response").row(1) == ("안녕", "반가워요")
    # kind chat keeps every turn, in order (ShareGPT roles mapped)
    first, second = load(chat, kind="chat").frame["messages"].to_list()
    assert second == [{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "반가워요"}]
    assert [(t["role"], t["content"]) for t in first] == [
        ("system", "너는 친절해"),
        ("user", "첫 질문"),
        ("assistant", "첫 답"),
        ("user", "두번째"),
        ("assistant", "마지막 답"),
    ]


def test_field_map_to_a_missing_column_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_text("Q,A\n안녕,hi\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"x.csv: dataset.fields.prompt: column 'question' is in no record"):
        load(path, fields={"prompt": "question", "response": "answer"})
    # one typo among correct names is caught too (it would otherwise drop every row as missing_field)
    with pytest.raises(
        UserError, match=r"x.csv: dataset.fields.response: column 'Nope' is in no record \(columns: A, Q\)"
    ):
        load(path, fields={"prompt": "Q", "response": "Nope"})


def test_csv_cells_longer_than_the_csv_module_default_load(tmp_path: Path):
    path = tmp_path / "long.csv"
    path.write_text("prompt,response\nhi," + "가" * 140_000 + "\nok,fine\n", encoding="utf-8")
    result = load(path)
    assert (result.read, result.frame.height, result.quarantine.height) == (2, 2, 0)
    assert len(result.frame["response"][0]) == 140_000


def test_gzip_parquet_and_missing_file(tmp_path: Path):
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    gz = tmp_path / "pairs.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps(rows[0]) + "\n").encode()))
    assert load(gz, kind="dpo").frame.select("prompt", "chosen", "rejected").rows() == [("p", "c", "r")]
    pq = tmp_path / "pairs.parquet"
    pl.DataFrame(rows).write_parquet(pq)
    assert load(pq, kind="dpo").frame["chosen"].to_list() == ["c"]
    with pytest.raises(UserError, match="nope.jsonl: file not found"):
        load(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- the real datasets in ../shared/data


def test_chatbotdata_csv_with_field_map(shared_data: Path):
    result = load(
        shared_data / "songys__Chatbot_data/ChatbotData.csv",
        name="chatbot",
        fields={"prompt": "Q", "response": "A"},
    )
    assert (result.read, result.frame.height, result.quarantine.height) == (11823, 11823, 0)
    first = result.frame.row(0, named=True)
    assert (first["sample_id"], first["prompt"], first["response"], first["label"]) == (
        "chatbot:0",
        "12시 땡!",
        "하루가 또 가네요.",
        "0",
    )
    labels = result.frame["label"].value_counts().sort("label")
    assert dict(labels.rows()) == {
        "0": 5290,
        "1": 3570,
        "2": 2962,
        "2   ": 1,
    }  # the dirty label survives loading


def test_hh_rlhf_splits_shared_prompt_from_final_turns(shared_data: Path):
    result = load(shared_data / "anthropics__hh-rlhf/harmless-base_test.jsonl.gz", name="hh", kind="dpo")
    assert (result.read, result.frame.height) == (2312, 2312)
    raw = json.loads(
        gzip.decompress((shared_data / "anthropics__hh-rlhf/harmless-base_test.jsonl.gz").read_bytes()).split(
            b"\n"
        )[0]
    )
    row = result.frame.row(0, named=True)
    assert row["prompt"].endswith("Assistant:")
    assert raw["chosen"].startswith("\n\n" + row["prompt"])
    assert raw["chosen"].endswith(row["chosen"]) and raw["rejected"].endswith(row["rejected"])
    assert row["chosen"] != row["rejected"]
    assert result.frame.filter(pl.col("prompt").is_null() | pl.col("chosen").is_null()).height == 0


def test_hrc_korean_field_names(shared_data: Path):
    cfg = {"prompt": "질의", "response": "상담례, 결정례 기반 답변", "label": "종류"}
    result = load(
        shared_data / "human-rights-corpus__HRC/humane_right_copus_v1.jsonl.json", name="hrc", fields=cfg
    )
    assert (result.read, result.frame.height) == (1549, 1549)
    assert dict(result.frame["label"].value_counts().rows()) == {"결정례": 1486, "상담례": 63}
    assert result.frame["prompt"][0].startswith("사회복무요원이 공무 중 발생한 교통사고")


def test_pubmedqa_as_raft(shared_data: Path):
    result = load(shared_data / "pubmedqa__pubmedqa/ori_pqal.json", name="pqa", kind="raft")
    assert (result.read, result.frame.height) == (1000, 1000)
    row = result.frame.row(0, named=True)
    assert row["question"].startswith("Do mitochondria play a role in remodelling lace plant leaves")
    assert row["answer"] == "yes" and len(row["context"]) == 2 and row["cot"].startswith("Results depicted")
    assert dict(result.frame["answer"].value_counts().rows()) == {"yes": 552, "no": 338, "maybe": 110}


def test_korsts_tsv_with_stray_quotes(shared_data: Path):
    fields = {"prompt": "sentence1", "response": "sentence2", "label": "score"}
    result = load(shared_data / "kakaobrain__kor-nlu-datasets/KorSTS_sts-dev.tsv", name="sts", fields=fields)
    assert (result.read, result.frame.height, result.quarantine.height) == (1500, 1500, 0)
    assert (result.frame["label"].cast(pl.Float64) >= 4).sum() == 264


def test_question_pair_trailing_comma_and_bom(shared_data: Path):
    fields = {"prompt": "question1", "response": "question2", "label": "is_duplicate"}
    result = load(shared_data / "songys__Question_pair/kor_Pair_test.csv", name="qp", fields=fields)
    # one real row carries a value in the trailing empty column: quarantined, not silently mis-parsed
    assert (result.read, result.frame.height, result.quarantine.height) == (688, 687, 1)
    assert result.quarantine.row(0, named=True)["source_line"] == 685
    assert result.frame.row(0, named=True)["prompt"] == "21살의 사랑에 대해"
