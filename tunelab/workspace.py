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
      cache/judge/                        LLM judge replies by hash of judge, template and prompt
      models/<name>/                      models built or unpacked offline (tunelab-tiny)
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    def judge_cache(self) -> Path:
        """LLM judge replies by hash of (judge model, template, prompt, temperature, max_tokens)."""
        return self.root / "cache" / "judge"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / name

    def pending_curation_dir(self, curation_id: str) -> Path:
        """Where a curation is written before it is ingested and renamed into place (never read as done)."""
        return self.curations_dir / f"{PENDING_PREFIX}{curation_id}"

    def ensure_writable(self) -> None:
        """One line before any work when the workspace can't be written (read-only disk, no permission)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise UserError(
                f"{self.root}: cannot write to the workspace ({exc.strerror or exc}); "
                "pick another with -w/--workspace or fix its permissions"
            ) from None
        if self.warehouse.exists() and not os.access(self.warehouse, os.W_OK):
            raise UserError(f"{self.warehouse}: the warehouse is read-only; tunelab needs to write to it")


MANAGED_FOLDERS = ("curations", "runs", "evals", "cache", "models")
PENDING_PREFIX = ".pending-"
OWNER_FILE = ".owner.json"


def claim(folder: Path) -> None:
    """Mark `folder` as being written by this process (so `tunelab doctor` can tell live from abandoned)."""
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    (folder / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")


def release(folder: Path) -> None:
    (folder / OWNER_FILE).unlink(missing_ok=True)


def owner_alive(folder: Path) -> bool | None:
    """True/False when `folder`'s writer is known to be alive/gone; None when nobody claimed it."""
    try:
        owner: dict[str, Any] = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return True  # another machine's process: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
