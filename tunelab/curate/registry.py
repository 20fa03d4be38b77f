"""Every curation stage by name: its `run`, its settings model, and what the pipeline prepares for it.

A stage is `run(frame, settings, ctx) -> StageOutput(frame, decisions)` (see curate/common.py); the
pipeline looks a stage up here and never special-cases one. `needs_content`: the stage compares the
`content` / `content_hash` columns, which the pipeline adds when the frame lacks them (normalize drops
them, since it changes the text they were made from).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
from pydantic import BaseModel

from tunelab.curate import (
    balance,
    decontaminate,
    exact,
    language,
    length,
    minhash,
    normalize,
    pairs,
    pii,
    quality,
    schema,
    semantic,
    split,
)
from tunelab.curate.common import StageContext, StageOutput, with_content
from tunelab.curate.config import (
    BalanceSettings,
    CurateConfig,
    DecontaminateSettings,
    ExactSettings,
    LanguageSettings,
    LengthSettings,
    MinhashSettings,
    NormalizeSettings,
    PairsSettings,
    PiiSettings,
    QualitySettings,
    SchemaSettings,
    SemanticSettings,
    SplitSettings,
)

StageRun = Callable[[pl.DataFrame, Any, StageContext], StageOutput]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageRun
    settings: type[BaseModel]
    needs_content: bool = False


STAGES: dict[str, Stage] = {}
# stages whose decision for a row depends on that row alone (and the settings): safe on any batch, so the
# stream and Ray executors run them batch by batch
ROW_LOCAL = ("schema", "normalize", "language", "pii", "quality", "length")


def register(name: str, run: StageRun, settings: type[BaseModel], needs_content: bool = False) -> Stage:
    if name in STAGES:
        raise ValueError(f"stage {name!r} is registered twice")
    STAGES[name] = Stage(name, run, settings, needs_content)
    return STAGES[name]


def run_stage(name: str, frame: pl.DataFrame, curate: CurateConfig, ctx: StageContext) -> StageOutput:
    """Stage `name` on `frame` with its settings block, the content columns added first when it compares
    them (once, until a stage changes the text again). Both executors call this."""
    found = stage(name)
    if found.needs_content and "content_hash" not in frame.columns:
        frame = with_content(frame, ctx.kind)
    return found.run(frame, curate.settings_for(name), ctx)


def stage_counts(out: StageOutput, rows_in: int, started: float) -> dict[str, Any]:
    """The report's numbers of one stage run: rows in, rows dropped, seconds, why it was skipped."""
    counts: dict[str, Any] = {
        "in": rows_in,
        "dropped": int((~out.decisions["kept"]).sum()),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if out.skipped:
        counts["skipped"] = out.skipped
    return counts


def is_row_local(name: str, curate: CurateConfig) -> bool:
    """Whether stage `name` may run on any batch of rows with the same result as on all of them."""
    if name == "length" and curate.length.tokenizer:
        return False  # tunelab-tiny is built from the texts of the whole frame when the workspace has none
    return name in ROW_LOCAL


def segments(curate: CurateConfig) -> list[tuple[bool, list[str]]]:
    """The stages in recipe order, cut into runs: (row_local, names)."""
    out: list[tuple[bool, list[str]]] = []
    for name in curate.stages:
        local = is_row_local(name, curate)
        if out and out[-1][0] == local:
            out[-1][1].append(name)
        else:
            out.append((local, [name]))
    return out


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"no curation stage {name!r} (known: {', '.join(STAGES)})") from None


# in the default order of curate.stages
register("schema", schema.run, SchemaSettings)
register("normalize", normalize.run, NormalizeSettings)
register("pairs", pairs.run, PairsSettings)
register("language", language.run, LanguageSettings)
register("pii", pii.run, PiiSettings)
register("quality", quality.run, QualitySettings)
register("length", length.run, LengthSettings)
register("exact", exact.run, ExactSettings, needs_content=True)
register("minhash", minhash.run, MinhashSettings, needs_content=True)
register("semantic", semantic.run, SemanticSettings, needs_content=True)
register("decontaminate", decontaminate.run, DecontaminateSettings, needs_content=True)
register("balance", balance.run, BalanceSettings)
register("split", split.run, SplitSettings)
