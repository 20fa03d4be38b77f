"""The offline tiny model, chat rendering of sft/raft/dpo rows, device args, and the example recipes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.errors import UserError  # noqa: E402
from tunelab.recipe import load_recipe, parse_recipe  # noqa: E402
from tunelab.workspace import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "안녕하세요, 저는 테토예요! 오늘도 힘내요.",
    "서울의 인구는 약 천만 명입니다.",
    "에겐은 조용히 차를 마시며 책을 읽어요.",
    "What is the capital of Korea? Seoul.",
] * 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunelab.modeling.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", TEXTS, vocab_size=400, hidden_size=64,
                            pretrain_steps=5)  # fmt: skip


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_model_is_deterministic_and_cached(tiny: Path, tmp_path: Path) -> None:
    from tunelab.modeling.tiny import build_tiny_model

    again = build_tiny_model(tmp_path / "m", TEXTS, vocab_size=400, hidden_size=64, pretrain_steps=5)
    assert digest(again) == digest(tiny)  # same texts, same seed → byte-identical weights and tokenizer
    before = (tiny / "model.safetensors").stat().st_mtime_ns
    # built once per folder: other texts later must not replace a base that adapters were trained on
    assert build_tiny_model(tiny, ["다른 텍스트"], vocab_size=400, hidden_size=64) == tiny
    assert (tiny / "model.safetensors").stat().st_mtime_ns == before


def test_tokenizer_round_trips_korean_never_seen(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    text = "뷁 똠방각하 ㅋㅋ 🙂 처음 보는 글자도 byte-level이면 복원돼요"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    # the trained merges are real: a seen Korean phrase takes far fewer tokens than its UTF-8 bytes
    seen = "서울의 인구는 약 천만 명입니다."
    assert len(tokenizer(seen, add_special_tokens=False).input_ids) < len(seen.encode()) / 3


def test_chat_template_masks_only_the_assistant(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    messages = [
        {"role": "system", "content": "너는 테토야."},
        {"role": "user", "content": "안녕?"},
        {"role": "assistant", "content": "반가워요!"},
    ]
    out = tokenizer.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assistant = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(assistant) == "반가워요!" + tokenizer.eos_token
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert full.startswith(prompt)  # DPO/generation need the prompt to be a prefix of the conversation


def test_render_shapes_follow_the_template(tiny: Path) -> None:
    from transformers import AutoTokenizer

    from tunelab.modeling.chat import dpo_example, sft_example

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    row = {"system": None, "prompt": "안녕?", "response": "반가워요"}
    assert sft_example(row, "sft", tokenizer, system_prompt="너는 테토야.") == {
        "messages": [
            {"role": "system", "content": "너는 테토야."},
            {"role": "user", "content": "안녕?"},
            {"role": "assistant", "content": "반가워요"},
        ]
    }
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", ""
    )
    # no generation markers: prompt/completion, so trl still masks the prompt
    assert set(sft_example(row, "sft", tokenizer)) == {"prompt", "completion"}
    tokenizer.chat_template = None
    plain = sft_example(row, "sft", tokenizer)
    assert plain == {"prompt": "안녕?\n\n", "completion": "반가워요" + tokenizer.eos_token}
    pref = dpo_example({"prompt": "p", "chosen": "c", "rejected": "r"}, tokenizer)
    assert pref["chosen"].endswith(tokenizer.eos_token)


def test_raft_rows_shuffle_documents_stably_and_put_cot_first() -> None:
    from tunelab.modeling.chat import prompt_messages, target_text

    docs = [f"문서 {i}" for i in range(6)]
    row = {"sample_id": "raft:3", "instruction": "문서를 보고 답하세요.", "context": docs,
           "question": "정답은?", "answer": "예", "cot": "문서 0에 따르면 그렇다."}  # fmt: skip
    messages = prompt_messages(row, "raft")
    assert messages[0] == {"role": "system", "content": "문서를 보고 답하세요."}
    user = messages[1]["content"]
    shown = [part.split("</DOCUMENT>")[0] for part in user.split("<DOCUMENT>")[1:]]
    assert sorted(shown) == sorted(docs) and shown != docs  # all documents, golden not pinned first
    assert user.endswith("정답은?")
    assert prompt_messages(row, "raft") == messages  # seeded by sample_id: reproducible
    other = prompt_messages({**row, "sample_id": "raft:4"}, "raft")[1]["content"]
    assert other != user
    assert target_text(row, "raft") == "문서 0에 따르면 그렇다.\n\n<ANSWER>: 예"
    assert prompt_messages({"prompt": "안녕?", "label": "teto"}, "sft", "페르소나: {label}")[0] == {
        "role": "system",
        "content": "페르소나: teto",
    }
    assert target_text({**row, "cot": None}, "raft") == "예"


def test_cpu_training_args_turn_off_bf16_and_paged_optimisers() -> None:
    from tunelab.modeling.loading import device_training_args, has_gpu

    if has_gpu():
        pytest.skip("CPU-only expectations")
    recipe = load_recipe(REPO / "examples" / "persona-exaone.yaml")
    args = device_training_args(recipe.train, recipe.train.sft.optim)
    assert args["use_cpu"] is True and args["bf16"] is False and args["optim"] == "adamw_torch"


def test_example_recipes_parse_with_exaone_settings() -> None:
    persona = load_recipe(REPO / "examples" / "persona-exaone.yaml")
    train = persona.train
    assert train.base_model == "LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct" and train.trust_remote_code
    assert (train.quantization, train.double_quant, train.compute_dtype) == ("nf4", True, "bfloat16")
    assert (train.lora.r, train.lora.alpha, train.lora.dropout) == (16, 32, 0.05)
    assert train.lora.target_modules == ["q_proj", "k_proj", "v_proj", "out_proj"]
    assert train.sft.optim == "paged_adamw_8bit" and train.sft.lr_scheduler == "cosine"
    assert train.dpo is not None and train.dpo.dataset.kind == "dpo"
    raft = load_recipe(REPO / "examples" / "raft-exaone.yaml")
    assert raft.dataset.kind == "raft" and raft.train.quantization == "nf4"


def test_lora_config_comes_from_the_recipe() -> None:
    from tunelab.modeling.loading import lora_config

    recipe = load_recipe(REPO / "examples" / "raft-exaone.yaml")
    config = lora_config(recipe.train.lora)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)
    assert set(config.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "c_fc_0",
        "c_fc_1",
        "c_proj",
    }
    assert config.task_type == "CAUSAL_LM"


def test_tiny_base_must_exist_before_generation(tmp_path: Path) -> None:
    from tunelab.modeling.loading import resolve_base_model

    recipe = parse_recipe(
        {"dataset": {"path": "x.jsonl", "name": "x"}, "train": {"base_model": "tunelab-tiny"}}
    )
    with pytest.raises(UserError, match="tunelab-tiny is not built yet"):
        resolve_base_model(recipe.train, Workspace(tmp_path))
    assert (
        resolve_base_model(recipe.train.model_copy(update={"base_model": "org/model"}), Workspace(tmp_path))
        == "org/model"
    )


def test_trainer_log_keys_map_to_train_log_columns() -> None:
    from tunelab.train.callbacks import train_log_row

    logs = {
        "loss": 0.69,
        "grad_norm": 1.5,
        "learning_rate": 1e-3,
        "rewards/chosen": 0.2,
        "rewards/rejected": -0.1,
        "rewards/margins": 0.3,
        "rewards/accuracies": 1.0,
        "logps/chosen": -12.0,
        "logps/rejected": -15.0,
        "entropy": 2.5,
        "eval_rewards/margins": 0.4,
        "grad_spike": float("nan"),
        "epoch": 0.5,
    }
    row = train_log_row(logs, step=7, epoch=0.49)
    assert row["step"] == 7 and row["epoch"] == 0.5  # the trainer's own epoch wins
    assert (row["loss"], row["grad_norm"], row["learning_rate"]) == (0.69, 1.5, 1e-3)
    assert (row["rewards_chosen"], row["rewards_rejected"], row["rewards_margins"]) == (0.2, -0.1, 0.3)
    assert (row["rewards_accuracies"], row["logps_chosen"], row["logps_rejected"]) == (1.0, -12.0, -15.0)
    # eval-time DPO numbers and anything unknown are kept, as JSON-safe values, in `extra`
    assert row["extra"] == {"entropy": 2.5, "eval_rewards/margins": 0.4, "grad_spike": "nan"}


def test_report_to_reaches_the_trl_configs(tmp_path: Path) -> None:
    import polars as pl
    from trl import DPOConfig, SFTConfig

    from tunelab.train import runs

    recipe = parse_recipe(
        {
            "dataset": {"path": "x.jsonl", "name": "x"},
            "train": {
                "base_model": "org/model",
                "sft": {"report_to": ["tensorboard"]},
                "dpo": {"dataset": {"path": "p.jsonl", "name": "p", "kind": "dpo"}, "report_to": ["mlflow"]},
            },
        }
    )
    prepared = runs.PreparedRun({"output_dir": str(tmp_path)}, pl.DataFrame({"a": [1]}), pl.DataFrame(), None)
    train = recipe.train
    assert SFTConfig(**runs.common_training_args(train, train.sft, prepared)).report_to == ["tensorboard"]
    assert DPOConfig(**runs.common_training_args(train, train.dpo, prepared)).report_to == ["mlflow"]
    # unset: nothing besides the warehouse (transformers would otherwise report to every tracker installed)
    plain = parse_recipe({"dataset": {"path": "x.jsonl", "name": "x"}, "train": {"base_model": "org/model"}})
    assert SFTConfig(**runs.common_training_args(plain.train, plain.train.sft, prepared)).report_to == []
    with pytest.raises(UserError, match="report_to"):
        parse_recipe(
            {
                "dataset": {"path": "x.jsonl", "name": "x"},
                "train": {"base_model": "org/model", "sft": {"report_to": ["tensorbored"]}},
            }
        )


def test_training_progress_lines_carry_step_total_loss_and_eta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off a terminal (a log file, `RUN=$(...)`), training progress is a line every few seconds on stderr."""
    import io
    import sys
    import time
    from types import SimpleNamespace

    from tunelab.train.callbacks import WarehouseLogCallback
    from tunelab.warehouse import store

    db = Workspace(tmp_path).warehouse
    store.start_run(db, {"run_id": "sft-1", "kind": "sft"})
    stderr = io.StringIO()  # not a TTY: plain lines
    monkeypatch.setattr(sys, "stderr", stderr)
    now = [time.monotonic()]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    callback = WarehouseLogCallback(db, "sft-1", flush_every_s=1e9, description="train sft-1 step")
    args = SimpleNamespace(save_strategy="no", save_steps=500)
    state = SimpleNamespace(max_steps=40, global_step=0, epoch=0.0)
    callback.on_train_begin(args, state, None)
    for step in range(1, 41):
        now[0] += 1.0  # one second a step: a line every 5 steps
        state.global_step = step
        callback.on_step_end(args, state, None)
        callback.on_log(args, state, None, logs={"loss": 3.0 - step / 20})
    callback.close()
    lines = stderr.getvalue().splitlines()
    assert len(lines) >= 7, lines
    # step/total, elapsed and ETA, and the loss logged last
    assert re.fullmatch(
        r"train sft-1 step  [56]/40 \(1[25]%\)  [56] s, ETA 3[45] s  loss 2\.7[05]00", lines[0]
    )
    assert lines[-1].startswith("train sft-1 step  40/40 (100%)") and "loss 1.0" in lines[-1]
    assert sorted(store.logged_steps(db, "sft-1")) == list(range(1, 41))
