import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.errors import UserError
from tunelab.recipe import load_recipe, parse_recipe

BASE = {"dataset": {"path": "data.jsonl", "name": "d"}}


def recipe_with(**sections):
    return {**BASE, **sections}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            recipe_with(curate={"minhash": {"threshold": 1.5}}),
            "recipe.yaml: curate.minhash.threshold: must be between 0 and 1",
        ),
        (
            recipe_with(curate={"minhash": {"treshold": 0.5}}),
            "recipe.yaml: curate.minhash.treshold: unknown key",
        ),
        (
            recipe_with(curate={"stages": ["schema", "dedupe"]}),
            "recipe.yaml: curate.stages.1: must be one of",
        ),
        ({"dataset": {"path": "x"}}, "recipe.yaml: dataset.name: required key is missing"),
        (recipe_with(bogus=1), "recipe.yaml: bogus: unknown key"),
        (
            {"dataset": {"path": "x", "name": "a:b"}},
            "recipe.yaml: dataset.name: must be non-empty and contain no ':'",
        ),
        (
            recipe_with(train={"base_model": "m", "quantization": "int3"}),
            "recipe.yaml: train.quantization: must be one of",
        ),
        (
            recipe_with(curate={"split": {"val_ratio": 1.0}}),
            "recipe.yaml: curate.split.val_ratio: must be between 0 and 1",
        ),
    ],
)
def test_bad_recipes_get_one_line_errors(data, message):
    with pytest.raises(UserError) as err:
        parse_recipe(data)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_relative_paths_resolve_against_the_recipe_file(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    recipe_file = tmp_path / "sub" / "r.yaml"
    recipe_file.write_text(
        "dataset: {path: data/x.jsonl, name: x}\n"
        "workspace: {dir: ws}\n"
        "evaluate: {eval_set: {path: ev.jsonl, name: ev}}\n"
        "train: {base_model: tunelab-tiny, dpo: {dataset: {path: p.jsonl, name: p, kind: dpo}}}\n",
        encoding="utf-8",
    )
    recipe = load_recipe(recipe_file)
    assert recipe.dataset.path == tmp_path / "sub" / "data" / "x.jsonl"
    assert recipe.workspace.dir == tmp_path / "sub" / "ws"
    assert recipe.evaluate.eval_set.path == tmp_path / "sub" / "ev.jsonl"
    assert recipe.train.dpo.dataset.path == tmp_path / "sub" / "p.jsonl"
    assert recipe.train.base_model == "tunelab-tiny"  # a name, not a path: left alone
    assert not hasattr(recipe, "raw")  # one checked recipe: no unchecked copy for components to re-read


def test_invalid_yaml_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset:\n  path: x\n  name: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: invalid YAML"):
        load_recipe(bad)


def test_cli_reports_recipe_error_in_one_line_with_exit_2(tmp_path: Path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("dataset: {path: x.jsonl, name: x}\ncurate: {minhash: {threshold: 7}}\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "curate", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines == ["error: recipe.yaml: curate.minhash.threshold: must be between 0 and 1"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_recipe_and_examples_parse():
    root = Path(__file__).resolve().parents[1]
    for path in [root / "tunelab" / "demo" / "recipe.yaml", *sorted((root / "examples").glob("*.yaml"))]:
        recipe = load_recipe(path)
        assert recipe.dataset.name
