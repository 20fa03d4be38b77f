"""Real conversations: FastChat's MT-Bench two-turn questions with GPT-4's reference answers, written as a
ShareGPT file (human/gpt/system), curated as kind chat and rendered for training: every turn of every
conversation survives into train/val `messages` and into the rendered training text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.curate.config import CurateConfig  # noqa: E402
from tunelab.curate.pipeline import curate_dataset  # noqa: E402
from tunelab.records.config import DatasetConfig  # noqa: E402
from tunelab.textnorm import normalize_text  # noqa: E402

SYSTEM = "You are a helpful assistant."


def sharegpt_conversations(folder: Path) -> list[dict]:
    """ShareGPT records: question turn 1, answer 1, question turn 2, answer 2 (a system turn on even ids)."""
    questions = {}
    for line in (folder / "mt_bench_question.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        questions[record["question_id"]] = record["turns"]
    conversations = []
    for line in (folder / "mt_bench_reference_answer_gpt-4.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        answers = record["choices"][0]["turns"]
        turns = [{"from": "system", "value": SYSTEM}] if record["question_id"] % 2 == 0 else []
        for question, answer in zip(questions[record["question_id"]], answers, strict=True):
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        conversations.append({"id": f"mt_bench_{record['question_id']}", "conversations": turns})
    return conversations


ROLE = {"system": "system", "human": "user", "gpt": "assistant"}


def test_every_turn_of_every_fastchat_conversation_is_curated_and_rendered(
    shared_data: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from tunelab.modeling.tiny import build_tiny_model
    from tunelab.train.sft import sft_dataset

    source = sharegpt_conversations(shared_data / "lm-sys__FastChat")
    assert len(source) == 30 and all(len(c["conversations"]) in (4, 5) for c in source)
    path = tmp_path / "mt_bench_sharegpt.jsonl"
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in source), encoding="utf-8")
    curate = CurateConfig().with_stages(["schema", "normalize", "length", "exact", "minhash", "split"])
    result = curate_dataset(
        DatasetConfig(path=path, name="mtbench", kind="chat"), curate, tmp_path, show_progress=False
    )
    assert (result.read, result.kept, result.dropped, result.quarantined) == (30, 30, 0, 0)

    curated = pl.concat([pl.read_parquet(result.train_path), pl.read_parquet(result.val_path)])
    by_id = dict(zip(curated["source_row"].to_list(), curated["messages"].to_list(), strict=True))
    expected = {
        row: [{"role": ROLE[t["from"]], "content": normalize_text(t["value"])} for t in c["conversations"]]
        for row, c in enumerate(source)
    }
    assert by_id == expected  # every turn, in order, its text only normalised

    texts = [t["content"] for turns in expected.values() for t in turns]
    tokenizer = AutoTokenizer.from_pretrained(
        build_tiny_model(tmp_path / "tiny", texts, vocab_size=600, hidden_size=64, pretrain_steps=1)
    )
    dataset = sft_dataset(curated, "chat", tokenizer, None)
    assert len(dataset) == 30  # one example per conversation: the template marks every assistant turn
    for example, turns in zip(dataset, curated["messages"].to_list(), strict=True):
        rendered = tokenizer.apply_chat_template(example["messages"], tokenize=False)
        position = 0
        for turn in turns:  # each turn's text, in conversation order
            found = rendered.find(turn["content"], position)
            assert found >= 0, (turn["role"], turn["content"][:80])
            position = found + len(turn["content"])
