"""The one object that knows where everything in a workspace lives.

A workspace is a folder: the warehouse (one DuckDB file), one folder per curation, training run and
evaluation, the embedding cache and models built offline. Every component gets a `Workspace` passed in and
asks it for paths; nothing else joins workspace paths, so the layout can be read (and changed) here alone:

    WORKSPACE/
      tunelab.duckdb                      warehouse
      curations/<curation_id>/            train|val.parquet|jsonl, decisions.parquet, quarantine.parquet, report.json|md
      runs/<run_id>/                      adapter/, checkpoints/, merged/, run_card.json
      evals/<eval_id>/predictions.jsonl   re-scorable predictions
      cache/embeddings/                   vectors by content hash
      models/<name>/                      models built or unpacked offline (tunelab-tiny)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import UserError

DEFAULT_WORKSPACE = Path("tunelab-workspace")
WAREHOUSE_FILE = "tunelab.duckdb"


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __init__(self, root: str | Path = DEFAULT_WORKSPACE) -> None:
        object.__setattr__(self, "root", Path(root).expanduser())

    def __str__(self) -> str:
        return str(self.root)

    def __fspath__(self) -> str:
        return str(self.root)

    @property
    def warehouse(self) -> Path:
        return self.root / WAREHOUSE_FILE

    def has_warehouse(self) -> bool:
        return self.warehouse.is_file()

    # curations
    @property
    def curations_dir(self) -> Path:
        return self.root / "curations"

    def curation_dir(self, curation_id: str) -> Path:
        return self.curations_dir / curation_id

    def curation_split(self, curation_id: str, split: str) -> Path:
        """train / val parquet of a curation."""
        return self.curation_dir(curation_id) / f"{split}.parquet"

    # training runs
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    # evaluations
    @property
    def evals_dir(self) -> Path:
        return self.root / "evals"

    def eval_dir(self, eval_id: str) -> Path:
        return self.evals_dir / eval_id

    def predictions_file(self, eval_id: str) -> Path:
        return self.eval_dir(eval_id) / "predictions.jsonl"

    # caches and offline models
    @property
    def embedding_cache(self) -> Path:
        return self.root / "cache" / "embeddings"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / name


MANAGED_FOLDERS = ("curations", "runs", "evals", "cache", "models")


def guard_output(out: Path, warehouse: Path, force: bool, folder: bool = False) -> None:
    """Refuse to write a user's output file where it would clobber what tunelab keeps.

    The warehouse file (and its write-ahead log) and anything inside the workspace's managed folders are
    never written by `--out`; an existing file is replaced only with `force`. `folder=True`: `out` is a
    folder to write into (export), checked for place only.
    """
    target = Path(out).expanduser().resolve()
    db = Path(warehouse).expanduser().resolve()
    if target in (db, db.with_name(db.name + ".wal")):
        raise UserError(f"{out}: that is the warehouse itself; write the result somewhere else")
    for name in MANAGED_FOLDERS:
        managed = db.parent / name
        if target == managed or managed in target.parents:
            raise UserError(
                f"{out}: inside the workspace's {name}/ folder, which tunelab manages; pick another path"
            )
    if folder:
        return  # the files inside are checked by whoever writes them
    if target.is_dir():
        raise UserError(f"{out}: is a folder; give a file name")
    if target.exists() and not force:
        raise UserError(f"{out}: already exists; pass --force to replace it")


def as_workspace(value: Workspace | str | Path | None) -> Workspace:
    """A Workspace from a Workspace, a folder, or None (the default ./tunelab-workspace)."""
    if isinstance(value, Workspace):
        return value
    return Workspace(DEFAULT_WORKSPACE if value is None else value)
