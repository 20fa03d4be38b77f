"""One YAML recipe for a whole job: dataset, curate, train, evaluate, workspace.

Errors are `UserError`s phrased `recipe.yaml: curate.minhash.threshold: must be between 0 and 1` so the
CLI can print them on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunelab.curate.config import CurateConfig
from tunelab.errors import UserError
from tunelab.evaluate.config import EvaluateConfig
from tunelab.records.config import DatasetConfig
from tunelab.train.config import TrainConfig
from tunelab.workspace import DEFAULT_WORKSPACE, Workspace


class WorkspaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: Path = DEFAULT_WORKSPACE


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig | None = None
    evaluate: EvaluateConfig | None = None
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig)
    # filled by load_recipe, not by the YAML
    source_path: Path | None = Field(None, exclude=True)

    @property
    def name(self) -> str:
        """The recipe's file name, for messages (`recipe.yaml: train: ...`)."""
        return self.source_path.name if self.source_path else "recipe.yaml"

    def workspace_at(self, override: str | Path | Workspace | None = None) -> Workspace:
        """The workspace: --workspace when given, else the recipe's workspace.dir."""
        return workspace_for(self, override)

    def curate_for(self, dataset: DatasetConfig) -> tuple[CurateConfig, str]:
        """The curate settings of `dataset` and the recipe key they come from (for messages).

        The DPO dataset has `train.dpo.curate` when given; `inherit` or nothing takes the top-level block
        (nothing also prints a note, see `dpo_curate_note`)."""
        dpo = self.train.dpo if self.train is not None else None
        if dpo is not None and dataset is dpo.dataset and isinstance(dpo.curate, CurateConfig):
            return dpo.curate, "train.dpo.curate"
        return self.curate, "curate"

    def dpo_curate_note(self) -> str | None:
        """The note printed when the DPO dataset inherits the top-level curate block without being told to."""
        dpo = self.train.dpo if self.train is not None else None
        if dpo is None or dpo.curate is not None:
            return None
        return (
            f"note: {self.name}: train.dpo.curate is not set, so {dpo.dataset.name} is curated with the "
            "top-level curate: block; write `train.dpo.curate: inherit` to keep that, or give it its own block"
        )

    def as_record(self) -> dict[str, Any]:
        """The checked recipe as plain data (run cards, the warehouse): paths resolved, defaults filled."""
        return self.model_dump(mode="json", by_alias=True)


def _union_tag(part: Any) -> bool:
    """A loc part pydantic adds for a member of a union (`CurateConfig`, `literal['inherit']`, `int`)."""
    text = str(part)
    return text.startswith(("function-after", "function-before", "literal[")) or text in UNION_MEMBERS


# the types that appear as members of a union in the recipe models (their names show up in error locs)
UNION_MEMBERS = {"CurateConfig", "int", "dict[str,int]", "str", "float", "list[str]"}


def _first_error(errors: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The error to show, and how many distinct keys are wrong. A value failing a union fails each member:
    a bad `train.dpo.curate` block is also "not 'inherit'"; that literal error is explained by the
    block's own error at or below the same key, so it is neither shown nor counted."""
    located = [(".".join(str(p) for p in error["loc"] if not _union_tag(p)), error) for error in errors]

    def explained(where: str, error: dict[str, Any]) -> bool:
        return error["type"] == "literal_error" and any(
            other is not error and (key == where or key.startswith(where + ".")) for key, other in located
        )

    kept = [(where, error) for where, error in located if not explained(where, error)] or located
    return kept[0][1], len(dict.fromkeys(where for where, _ in kept))


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"] if not _union_tag(part))
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bounds = _bounds_for(where)
        if bounds:
            return f"{where}: must be between {bounds[0]:g} and {bounds[1]:g}"
    if kind == "literal_error":
        return f"{where}: must be one of {ctx.get('expected', '')}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message[0].lower()}{message[1:]}" if message else where


def _bounds_for(where: str) -> tuple[Any, Any] | None:
    """Both bounds of a numeric field, so a message names the whole range, not just the side crossed."""
    model: Any = Recipe
    field = None
    for part in where.split("."):
        fields = getattr(model, "model_fields", {})
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return None
        # a union (`CurateConfig | "inherit" | None`) leads into its model member
        members = get_args(field.annotation) or (field.annotation,)
        model = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
    if field is None:
        return None
    low = high = None
    for meta in field.metadata:
        low = getattr(meta, "ge", None) if getattr(meta, "ge", None) is not None else low
        low = getattr(meta, "gt", None) if getattr(meta, "gt", None) is not None else low
        high = getattr(meta, "le", None) if getattr(meta, "le", None) is not None else high
        high = getattr(meta, "lt", None) if getattr(meta, "lt", None) is not None else high
    return (low, high) if low is not None and high is not None else None


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Every relative path of a recipe resolves against the recipe's folder, here and nowhere else.

    Files (datasets, eval sets, the workspace) always do. A model or tokenizer name may be a hub name or a
    folder: it is taken as a folder when it starts with `.`, `/` or `~`, or when that folder exists beside
    the recipe."""

    def fix(block: Any, key: str) -> None:
        if isinstance(block, dict) and isinstance(block.get(key), str):
            path = Path(block[key]).expanduser()
            block[key] = str(path if path.is_absolute() else (base / path))

    def fix_model(block: Any, key: str) -> None:
        name = block.get(key) if isinstance(block, dict) else None
        if isinstance(name, str) and (name.startswith((".", "/", "~")) or (base / name).is_dir()):
            fix(block, key)

    def block(parent: Any, key: str) -> Any:
        value = parent.get(key) if isinstance(parent, dict) else None
        return value if isinstance(value, dict) else None

    fix(block(data, "dataset"), "path")
    fix(block(data, "workspace"), "dir")
    train = block(data, "train")
    for curate in (block(data, "curate"), block(block(train, "dpo"), "curate")):
        fix(block(curate, "decontaminate"), "eval_path")
        fix_model(block(curate, "length"), "tokenizer")
    fix_model(train, "base_model")
    for trainer in (block(train, "sft"), block(train, "dpo")):  # DeepSpeed / FSDP config files
        for key in ("deepspeed", "fsdp_config"):
            fix(trainer, key)
    fix(block(block(train, "dpo"), "dataset"), "path")
    fix(block(block(data, "evaluate"), "eval_set"), "path")
    # the judge's template: a shipped name (rubric.ko) stays a name; a file is found beside the recipe
    judge = block(block(data, "evaluate"), "judge")
    rubric = judge.get("rubric") if judge else None
    if isinstance(rubric, str) and ("/" in rubric or rubric.endswith(".txt") or (base / rubric).is_file()):
        fix(judge, "rubric")


def parse_recipe(data: Any, source: str = "recipe.yaml", base_dir: Path | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise UserError(
            f"{source}: the recipe must be a mapping with keys dataset, curate, train, evaluate, workspace"
        )
    data = yaml.safe_load(yaml.safe_dump(data))  # a deep copy: the caller's dict is never changed
    if base_dir is not None:
        _resolve_paths(data, base_dir)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        first, count = _first_error(exc.errors())
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise UserError(f"{source}: {_describe(first)}{more}") from None
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{line}: invalid YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    recipe = parse_recipe(data, source=path.name, base_dir=path.resolve().parent)
    recipe.source_path = path.resolve()
    return recipe


def workspace_for(recipe: Recipe | None, override: str | Path | Workspace | None = None) -> Workspace:
    """--workspace when given, else the recipe's workspace.dir, else ./tunelab-workspace."""
    if isinstance(override, Workspace):
        return override
    if override is not None:
        return Workspace(override)
    return Workspace(recipe.workspace.dir if recipe is not None else DEFAULT_WORKSPACE)
