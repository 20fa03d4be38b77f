"""Run the curation stages in recipe order and account for every row read.

Every read row ends with exactly one of: a kept=false decision (the first stage that dropped it), a
terminal decision (stage 'final', kept=true, evidence split=train|val), or a quarantine row. Oversampled
copies ('<id>#dupK') are extra rows, counted apart, never part of `read`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import xxhash

from tunelab.curate import balance, decontaminate, exact, length, minhash, normalize, schema, semantic, split
from tunelab.curate.common import DECISION_SCHEMA, StageContext, decisions
from tunelab.curate.config import CurateConfig
from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import CANONICAL_FIELDS, content_text, load_dataset_records
from tunelab.workspace import Workspace, as_workspace

if TYPE_CHECKING:
    from tunelab.recipe import Recipe

STAGES = {
    "schema": schema.run,
    "normalize": normalize.run,
    "length": length.run,
    "exact": exact.run,
    "minhash": minhash.run,
    "semantic": semantic.run,
    "decontaminate": decontaminate.run,
    "balance": balance.run,
    "split": split.run,
}
# stages that only make sense on valid rows: without schema in the recipe, rows with missing fields
# would reach them as nulls, so the pipeline applies the schema checks first anyway
OUTPUT_META = ("sample_id", "dataset", "source_row", "source_line", "label", "content_hash")


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


def with_content(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Add `content` (what dedup compares) and `content_hash` (xxhash64 hex of it)."""
    frame = frame.with_columns(content_text(kind))
    hashes = [xxhash.xxh64_hexdigest(text.encode("utf-8")) for text in frame["content"].to_list()]
    return frame.with_columns(content_hash=pl.Series(hashes, dtype=pl.String))


def eval_content(
    curate: CurateConfig, eval_set: DatasetConfig | None, kind: str
) -> tuple[list[str], list[str], list[str]] | None:
    """(content, prompt, ids) of the evaluation rows decontamination compares against, normalised the same way.

    `curate.decontaminate.eval_path` wins; else the recipe's evaluate.eval_set (paths already resolved
    against the recipe's folder). Same kind as the training set: contents are compared; another kind (a
    DPO set against an SFT eval set): prompts only.
    """
    block = curate.decontaminate
    if block.eval_path:
        cfg = DatasetConfig(path=Path(block.eval_path), name="eval", kind=kind, fields=block.fields)
    elif eval_set is not None:
        cfg = eval_set
    else:
        return None
    loaded = normalize.transform(load_dataset_records(cfg).frame, curate.normalize)
    loaded = loaded.with_columns(content_text(cfg.kind))
    prompt_field = decontaminate.PROMPT_FIELD[cfg.kind]
    prompts = loaded[prompt_field].fill_null("").to_list() if prompt_field in loaded.columns else []
    if cfg.kind == kind:  # same kind: whole content against whole content (prompts alone are too short)
        return loaded["content"].to_list(), [], loaded["sample_id"].to_list()
    return [], prompts, loaded["sample_id"].to_list()


def _dropped_ids(stage_decisions: pl.DataFrame) -> pl.Series:
    return stage_decisions.filter(~pl.col("kept"))["sample_id"].unique()


def run_stages(
    frame: pl.DataFrame,
    curate: CurateConfig,
    ctx: StageContext,
    show_progress: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, Any]]]:
    """(survivors with a `split` column, all decisions incl. final ones, per-stage counts)."""
    from tunelab.progress import progress

    order = list(curate.stages)
    before_normalize = order[: order.index("normalize")] if "normalize" in order else order
    if {"exact", "minhash", "semantic", "decontaminate", "split"} & set(before_normalize):
        frame = with_content(frame, ctx.kind)  # else normalize hashes once (xxhash per row is not free)
    all_decisions: list[pl.DataFrame] = []
    per_stage: dict[str, dict[str, Any]] = {}
    stages = list(curate.stages)
    if "schema" not in stages:
        stages.insert(0, "schema")  # nulls must never reach the text stages
    final: pl.DataFrame | None = None
    with progress(show_progress) as bar:
        task = bar.add_task("curate", total=len(stages), status="")
        for name in stages:
            bar.update(task, description=f"curate: {name}", status=f"{frame.height:,} rows")
            settings = getattr(curate, "schema_" if name == "schema" else name)
            if name == "balance" and frame["label"].null_count() == frame.height:
                per_stage[name] = {"in": frame.height, "dropped": 0, "seconds": 0.0, "skipped": "no labels"}
                bar.advance(task)
                continue
            started = time.perf_counter()
            rows_in = frame.height
            if name == "normalize":  # the one stage that changes text: apply once, then hash the new content
                cleaned, out = normalize.apply(
                    frame.drop("content", "content_hash", strict=False), settings, ctx
                )
                frame = with_content(cleaned, ctx.kind)
            else:
                out = STAGES[name](frame, settings, ctx)
            if name == "split":
                final = out
            else:
                all_decisions.append(out)
                gone = _dropped_ids(out)
                if gone.len():
                    frame = frame.filter(~pl.col("sample_id").is_in(gone.implode()))
            if name == "balance":
                frame = balance.expand(frame, out)
            per_stage[name] = {
                "in": rows_in,
                "dropped": int((~out["kept"]).sum()),
                "seconds": round(time.perf_counter() - started, 3),
            }
            bar.advance(task)
    if final is None:  # no split stage: everything trains
        final = decisions(frame["sample_id"], "final", True, None, evidence="split=train")
    split_of = final.select("sample_id", split=pl.col("evidence").str.strip_prefix("split="))
    frame = frame.join(split_of, on="sample_id", how="left", maintain_order="left")
    all_decisions.append(final)
    return frame, pl.concat(all_decisions), per_stage


def _account(
    read: int, frame: pl.DataFrame, all_decisions: pl.DataFrame, quarantined: int
) -> tuple[int, int, int]:
    source = ~pl.col("sample_id").str.contains("#dup", literal=True)
    dropped = all_decisions.filter(~pl.col("kept") & source)["sample_id"].n_unique()
    kept = frame.filter(source).height
    finals = all_decisions.filter((pl.col("stage") == "final") & source)["sample_id"]
    oversampled = frame.height - kept
    if kept + dropped + quarantined != read or finals.n_unique() != kept or finals.len() != kept:
        raise RuntimeError(
            f"curation accounting broken: kept {kept} + dropped {dropped} + quarantined {quarantined} != read "
            f"{read} (final decisions: {finals.len()}); this is a tunelab bug, please report it"
        )
    return kept, dropped, oversampled


def data_version(survivors: pl.DataFrame, dataset: DatasetConfig, curate: CurateConfig) -> str:
    """Changes when any kept row (id or content) or the curation settings change; not with the folder the
    data lies in."""
    digest = xxhash.xxh64()
    kept = survivors.select("sample_id", pl.col("content_hash").fill_null("")).sort("sample_id")
    for sample_id, content_hash in kept.iter_rows():
        digest.update(f"{sample_id}\t{content_hash}\n".encode())
    settings = {
        "dataset": dataset.model_dump(mode="json", exclude={"path"}),
        "curate": curate.model_dump(mode="json", by_alias=True),
    }
    digest.update(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def curate_frame(
    loaded_frame: pl.DataFrame,
    quarantine: pl.DataFrame,
    read: int,
    dataset: DatasetConfig,
    curate: CurateConfig,
    workspace: Workspace | None = None,
    eval_rows: tuple[list[str], list[str], list[str]] | None = None,
    show_progress: bool = False,
    ctx: StageContext | None = None,
) -> CurationResult:
    """Curate an already loaded frame in memory (audit, sweeps and tests use this; nothing is written)."""
    from tunelab.curate.report import build_report

    ctx = ctx or StageContext()
    ctx.kind, ctx.dataset_name, ctx.show_progress = dataset.kind, dataset.name, show_progress
    if workspace is not None and ctx.cache_dir is None:
        ctx.cache_dir = workspace.embedding_cache
    if eval_rows is not None:
        ctx.eval_texts, ctx.eval_prompts, ctx.eval_ids = eval_rows
    started = time.perf_counter()
    survivors, all_decisions, per_stage = run_stages(loaded_frame, curate, ctx, show_progress)
    kept, dropped, oversampled = _account(read, survivors, all_decisions, quarantine.height)
    if "content_hash" not in survivors.columns:
        survivors = with_content(survivors, dataset.kind)
    version = data_version(survivors, dataset, curate)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    curation_id = f"{dataset.name}-{stamp}-{version[:6]}"
    columns = [c for c in (*OUTPUT_META, *CANONICAL_FIELDS[dataset.kind]) if c in survivors.columns]
    train = survivors.filter(pl.col("split") == "train").select(columns)
    val = survivors.filter(pl.col("split") == "val").select(columns)
    result = CurationResult(
        curation_id=curation_id,
        out_dir=(workspace or Workspace(".")).curation_dir(curation_id),
        read=read,
        kept=kept,
        dropped=dropped,
        quarantined=quarantine.height,
        train_path=None,
        val_path=None,
        report={},
        data_version=version,
        oversampled=oversampled,
        decisions=all_decisions,
        train=train,
        val=val,
        quarantine=quarantine,
    )
    result.report = build_report(result, dataset, loaded_frame, per_stage, ctx, time.perf_counter() - started)
    return result


def curate_dataset(
    dataset: DatasetConfig,
    curate: CurateConfig,
    workspace: Workspace | Path,
    eval_set: DatasetConfig | None = None,
    eval_texts: list[str] | None = None,
    write: bool = True,
    show_progress: bool = True,
) -> CurationResult:
    """Load, curate, and (write=True) write WORKSPACE/curations/<id>/ and ingest into the warehouse.

    Decontamination compares against `eval_texts` when given, else curate.decontaminate.eval_path, else
    `eval_set` (the recipe's evaluate.eval_set)."""
    ws = as_workspace(workspace)
    loaded = load_dataset_records(dataset)
    eval_rows = None
    if "decontaminate" in curate.stages:
        if eval_texts is not None:
            eval_rows = (list(eval_texts), [], [f"eval:{i}" for i in range(len(eval_texts))])
        else:
            eval_rows = eval_content(curate, eval_set, dataset.kind)
    result = curate_frame(
        loaded.frame,
        loaded.quarantine,
        loaded.read,
        dataset,
        curate,
        ws,
        eval_rows,
        show_progress,
    )
    if write:
        from tunelab.curate.report import write_outputs

        write_outputs(result, dataset, curate, loaded.frame, ws)
    return result


def curate_recipe(
    recipe: Recipe, workspace: Workspace | Path, show_progress: bool = True
) -> list[CurationResult]:
    """Curate recipe.dataset, and recipe.train.dpo.dataset when given (stages that need labels or
    prompts adapt to the kind: balance skips rows without labels)."""
    eval_set = recipe.evaluate.eval_set if recipe.evaluate is not None else None
    results = [
        curate_dataset(recipe.dataset, recipe.curate, workspace, eval_set, show_progress=show_progress)
    ]
    dpo = recipe.train.dpo if recipe.train is not None else None
    if dpo is not None:
        if dpo.dataset.name == recipe.dataset.name:
            raise UserError(
                "train.dpo.dataset.name: must differ from dataset.name (sample ids would collide)"
            )
        results.append(
            curate_dataset(dpo.dataset, recipe.curate, workspace, eval_set, show_progress=show_progress)
        )
    return results
