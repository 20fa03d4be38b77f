"""One YAML recipe for a whole job: dataset, curate, train, evaluate, workspace.

Errors are `UserError`s phrased `recipe.yaml: curate.minhash.threshold: must be between 0 and 1` so the
CLI can print them on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

    def as_record(self) -> dict[str, Any]:
        """The checked recipe as plain data (run cards, the warehouse): paths resolved, defaults filled."""
        return self.model_dump(mode="json", by_alias=True)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-after"))
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
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
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
    curate = block(data, "curate")
    fix(block(curate, "decontaminate"), "eval_path")
    fix_model(block(curate, "length"), "tokenizer")
    train = block(data, "train")
    fix_model(train, "base_model")
    fix(block(block(train, "dpo"), "dataset"), "path")
    fix(block(block(data, "evaluate"), "eval_set"), "path")


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
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
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
