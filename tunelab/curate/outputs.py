"""The files a curation writes and its warehouse ingest: WORKSPACE/curations/<id>/ and one transaction.

Atomic: the files are written into `curations/.pending-<id>/` (claimed by this process), ingested into the
warehouse in one transaction, then the folder is renamed into place. A run killed before the ingest leaves
only a pending folder, which the next curation (or `tunelab doctor`) removes; killed between the ingest and
the rename, the next one finishes the rename. A folder named `curations/<id>` is always complete and known
to the warehouse.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from tunelab.curate import normalize, pii
from tunelab.curate.common import with_content
from tunelab.curate.config import CurateConfig
from tunelab.curate.report import report_markdown
from tunelab.curate.result import CurationResult
from tunelab.records.config import DatasetConfig
from tunelab.warehouse import store
from tunelab.workspace import PENDING_PREFIX, Workspace, claim, owner_alive, release


def write_outputs(
    result: CurationResult,
    dataset: DatasetConfig,
    curate: CurateConfig,
    loaded: pl.DataFrame,
    workspace: Workspace,
    samples_writer: Callable[[Path], None] | None = None,
) -> None:
    """WORKSPACE/curations/<id>/{train,val}.{parquet,jsonl}, decisions/quarantine parquet, report.{json,md};
    then the warehouse ingest (one transaction).

    `samples_writer(folder)` (the Ray executor) writes the warehouse's samples of the read rows as Parquet
    shards into `folder` instead of this process; the ingest then reads them by their glob."""
    final = result.out_dir
    out = workspace.pending_curation_dir(result.curation_id)
    claim(out)
    assert result.train is not None and result.val is not None and result.quarantine is not None
    for name, frame in (("train", result.train), ("val", result.val)):
        frame.write_parquet(out / f"{name}.parquet")
        frame.write_ndjson(out / f"{name}.jsonl")
    result.decisions.write_parquet(out / "decisions.parquet")
    result.quarantine.write_parquet(out / "quarantine.parquet")
    if result.signals.height:
        result.signals.write_parquet(out / "signals.parquet")
    (out / "report.json").write_text(
        json.dumps(result.report, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    (out / "report.md").write_text(report_markdown(result.report), encoding="utf-8")
    copies = result.train.filter(pl.col("sample_id").str.contains("#dup", literal=True))
    curation = _curation_row(result, dataset, curate, final)
    if samples_writer is not None:  # the samples as shards from the workers, read by DuckDB by their glob
        shards = out / ".samples"
        shards.mkdir()
        samples_writer(shards)
        if copies.height:
            copies.write_parquet(shards / "copies.parquet")
        samples: pl.DataFrame | str = str(shards / "*.parquet")
    else:
        # the warehouse keeps every read row, dropped or not, with the text and hash the outputs carry
        samples = warehouse_samples(loaded, dataset, curate)
        if copies.height:
            samples = pl.concat([samples, copies], how="diagonal_relaxed")
    store.ingest_curation(
        workspace.warehouse, curation, samples, result.decisions, result.quarantine, result.signals
    )
    if samples_writer is not None:
        shutil.rmtree(out / ".samples")
    os.replace(out, final)  # one rename: the folder appears complete, or not at all
    release(final)
    result.train_path, result.val_path = final / "train.parquet", final / "val.parquet"


def warehouse_samples(loaded: pl.DataFrame, dataset: DatasetConfig, curate: CurateConfig) -> pl.DataFrame:
    """The samples rows of `loaded` (any batch of read rows): the text the outputs carry (normalised,
    personal information masked) and its hash."""
    shown = normalize.transform(loaded, curate.normalize) if "normalize" in curate.stages else loaded
    if "pii" in curate.stages:  # personal information never reaches the warehouse, dropped rows included
        shown = pii.masked(shown, dataset.kind, curate.pii)
    return with_content(shown, dataset.kind).drop("content")


def _curation_row(
    result: CurationResult, dataset: DatasetConfig, curate: CurateConfig, final: Path
) -> dict[str, object]:
    return {
        "curation_id": result.curation_id,
        "dataset": dataset.name,
        "dataset_path": str(dataset.path),
        "kind": dataset.kind,
        "data_version": result.data_version,
        "recipe": json.dumps(
            {
                "dataset": dataset.model_dump(mode="json"),
                "curate": curate.model_dump(mode="json", by_alias=True),
            },
            ensure_ascii=False,
        ),
        "created_at": datetime.now(UTC).replace(tzinfo=None),
        "read": result.read,
        "kept": result.kept,
        "dropped": result.dropped,
        "quarantined": result.quarantined,
        "report": json.dumps(result.report, ensure_ascii=False),
        "out_dir": str(final),
    }


def finish_interrupted(workspace: Workspace) -> list[tuple[str, str]]:
    """Pending curation folders whose writer is gone: renamed into place when the warehouse has the
    curation (killed between ingest and rename), else removed. Returns (curation id, note) per folder."""
    notes: list[tuple[str, str]] = []
    if not workspace.curations_dir.is_dir():
        return notes
    for pending in sorted(workspace.curations_dir.glob(f"{PENDING_PREFIX}*")):
        if owner_alive(pending):
            continue
        curation_id = pending.name.removeprefix(PENDING_PREFIX)
        final = workspace.curation_dir(curation_id)
        known = workspace.has_warehouse() and store.get_curation(workspace.warehouse, curation_id) is not None
        if known and not final.exists():
            os.replace(pending, final)
            release(final)
            notes.append((curation_id, "finished the interrupted curation (it was in the warehouse)"))
        else:
            shutil.rmtree(pending, ignore_errors=True)
            notes.append(
                (curation_id, f"removed the unfinished folder {pending.name} (never reached the warehouse)")
            )
    return notes
