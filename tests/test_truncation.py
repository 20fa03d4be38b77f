"""Training never truncates silently: rows rendered as trl renders them, measured against max_length.

The tiny model's tokenizer and chat template, real trl trainers, a real warehouse. The data has three
kinds of rows whose rendered lengths are checked here with the tokenizer directly (not with the code under
test): short ones that fit, ones with a long answer (truncated, but their answer starts inside
max_length), and ones whose prompt alone passes max_length (no answer token left: dropped).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.errors import UserError  # noqa: E402
from tunelab.recipe import parse_recipe  # noqa: E402
from tunelab.workspace import Workspace  # noqa: E402

MAX_LENGTH = 64
CITIES = ["서울", "부산", "대구", "인천", "광주", "대전"]


def syllables(n: int, seed: int) -> str:
    """n Hangul syllables, spread over the block so BPE cannot merge them into a few tokens."""
    return "".join(chr(0xAC00 + (seed * 131 + i * 7919) % 11172) for i in range(n))


def sft_rows() -> list[dict[str, Any]]:
    short = [
        {"prompt": f"{city} 맛집 알려줘", "response": f"{city}에는 맛집이 많아요"} for city in CITIES
    ]  # 6 rows that fit
    long_answer = [
        {"prompt": f"{city} 이야기", "response": syllables(120, k)} for k, city in enumerate(CITIES[:4])
    ]
    long_prompt = [{"prompt": syllables(120, 10 + k), "response": "네"} for k in range(3)]
    rows = short + long_answer + long_prompt
    return [{"sample_id": f"t:{i}", "label": "x", **row} for i, row in enumerate(rows)]


def pair_rows() -> list[dict[str, Any]]:
    fits = [{"prompt": f"{c}에서 뭐 먹을까?", "chosen": f"{c} 비빔밥", "rejected": "몰라요"} for c in CITIES]
    long_chosen = [
        {"prompt": "추천해줘", "chosen": syllables(120, 20 + k), "rejected": "싫어"} for k in range(2)
    ]
    long_prompt = [{"prompt": syllables(120, 30 + k), "chosen": "네", "rejected": "아니"} for k in range(2)]
    return [{"sample_id": f"p:{i}", **row} for i, row in enumerate(fits + long_chosen + long_prompt)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunelab.modeling.tiny import build_tiny_model

    texts = [r[k] for r in sft_rows() for k in ("prompt", "response")]
    texts += [r[k] for r in pair_rows() for k in ("prompt", "chosen", "rejected")]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", texts, vocab_size=400, hidden_size=32,
                            pretrain_steps=0)  # fmt: skip


def rendered(tokenizer: Any, messages: list[dict[str, str]], **kwargs: Any) -> list[int]:
    return tokenizer.apply_chat_template(messages, return_dict=True, **kwargs)["input_ids"]


def test_the_data_has_the_three_kinds_of_rows(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    for i, row in enumerate(sft_rows()):
        user = [{"role": "user", "content": row["prompt"]}]
        full = len(rendered(tokenizer, [*user, {"role": "assistant", "content": row["response"]}]))
        start = len(rendered(tokenizer, user, add_generation_prompt=True))
        kind = "fits" if full <= MAX_LENGTH else "cut" if start < MAX_LENGTH else "no answer"
        assert kind == ("fits" if i < 6 else "cut" if i < 10 else "no answer"), (i, full, start)


def test_measurement_agrees_with_what_trl_keeps_and_cuts(tiny: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from tunelab.modeling import lengths
    from tunelab.modeling.chat import dpo_example, sft_example

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    common = {"max_length": MAX_LENGTH, "use_cpu": True, "report_to": "none", "bf16": False}

    examples = [sft_example(row, "sft", tokenizer) for row in sft_rows()]
    measured = lengths.measure(examples, tokenizer)
    assert measured.truncated(MAX_LENGTH).sum() == 7 and measured.no_response(MAX_LENGTH).sum() == 3
    config = SFTConfig(output_dir=str(tmp_path / "sft"), assistant_only_loss=True, **common)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer)  # fmt: skip
    kept = [i for i in range(len(examples)) if not measured.no_response(MAX_LENGTH)[i]]
    assert len(trainer.train_dataset) == len(kept) == 10  # trl drops exactly the rows we call answerless
    for i, row in zip(kept, trainer.train_dataset, strict=True):
        assert len(row["input_ids"]) == min(int(measured.lengths[i]), MAX_LENGTH)

    examples = [dpo_example(row, tokenizer) for row in pair_rows()]
    measured = lengths.measure(examples, tokenizer)
    assert measured.truncated(MAX_LENGTH).sum() == 4 and measured.no_response(MAX_LENGTH).sum() == 2
    config = DPOConfig(output_dir=str(tmp_path / "dpo"), **common)
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer)  # fmt: skip
    kept = [i for i in range(len(examples)) if not measured.no_response(MAX_LENGTH)[i]]
    assert len(trainer.train_dataset) == len(kept) == 8
    for i, row in zip(kept, trainer.train_dataset, strict=True):
        longest = len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"]))
        assert longest == measured.lengths[i]


def write_curation(workspace: Path, curation_id: str, rows: list[dict[str, Any]], val: int = 0) -> str:
    out = workspace / "curations" / curation_id
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows[: len(rows) - val]).write_parquet(out / "train.parquet")
    pl.DataFrame(rows[len(rows) - val :] or rows[:0]).write_parquet(out / "val.parquet")
    return curation_id


def recipe(model: Path, max_length: int = MAX_LENGTH, dpo_max_length: int = MAX_LENGTH) -> Any:
    trainer = {"max_steps": 1, "batch_size": 4, "logging_steps": 1, "save_steps": 1000, "warmup_ratio": 0.0}
    return parse_recipe(
        {
            "dataset": {"path": "t.jsonl", "name": "t"},
            "train": {
                "base_model": str(model),
                "quantization": "none",
                "compute_dtype": "float32",
                "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                "sft": {**trainer, "max_length": max_length},
                "dpo": {
                    "dataset": {"path": "p.jsonl", "name": "p", "kind": "dpo"},
                    "curate": "inherit",
                    **trainer,
                    "max_length": dpo_max_length,
                },
            },
        }
    )


@pytest.fixture(scope="module")
def sft_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, str]:
    import contextlib
    import io

    from tunelab.train.sft import run_sft

    workspace = tmp_path_factory.mktemp("ws")
    curation = write_curation(workspace, "cur-t", sft_rows(), val=0)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        result = run_sft(recipe(tiny), workspace, curation_id=curation, show_progress=False)
    return workspace, result, stderr.getvalue()


def test_sft_says_how_many_rows_were_cut_and_drops_the_answerless(sft_run: tuple[Path, Any, str]) -> None:
    from tunelab.warehouse import store

    workspace, result, stderr = sft_run
    card = json.loads((result.output_dir / "run_card.json").read_text(encoding="utf-8"))
    [train] = card["lengths"]
    assert (train["rows"], train["truncated"], train["dropped_no_response"]) == (13, 7, 3)
    assert train["dropped_ids"] == ["t:10", "t:11", "t:12"]
    assert train["dropped_reason"] == "no_response_token_within_max_length"
    assert card["train_rows"] == 10  # trained on: the answerless rows are not
    metrics = store.get_run(Workspace(workspace).warehouse, result.run_id)["metrics"]
    metrics = json.loads(metrics) if isinstance(metrics, str) else metrics
    assert metrics["train_rows_truncated"] == 7 and metrics["train_rows_dropped_no_response"] == 3
    assert metrics["max_length"] == MAX_LENGTH and metrics["train_tokens_p95"] > MAX_LENGTH
    assert stderr.count("note: train.sft.max_length 64: 7 of 13 train rows are longer and get truncated; "
                        "3 keep no response token and are dropped, not trained on") == 1  # fmt: skip


def test_when_no_row_keeps_an_answer_the_run_stops_in_one_line(tiny: Path, tmp_path: Path) -> None:
    from tunelab.train.sft import run_sft
    from tunelab.warehouse import store

    long_prompts = [row for row in sft_rows() if row["sample_id"] in ("t:10", "t:11", "t:12")]
    curation = write_curation(tmp_path, "cur-long", long_prompts)
    # before: a 40-line traceback ending in `num_samples=0`
    with pytest.raises(UserError) as err:
        run_sft(recipe(tiny), tmp_path, curation_id=curation, show_progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "train.sft.max_length: none of the 3 training rows keeps a response token within max_length 64 "
        "(rendered length p95 "
    )
    assert "raise train.sft.max_length (e.g. to " in message and message.endswith("curate.length.max_tokens")
    [run] = store.query(Workspace(tmp_path).warehouse, "select status, error from runs").to_dicts()
    assert run["status"] == "failed" and "none of the 3 training rows" in run["error"]


def test_dpo_says_how_many_pairs_were_cut_and_drops_the_answerless(
    tiny: Path, sft_run: tuple[Path, Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from test_train_sft import register_curation

    from tunelab.train.dpo import run_dpo

    workspace, parent, _ = sft_run
    curation = write_curation(workspace, "cur-p", pair_rows())
    register_curation(workspace, curation, "p", "dpo")
    result = run_dpo(
        recipe(tiny), workspace, from_run=parent.run_id, curation_id=curation, show_progress=False
    )
    card = json.loads((result.output_dir / "run_card.json").read_text(encoding="utf-8"))
    [train] = card["lengths"]
    assert (train["rows"], train["truncated"], train["dropped_no_response"]) == (10, 4, 2)
    assert train["dropped_ids"] == ["p:8", "p:9"] and card["train_rows"] == 8
    assert "note: train.dpo.max_length 64: 4 of 10 train rows are longer" in capsys.readouterr().err
