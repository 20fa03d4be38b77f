"""Recipe friction and balance cases of issue 11, each with what the user now sees.

Every case goes through a recipe file (load_recipe) and the real pipeline (curate_recipe) on small files
written here; a mistake must be one line naming its recipe key, a working case exact counts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tunelab.curate.pipeline import curate_recipe
from tunelab.errors import UserError
from tunelab.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def persona_rows(egen: int = 20, teto: int = 10) -> list[dict[str, Any]]:
    """Distinct rows (nothing for dedup to take): `egen` rows labelled egen, then `teto` rows teto."""
    rows = []
    for i in range(egen + teto):
        label = "egen" if i < egen else "teto"
        # egen answers are short (5-6 characters), teto answers long (14-15)
        response = f"조용히 {i}" if label == "egen" else f"테토의 아주 긴 답변 {i}번"
        rows.append({"prompt": f"{i}번째 질문: 오늘 기분 어때요?", "response": response, "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe_at(tmp_path: Path, text: str, rows: list[dict[str, Any]] | None = None) -> Recipe:
    write_jsonl(tmp_path / "data.jsonl", persona_rows() if rows is None else rows)
    (tmp_path / "r.yaml").write_text(text, encoding="utf-8")
    return load_recipe(tmp_path / "r.yaml")


def curate(tmp_path: Path, curate_block: str, rows: list[dict[str, Any]] | None = None):
    recipe = recipe_at(tmp_path, f"dataset: {{path: data.jsonl, name: d}}\ncurate: {curate_block}\n", rows)
    return curate_recipe(recipe, tmp_path / "ws", show_progress=False)


def one_line_error(tmp_path: Path, curate_block: str) -> str:
    with pytest.raises(UserError) as err:
        curate(tmp_path, curate_block)
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------- balance


def test_a_ratio_label_in_the_wrong_case_is_one_line_naming_the_labels_found(tmp_path: Path) -> None:
    # before: every teto row dropped, exit 0
    write_jsonl(tmp_path / "data.jsonl", persona_rows())
    (tmp_path / "r.yaml").write_text(
        "dataset: {path: data.jsonl, name: d}\n"
        "curate: {stages: [schema, balance, split], balance: {ratios: {Egen: 0.5, teto: 0.5}}}\n"
        f"workspace: {{dir: {tmp_path / 'ws'}}}\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "curate", str(tmp_path / "r.yaml")],
        capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: r.yaml: curate.balance.ratios: label 'Egen' is not in the data (did you mean 'egen'?); "
        "labels found: egen (20), teto (10)"
    ]
    assert not (tmp_path / "ws" / "curations").exists() or not any((tmp_path / "ws" / "curations").iterdir())


def test_a_ratio_label_absent_from_the_data_is_refused(tmp_path: Path) -> None:
    message = one_line_error(tmp_path, "{stages: [schema, balance], balance: {ratios: {egen: 1, hero: 1}}}")
    assert message == (
        "r.yaml: curate.balance.ratios: label 'hero' is not in the data; labels found: egen (20), teto (10)"
    )


def test_all_zero_ratios_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    # before: ValueError: min() arg is an empty sequence
    with pytest.raises(UserError) as err:
        recipe_at(
            tmp_path,
            "dataset: {path: data.jsonl, name: d}\ncurate: {balance: {ratios: {egen: 0, teto: 0}}}\n",
        )
    assert str(err.value) == (
        "r.yaml: curate.balance.ratios: every ratio is 0; give at least one label a ratio above 0"
    )


def test_a_zero_ratio_drops_that_label_and_the_others_keep_their_shares(tmp_path: Path) -> None:
    [result] = curate(tmp_path, "{stages: [schema, balance], balance: {ratios: {egen: 1, teto: 0}}}")
    assert (result.read, result.kept, result.dropped) == (30, 20, 10)
    dropped = result.decisions.filter(~pl.col("kept"))
    assert dropped["reason"].unique().to_list() == ["over_cap:label=teto"]
    assert result.report["stage_stats"]["balance"]["after"] == {"egen": 20, "teto": 0}


def test_ratio_keys_read_as_numbers_or_booleans_match_text_labels(tmp_path: Path) -> None:
    rows = [{**row, "label": 1 if row["label"] == "egen" else 0} for row in persona_rows()]
    [result] = curate(tmp_path, "{stages: [schema, balance], balance: {ratios: {1: 0.5, 0: 0.5}}}", rows)
    assert (result.read, result.kept, result.dropped) == (30, 20, 10)  # 20 '1' rows down to 10
    assert result.report["stage_stats"]["balance"]["after"] == {"0": 10, "1": 10}


def test_a_stratify_typo_names_the_columns(tmp_path: Path) -> None:
    # before: silently split without strata
    message = one_line_error(tmp_path, "{stages: [schema, split], split: {stratify: lable}}")
    assert message.startswith("r.yaml: curate.split.stratify: no column 'lable'; columns: ")
    assert "label" in message.split("columns: ")[1] and message.endswith(
        "(or null for a split without strata)"
    )


def test_a_balance_label_typo_is_one_line(tmp_path: Path) -> None:
    message = one_line_error(
        tmp_path, "{stages: [schema, balance], balance: {label: lable, max_per_label: 5}}"
    )
    assert (
        message
        == "r.yaml: curate.balance.label: no column 'lable' (use 'label' and map it in dataset.fields)"
    )


def test_a_cap_above_every_label_says_it_capped_nothing(tmp_path: Path) -> None:
    [result] = curate(tmp_path, "{stages: [schema, balance], balance: {max_per_label: 100}}")
    assert (result.kept, result.dropped) == (30, 0)
    assert result.report["stage_stats"]["balance"]["note"] == (
        "max_per_label 100 is at or above every label's count (egen (20), teto (10)): nothing capped"
    )


def test_labels_1_1point0_and_true_are_one_class_in_balance_split_and_the_report(tmp_path: Path) -> None:
    # the loader writes one text per class; balance and split count that class once
    rows = persona_rows(egen=12, teto=0)
    for row, label in zip(rows, [1, 1.0, True, "1", "true", 1.0] * 2, strict=True):
        row["label"] = label
    rows += [{**row, "prompt": row["prompt"] + " (0)", "label": 0} for row in persona_rows(egen=4, teto=0)]
    [result] = curate(
        tmp_path,
        "{stages: [schema, balance, split], balance: {max_per_label: 6}, split: {val_ratio: 0.5}}",
        rows,
    )
    labels = result.report["stage_stats"]["labels"]
    assert len(labels["read"]) == 2 and sorted(labels["read"].values()) == [4, 12]
    [big] = [label for label, n in labels["read"].items() if n == 12]
    assert result.report["stage_stats"]["balance"]["before"] == labels["read"]
    assert labels["kept"] == {**labels["read"], big: 6}
    by_label = result.report["stage_stats"]["split"]["by_label"]
    assert set(by_label) == set(labels["read"]) and by_label[big] == {"train": 3, "val": 3}


# ---------------------------------------------------------------- stage order


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("[schema, split, exact, balance]", "r.yaml: curate.stages: split must be the last stage"),
        ("[schema, balance, exact, split]", "r.yaml: curate.stages: balance must come after exact"),
        ("[schema, balance, normalize, minhash, split]", "r.yaml: curate.stages: balance must come after minhash"),
        ("[schema, length, balance, decontaminate, split]", "r.yaml: curate.stages: balance must come after decontaminate"),
        ("[schema, exact, exact, split]", "r.yaml: curate.stages: exact is listed more than once"),
    ],
)  # fmt: skip
def test_an_order_that_cannot_work_is_refused_in_one_line(tmp_path: Path, stages: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        recipe_at(tmp_path, f"dataset: {{path: data.jsonl, name: d}}\ncurate: {{stages: {stages}}}\n")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def duplicated_rows() -> list[dict[str, Any]]:
    """30 persona rows plus 6 exact copies (of egen rows 0-5) that differ only in spacing."""
    rows = persona_rows()
    return rows + [{**row, "response": row["response"].replace(" ", "  ")} for row in rows[:6]]


@pytest.mark.parametrize(
    ("stages", "kept", "dropped"),
    [
        # normalize after dedup: spacing copies are not exact copies yet, so exact keeps them
        ("[schema, exact, normalize, balance, split]", 36, 0),
        # normalize first (where the recipe lists it or not): the copies are exact duplicates
        ("[normalize, schema, exact, split]", 30, 6),
        ("[schema, normalize, exact, balance, split]", 30, 6),
        ("[schema, normalize, exact, decontaminate, balance]", 30, 6),
    ],
)
def test_an_order_that_works_accounts_for_every_row(
    tmp_path: Path, stages: str, kept: int, dropped: int
) -> None:
    [result] = curate(tmp_path, f"{{stages: {stages}, balance: {{max_per_label: 100}}}}", duplicated_rows())
    assert (result.read, result.kept, result.dropped, result.quarantined) == (36, kept, dropped, 0)
    assert result.train.height + result.val.height == kept
    assert [s["stage"] for s in result.report["stages"]] == re.findall(
        r"\w+", stages.replace("normalize, schema", "schema, normalize")
    )


# ---------------------------------------------------------------- length


def test_scalar_char_limits_apply_to_every_text_field(tmp_path: Path) -> None:
    # before: "curate.length.min_chars: input should be a valid dictionary"
    rows = persona_rows(egen=4, teto=0)
    rows += [
        {"prompt": "짧아", "response": "충분히 긴 답변입니다", "label": "egen"},  # prompt 2 chars
        {"prompt": "충분히 긴 질문입니다", "response": "네", "label": "egen"},  # response 1 char
        {"prompt": "충분히 긴 질문입니다", "response": "가" * 30, "label": "egen"},  # response 30 chars
    ]
    [result] = curate(tmp_path, "{stages: [schema, length], length: {min_chars: 5, max_chars: 25}}", rows)
    reasons = dict(result.decisions.filter(~pl.col("kept")).select("sample_id", "reason").iter_rows())
    assert reasons == {
        "d:4": "too_short:prompt_chars<5",
        "d:5": "too_short:response_chars<5",
        "d:6": "too_long:response_chars>25",
    }
    assert result.kept == 4  # no row has a system prompt: an absent optional field is not "too short"


def test_per_field_limits_still_work_and_a_negative_scalar_is_refused(tmp_path: Path) -> None:
    [result] = curate(tmp_path, "{stages: [schema, length], length: {max_chars: {response: 12}}}")
    assert (result.kept, result.dropped) == (20, 10)  # the 10 teto answers are 14-15 characters
    with pytest.raises(UserError, match=r"^r.yaml: curate.length: max_chars must be >= 0$"):
        recipe_at(tmp_path, "dataset: {path: data.jsonl, name: d}\ncurate: {length: {max_chars: -1}}\n")


def test_scalar_token_limits_with_the_workspace_tiny_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tunelab.modeling.tiny import build_tiny_model
    from tunelab.workspace import Workspace

    rows = persona_rows(egen=6, teto=0)
    long_text = "".join(chr(0xAC00 + (i * 7919) % 11172) for i in range(600))  # 600 distinct-ish syllables
    rows.append({"prompt": "긴 답을 주세요", "response": long_text, "label": "egen"})
    texts = [r[k] for r in rows for k in ("prompt", "response")]
    tiny = build_tiny_model(Workspace(tmp_path / "ws").model_dir("tunelab-tiny"), texts, vocab_size=400,
                            hidden_size=32, pretrain_steps=0)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    assert len(tokenizer(long_text, add_special_tokens=False).input_ids) > 200
    assert max(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts[:-1]) <= 200
    [result] = curate(
        tmp_path, "{stages: [schema, length], length: {tokenizer: tunelab-tiny, max_tokens: 200}}", rows
    )
    assert dict(result.decisions.filter(~pl.col("kept")).select("sample_id", "reason").iter_rows()) == {
        "d:6": "too_long:response_tokens>200"
    }
    # the audit's number: the kept rows rendered with the chat template, in this tokenizer's tokens
    rendered = result.report["stage_stats"]["tokens_rendered"]
    assert rendered["tokenizer"] == "tunelab-tiny" and rendered["rows"] == 6
    expected = [
        len(tokenizer.apply_chat_template(
            [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
            return_dict=True,
        )["input_ids"])
        for r in rows[:6]
    ]  # fmt: skip
    assert rendered["max"] == max(expected)


def test_tokens_without_a_tokenizer_name_the_setting(tmp_path: Path) -> None:
    message = one_line_error(tmp_path, "{stages: [schema, length], length: {max_tokens: 100}}")
    assert message == (
        "r.yaml: curate.length: min_tokens/max_tokens need curate.length.tokenizer "
        "(a tokenizer name or folder, or tunelab-tiny)"
    )


def test_an_unknown_tokenizer_offline_fails_at_once_in_one_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", persona_rows())
    (tmp_path / "r.yaml").write_text(
        "dataset: {path: data.jsonl, name: d}\n"
        "curate: {stages: [schema, length], length: {tokenizer: nobody/no-such-tokenizer, max_tokens: 50}}\n",
        encoding="utf-8",
    )
    # HF_HUB_OFFLINE is how a machine without network is told; before: 58 s of hub retries
    env = {**ENV, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "audit", str(tmp_path / "data.jsonl"), "--recipe", str(tmp_path / "r.yaml"),
         "--workspace", str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: curate.length.tokenizer: 'nobody/no-such-tokenizer' is not a folder and not in the Hugging "
        "Face cache, and the hub cannot be reached (offline); give a local tokenizer folder or tunelab-tiny"
    ]


def test_the_hub_check_is_quick_when_the_network_is_down() -> None:
    import time

    from tunelab.curate.length import hub_reachable

    started = time.perf_counter()
    reachable = hub_reachable(timeout=2.0)
    if reachable:
        pytest.skip("this machine reaches the hub")
    assert time.perf_counter() - started < 10


# ---------------------------------------------------------------- the DPO dataset's curate block


DPO_RECIPE = """
dataset: {{path: data.jsonl, name: d}}
curate: {{stages: [schema, length, split], length: {{min_chars: {{response: 12}}}}, split: {{val_ratio: 0.0}}}}
train:
  base_model: tunelab-tiny
  dpo:
    dataset: {{path: pairs.jsonl, name: pairs, kind: dpo}}
{curate}
"""


def pairs() -> list[dict[str, str]]:
    return [{"prompt": f"질문 {i}", "chosen": "좋은 답" * (i + 1), "rejected": "나쁜 답"} for i in range(6)]


def test_the_dpo_dataset_has_its_own_curate_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "pairs.jsonl", pairs())
    own = "    curate: {stages: [schema, length], length: {max_chars: {chosen: 8}}}"
    recipe = recipe_at(tmp_path, DPO_RECIPE.format(curate=own))
    sft, dpo = curate_recipe(recipe, tmp_path / "ws", show_progress=False)
    assert (sft.read, sft.kept) == (30, 10)  # the SFT block: the 20 egen answers under 12 characters
    assert (dpo.read, dpo.kept) == (6, 2)  # its own block: chosen over 8 characters dropped
    assert [s["stage"] for s in dpo.report["stages"]] == ["schema", "length"]
    assert "train.dpo.curate" not in capsys.readouterr().err


def test_the_dpo_dataset_inherits_explicitly_or_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "pairs.jsonl", pairs())
    recipe = recipe_at(tmp_path, DPO_RECIPE.format(curate="    curate: inherit"))
    _, dpo = curate_recipe(recipe, tmp_path / "ws", show_progress=False)
    assert [s["stage"] for s in dpo.report["stages"]] == ["schema", "length", "split"]
    assert capsys.readouterr().err == ""
    recipe = recipe_at(tmp_path, DPO_RECIPE.format(curate=""))
    _, unset = curate_recipe(recipe, tmp_path / "ws", show_progress=False)
    assert [s["stage"] for s in unset.report["stages"]] == ["schema", "length", "split"]
    assert capsys.readouterr().err.strip() == (
        "note: r.yaml: train.dpo.curate is not set, so pairs is curated with the top-level curate: block; "
        "write `train.dpo.curate: inherit` to keep that, or give it its own block"
    )


def test_a_mistake_in_the_dpo_block_names_its_key(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "pairs.jsonl", pairs())
    with pytest.raises(UserError) as err:
        recipe_at(tmp_path, DPO_RECIPE.format(curate="    curate: inherits"))
    assert str(err.value) == (
        "r.yaml: train.dpo.curate: must be 'inherit' or a curate block (stages, length, balance, ...)"
    )
    with pytest.raises(UserError) as err:
        recipe_at(tmp_path, DPO_RECIPE.format(curate="    curate: {minhash: {threshold: 2}}"))
    assert str(err.value) == "r.yaml: train.dpo.curate.minhash.threshold: must be between 0 and 1"
    recipe = recipe_at(
        tmp_path, DPO_RECIPE.format(curate="    curate: {stages: [schema, split], split: {stratify: lable}}")
    )
    with pytest.raises(UserError) as err:
        curate_recipe(recipe, tmp_path / "ws", show_progress=False)
    assert str(err.value).startswith("r.yaml: train.dpo.curate.split.stratify: no column 'lable'")


# ---------------------------------------------------------------- the documented recipes run as written


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def write_documented_data(folder: Path) -> None:
    """The files the README's and docs/recipe.md's recipes name, with rows that exercise every stage."""
    rows = persona_rows()
    rows += [dict(rows[0]), {**rows[1], "response": rows[1]["response"] + "!"}]  # an exact and a near copy
    write_jsonl(folder / "data" / "train.jsonl", rows)
    write_jsonl(
        folder / "data" / "eval.jsonl", [{"prompt": rows[2]["prompt"], "response": rows[2]["response"]}]
    )
    write_jsonl(folder / "data" / "pairs.jsonl", pairs())


@pytest.mark.parametrize("page", ["README.md", "docs/recipe.md"])
def test_the_documented_reference_recipe_curates_as_written(tmp_path: Path, page: str) -> None:
    # before: docs/recipe.md's block failed (max_tokens without a tokenizer)
    [block] = [b for b in yaml_blocks(REPO / page) if "curate:" in b]
    write_documented_data(tmp_path)
    (tmp_path / "recipe.yaml").write_text(block, encoding="utf-8")
    recipe = load_recipe(tmp_path / "recipe.yaml")
    sft, dpo = curate_recipe(recipe, tmp_path / "ws", show_progress=False)
    assert sft.read == 32 and sft.kept + sft.dropped == 32 and sft.dropped >= 1  # at least the exact copy
    assert dpo.read == 6 and dpo.kept + dpo.dropped == 6


def test_the_audit_reports_rendered_token_p95_for_the_recipe_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tunelab.modeling.tiny import build_tiny_model
    from tunelab.workspace import Workspace

    rows = persona_rows()
    texts = [r[k] for r in rows for k in ("prompt", "response")]
    tiny = build_tiny_model(Workspace(tmp_path / "ws").model_dir("tunelab-tiny"), texts, vocab_size=400,
                            hidden_size=32, pretrain_steps=0)  # fmt: skip
    write_jsonl(tmp_path / "data.jsonl", rows)
    (tmp_path / "r.yaml").write_text(
        "dataset: {path: data.jsonl, name: d}\n"
        "curate: {stages: [schema, length], length: {tokenizer: tunelab-tiny, min_chars: {response: 12}}}\n"
        f"workspace: {{dir: {tmp_path / 'ws'}}}\n",
        encoding="utf-8",
    )
    args = [
        sys.executable,
        "-m",
        "tunelab.cli",
        "audit",
        str(tmp_path / "data.jsonl"),
        "--recipe",
        str(tmp_path / "r.yaml"),
    ]
    proc = subprocess.run([*args, "--format", "json"], capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    kept = rows[20:]  # the teto rows: egen answers are under 12 characters
    lengths = sorted(
        len(tokenizer.apply_chat_template(
            [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
            return_dict=True,
        )["input_ids"])
        for r in kept
    )  # fmt: skip
    import numpy as np

    assert data["tokens_rendered"] == {
        "tokenizer": "tunelab-tiny",
        "rows": 10,
        "mean": round(float(np.mean(lengths)), 2),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": float(max(lengths)),
    }
    assert data["labels"] == {"read": {"egen": 20, "teto": 10}, "kept": {"teto": 10}}
    table = subprocess.run(args, capture_output=True, text=True, timeout=300, env=ENV)
    assert table.returncode == 0, table.stderr
    assert "Tokens after curation (chat-templated, tunelab-tiny)" in table.stdout
