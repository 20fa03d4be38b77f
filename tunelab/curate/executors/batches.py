"""What the stream and Ray executors share when they curate batch by batch (neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from tunelab.records.fields import CANONICAL_FIELDS, field_text

# a hidden column: each row's position in the frame the local loop would see (ray.py's docstring says why)
ORDER = "_order"

# DuckDB's memory for the one ingest transaction: past it DuckDB writes to disk instead of holding every
# inserted row (its default holds the samples, ~650 B a read row measured at 1M rows: the largest per-row
# cost of this executor before the limit)
INGEST_MEMORY = "1GB"


def merge_stats(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Per-batch ctx.stats into one: counts add up; `max` takes the max; other values (settings echoed,
    field lists, per-batch means and percentiles) keep the first batch's."""
    for key, value in part.items():
        if key not in into:
            into[key] = value
        elif isinstance(value, dict) and isinstance(into[key], dict):
            merge_stats(into[key], value)
        elif key == "max" and isinstance(value, int | float):
            into[key] = max(into[key], value)
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(into[key], int):
            into[key] += value


@dataclass
class Lengths:
    """Per-field character lengths, batch by batch: report._length_stats without holding the rows."""

    kind: str
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, frame: pl.DataFrame) -> None:
        for name in CANONICAL_FIELDS[self.kind]:
            if name in frame.columns:
                chars = frame.select(field_text(name).str.len_chars())[name].drop_nulls().to_numpy()
                self.parts.setdefault(name, []).append(chars)

    def stats(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, parts in self.parts.items():
            chars = np.concatenate(parts)
            if chars.size:
                out[name] = {
                    "mean": round(float(chars.mean()), 2),
                    "p50": float(np.percentile(chars, 50)),
                    "p95": float(np.percentile(chars, 95)),
                    "max": float(chars.max()),
                }
        return out
