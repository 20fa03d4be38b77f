"""Real DPO runs (trl DPOTrainer) on top of a real SFT adapter of the tiny model, on CPU."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from test_train_sft import (  # noqa: E402
    build_test_model,
    make_recipe,
    persona_rows,
    preference_rows,
    register_curation,
    train_log,
    write_curation,
)

from tunelab.errors import UserError  # noqa: E402
from tunelab.modeling.loading import checkpointing_alias_ignored  # noqa: E402
from tunelab.workspace import Workspace  # noqa: E402

pytestmark = pytest.mark.slow  # real trl training runs


@pytest.fixture(scope="module")
def sft_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    from tunelab.train.sft import run_sft

    root = tmp_path_factory.mktemp("dpo")
    model = build_test_model(root)
    workspace = root / "ws"
    curation = write_curation(workspace, "cur-sft", persona_rows())
    result = run_sft(make_recipe(str(model)), workspace, curation_id=curation, show_progress=False)
    return model, workspace, result.run_id


def sequence_logp(model, tokenizer, prompt_row: dict, answer: str) -> float:
    """Summed log-probability of `answer` after the rendered prompt."""
    import torch

    from tunelab.modeling.chat import generation_prompt

    prompt = generation_prompt(prompt_row, "dpo", tokenizer)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logps = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    picked = logps.gather(1, targets[:, None])[:, 0]
    return float(picked[len(prompt_ids) - 1 :].sum())


def test_dpo_reference_is_the_sft_policy(sft_workspace: tuple[Path, Path, str]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.train.dpo import run_dpo
    from tunelab.warehouse import store

    model_dir, workspace, sft_run = sft_workspace
    # the check below only means something if the SFT adapter really moved the model away from the base
    sft_adapter = Path(store.get_run(Workspace(workspace).warehouse, sft_run)["adapter_path"])
    tokenizer = AutoTokenizer.from_pretrained(sft_adapter)
    row = preference_rows()[0]
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    base_logp = sequence_logp(base, tokenizer, row, row["chosen"])
    with checkpointing_alias_ignored():  # peft 0.21's own FutureWarning, not ours
        sft_model = PeftModel.from_pretrained(base, str(sft_adapter))
    sft_logp = sequence_logp(sft_model, tokenizer, row, row["chosen"])
    assert abs(sft_logp - base_logp) > 0.5

    curation = write_curation(workspace, "cur-prefs", preference_rows())
    recipe = make_recipe(str(model_dir))
    result = run_dpo(recipe, workspace, from_run=sft_run, curation_id=curation, show_progress=False)

    run = store.get_run(Workspace(workspace).warehouse, result.run_id)
    assert run["status"] == "finished" and run["parent_run_id"] == sft_run and run["kind"] == "dpo"
    log = train_log(workspace, result.run_id).filter(pl.col("loss").is_not_null()).sort("step")
    assert log["step"].to_list() == list(range(1, 7))
    first = log.row(0, named=True)
    # policy == reference at the first step: zero margin, loss = log 2; a base-model reference would not give 0
    assert abs(first["rewards_margins"]) < 1e-3
    assert abs(first["loss"] - math.log(2)) < 1e-3
    assert first["logps_chosen"] is not None and first["rewards_accuracies"] is not None
    # and DPO does move the policy toward the chosen answers
    assert log["rewards_margins"][-1] > 0.05
    assert all(math.isfinite(x) for x in log["loss"].to_list())

    # the DPO adapter holds only the trained policy ("default"), not trl's frozen "ref" copy
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert not (result.adapter_dir / "ref").exists()

    # evaluation resolves "dpo" through the DPO dataset's curation
    from tunelab.evaluate.generate import trained_datasets
    from tunelab.modeling.resolve import load_for_generation

    register_curation(workspace, curation, "prefs", "dpo")
    _, tok, run_id = load_for_generation("dpo", recipe.train, Workspace(workspace), trained_datasets(recipe))
    assert run_id == result.run_id and tok.padding_side == "left"


def test_four_bit_dpo_reference_is_the_sft_policy(sft_workspace: tuple[Path, Path, str]) -> None:
    from tunelab.train.dpo import run_dpo

    model_dir, workspace, sft_run = sft_workspace
    curation = write_curation(workspace, "cur-prefs-4bit", preference_rows())
    recipe = make_recipe(str(model_dir), quantization="nf4")
    result = run_dpo(recipe, workspace, from_run=sft_run, curation_id=curation, show_progress=False)
    log = train_log(workspace, result.run_id).filter(pl.col("loss").is_not_null()).sort("step")
    assert log["step"].to_list() == list(range(1, 7))
    assert abs(log["rewards_margins"][0]) < 1e-3
    assert all(math.isfinite(x) for x in log["loss"].to_list())
    assert log["rewards_margins"][-1] > 0.05
    card = json.loads((result.output_dir / "run_card.json").read_text())
    assert card["linear4bit_modules"] == 14  # the policy really sat on a 4-bit base


def test_dpo_from_a_missing_run_is_a_user_error(sft_workspace: tuple[Path, Path, str]) -> None:
    from tunelab.train.dpo import run_dpo

    model_dir, workspace, _ = sft_workspace
    with pytest.raises(UserError, match="--from-run: no run 'sft-nope'"):
        run_dpo(
            make_recipe(str(model_dir)), workspace, from_run="sft-nope", curation_id="x", show_progress=False
        )
