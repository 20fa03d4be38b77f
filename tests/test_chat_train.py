"""Conversations in training and evaluation on the tiny offline model: every assistant turn learned (and
nothing else), a real SFT run on kind chat, and multi-turn evaluation answered turn by turn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.modeling.chat import (  # noqa: E402
    conversation,
    render_for_generation,
    sft_example,
    sft_examples,
)

pytestmark = pytest.mark.slow  # real trl / transformers objects


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "너는 친절한 안내원이야."}
TWO_EXCHANGES = [
    SYSTEM,
    u("서울은 어디야?"),
    a("한국의 수도입니다."),
    u("그럼 부산은?"),
    a("제2의 도시입니다."),
]
CITIES = ["서울", "부산", "대구", "인천", "광주", "대전"]


def chat_rows() -> list[dict[str, Any]]:
    rows = []
    for i, city in enumerate(CITIES):
        rows.append(
            {
                "sample_id": f"chat:{i}",
                "label": None,
                "messages": [
                    u(f"{city}에 가 봤어?"),
                    a(f"네, {city}는 좋은 곳이에요."),
                    u(f"{city}에서 뭐 먹을까?"),
                    a(f"{city}에서는 국밥을 드셔 보세요."),
                ],
            }
        )
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunelab.modeling.tiny import build_tiny_model

    texts = [t["content"] for row in chat_rows() for t in row["messages"]]
    texts += [t["content"] for t in TWO_EXCHANGES]
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "m", texts, vocab_size=400, hidden_size=64, pretrain_steps=5
    )


def test_flat_and_chat_rows_render_through_one_conversation_path(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    flat = {"system": "너는 친절한 안내원이야.", "prompt": "서울은 어디야?", "response": "한국의 수도입니다."}
    assert conversation(flat, "sft") == TWO_EXCHANGES[:3]
    assert conversation({"messages": TWO_EXCHANGES}, "chat") == TWO_EXCHANGES
    # the tiny template marks assistant turns: one example holding the whole conversation
    assert sft_examples({"messages": TWO_EXCHANGES}, "chat", tokenizer) == [{"messages": TWO_EXCHANGES}]
    # a template without {% generation %}: one prompt/completion example per assistant turn, so the
    # first answer is learned too (with the conversation before it as the prompt)
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", ""
    )
    assert sft_examples({"messages": TWO_EXCHANGES}, "chat", tokenizer) == [
        {"prompt": TWO_EXCHANGES[:2], "completion": [TWO_EXCHANGES[2]]},
        {"prompt": TWO_EXCHANGES[:4], "completion": [TWO_EXCHANGES[4]]},
    ]
    assert sft_example({"messages": TWO_EXCHANGES}, "chat", tokenizer) == {
        "prompt": TWO_EXCHANGES[:4],
        "completion": [TWO_EXCHANGES[4]],
    }
    # no template at all: plain text, split the same way
    tokenizer.chat_template = None
    plain = sft_examples({"messages": TWO_EXCHANGES}, "chat", tokenizer)
    assert [e["completion"] for e in plain] == [
        "한국의 수도입니다." + tokenizer.eos_token,
        "제2의 도시입니다." + tokenizer.eos_token,
    ]
    assert (
        plain[1]["prompt"]
        == "너는 친절한 안내원이야.\n\n서울은 어디야?\n\n한국의 수도입니다.\n\n그럼 부산은?\n\n"
    )


def test_assistant_only_loss_learns_exactly_every_assistant_turn(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunelab.train.sft import sft_dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    frame = pl.DataFrame({"sample_id": ["c:0"], "messages": [TWO_EXCHANGES]})
    data = sft_dataset(frame, "chat", tokenizer, None)
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        assistant_only_loss=True,
        max_length=256,
        report_to=[],
        bf16=False,
        use_cpu=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0]
    learned = labels[labels != -100].tolist()
    # what the template wraps in {% generation %}: each answer and its end-of-turn token, both turns
    expected: list[int] = []
    for answer in ("한국의 수도입니다.", "제2의 도시입니다."):
        expected += tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert learned == expected
    assert (
        tokenizer.decode(learned)
        == f"한국의 수도입니다.{tokenizer.eos_token}제2의 도시입니다.{tokenizer.eos_token}"
    )
    # the user turns, the system prompt and the role markers are all in the input, none in the loss
    assert len(batch["input_ids"][0]) > len(learned) + 10


def test_sft_trains_on_kind_chat_with_every_turn_in_the_rendered_text(tiny: Path, tmp_path: Path) -> None:
    from tunelab.recipe import parse_recipe
    from tunelab.train.sft import run_sft
    from tunelab.warehouse import store
    from tunelab.workspace import Workspace

    rows = chat_rows()
    out = tmp_path / "curations" / "cur-chat"
    out.mkdir(parents=True)
    pl.DataFrame(rows[:-2]).write_parquet(out / "train.parquet")
    pl.DataFrame(rows[-2:]).write_parquet(out / "val.parquet")
    recipe = parse_recipe(
        {
            "dataset": {"path": "chat.jsonl", "name": "chat", "kind": "chat"},
            "train": {
                "base_model": str(tiny),
                "quantization": "none",
                "compute_dtype": "float32",
                "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                "sft": {"max_steps": 2, "batch_size": 2, "max_length": 128, "save_steps": 1000},
            },
        }
    )
    result = run_sft(recipe, tmp_path, curation_id="cur-chat", show_progress=False)
    run = store.get_run(Workspace(tmp_path).warehouse, result.run_id)
    assert run["status"] == "finished" and run["kind"] == "sft"


def test_multi_turn_evaluation_answers_each_follow_up_after_the_models_own_answer(tiny: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.evaluate.config import GenerationSettings
    from tunelab.evaluate.generate import eval_rows_from_frame, generate_texts, generate_turn_by_turn
    from tunelab.modeling.chat import prompt_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    settings = GenerationSettings(max_new_tokens=6, batch_size=4)
    frame = pl.DataFrame(
        {"sample_id": ["e:0", "e:1"], "messages": [TWO_EXCHANGES, [u("부산에 가 봤어?"), a("네.")]]}
    )
    rows = eval_rows_from_frame(frame, "chat", "eval.jsonl")
    # the final assistant turn is the reference; the whole prompt is stored as text
    assert rows["reference"].to_list() == ["제2의 도시입니다.", "네."]
    assert rows["prompt_text"][0] == (
        "system: 너는 친절한 안내원이야.\nuser: 서울은 어디야?\nassistant: 한국의 수도입니다.\nuser: 그럼 부산은?"
    )
    prompts = [prompt_messages(row, "chat") for row in rows.to_dicts()]
    finals, latencies, seen = generate_turn_by_turn(model, tokenizer, prompts, settings)

    # turn 1: the model answers the first question alone ...
    first, _ = generate_texts(
        model, tokenizer, [render_for_generation(TWO_EXCHANGES[:2], tokenizer)], settings
    )
    assert seen[0] == [*TWO_EXCHANGES[:2], a(first[0]), TWO_EXCHANGES[3]]
    assert first[0] != "한국의 수도입니다."  # an untrained model: its own words, not the reference's
    # ... and the follow-up is asked after that answer, not after the reference's
    final, _ = generate_texts(model, tokenizer, [render_for_generation(seen[0], tokenizer)], settings)
    assert finals[0] == final[0]
    single, _ = generate_texts(
        model, tokenizer, [render_for_generation([u("부산에 가 봤어?")], tokenizer)], settings
    )
    assert (seen[1], finals[1]) == ([u("부산에 가 봤어?")], single[0])
    assert len(latencies) == 2 and latencies[0] > 0
