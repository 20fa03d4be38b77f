"""What one curation produced, in memory: counts, the splits, every decision, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tunelab.curate.common import DECISION_SCHEMA, SIGNAL_SCHEMA


@dataclass
class CurationResult:
    curation_id: str
    out_dir: Path
    read: int
    kept: int
    dropped: int
    quarantined: int
    train_path: Path | None
    val_path: Path | None
    report: dict[str, Any]
    data_version: str = ""
    oversampled: int = 0
    decisions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DECISION_SCHEMA), repr=False)
    train: pl.DataFrame | None = field(default=None, repr=False)
    val: pl.DataFrame | None = field(default=None, repr=False)
    quarantine: pl.DataFrame | None = field(default=None, repr=False)
    signals: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SIGNAL_SCHEMA), repr=False)
