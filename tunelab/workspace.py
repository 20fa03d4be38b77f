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


def as_workspace(value: Workspace | str | Path | None) -> Workspace:
    """A Workspace from a Workspace, a folder, or None (the default ./tunelab-workspace)."""
    if isinstance(value, Workspace):
        return value
    return Workspace(DEFAULT_WORKSPACE if value is None else value)
