"""The files a curation writes and its warehouse ingest: WORKSPACE/curations/<id>/ and one transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl

from tunelab.curate import normalize
from tunelab.curate.common import with_content
from tunelab.curate.config import CurateConfig, NormalizeSettings
from tunelab.curate.report import report_markdown
from tunelab.curate.result import CurationResult
from tunelab.records.config import DatasetConfig
from tunelab.warehouse import store
from tunelab.workspace import Workspace


def write_outputs(
    result: CurationResult,
    dataset: DatasetConfig,
    curate: CurateConfig,
    loaded: pl.DataFrame,
    workspace: Workspace,
) -> None:
    """WORKSPACE/curations/<id>/{train,val}.{parquet,jsonl}, decisions/quarantine parquet, report.{json,md};
    then the warehouse ingest (one transaction)."""
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    assert result.train is not None and result.val is not None and result.quarantine is not None
    for name, frame in (("train", result.train), ("val", result.val)):
        frame.write_parquet(out / f"{name}.parquet")
        frame.write_ndjson(out / f"{name}.jsonl")
    result.train_path, result.val_path = out / "train.parquet", out / "val.parquet"
    result.decisions.write_parquet(out / "decisions.parquet")
    result.quarantine.write_parquet(out / "quarantine.parquet")
    (out / "report.json").write_text(
        json.dumps(result.report, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    (out / "report.md").write_text(report_markdown(result.report), encoding="utf-8")
    # the warehouse keeps every read row (normalised, with its content hash), dropped or not
    samples = with_content(normalize.transform(loaded, NormalizeSettings()), dataset.kind).drop("content")
    copies = result.train.filter(pl.col("sample_id").str.contains("#dup", literal=True))
    if copies.height:
        samples = pl.concat([samples, copies], how="diagonal_relaxed")
    curation = {
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
        "out_dir": str(out),
    }
    store.ingest_curation(workspace.warehouse, curation, samples, result.decisions, result.quarantine)
