"""Run the curation stages in recipe order and account for every row read.

Every read row ends with exactly one of: a kept=false decision (the first stage that dropped it), a
terminal decision (stage 'final', kept=true, evidence split=train|val), or a quarantine row. Oversampled
copies ('<id>#dupK') are extra rows, counted apart, never part of `read`.

The loop knows no stage by name: each comes from curate/registry.py with its settings block
(`CurateConfig.settings_for`), and hands the next one its `StageOutput.frame`.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import xxhash

from tunelab.curate import decontaminate, normalize, pii, registry, split
from tunelab.curate.common import StageContext, empty_signals, with_content
from tunelab.curate.config import CurateConfig
from tunelab.curate.executors import ray as ray_executor
from tunelab.curate.executors import streaming as stream_executor
from tunelab.curate.outputs import finish_interrupted, write_outputs
from tunelab.curate.report import build_report
from tunelab.curate.result import CurationResult
from tunelab.errors import UserError
from tunelab.progress import progress
from tunelab.records.config import DatasetConfig
from tunelab.records.fields import CANONICAL_FIELDS, content_text
from tunelab.records.loader import load_dataset_records
from tunelab.workspace import Workspace, as_workspace

if TYPE_CHECKING:
    from tunelab.recipe import Recipe

__all__ = ["CurationResult", "curate_dataset", "curate_frame", "curate_recipe", "run_stages"]

# run_stages' signature: (frame, curate, ctx, show_progress) -> (survivors, decisions, per-stage counts)
StageRunner = Callable[
    [pl.DataFrame, CurateConfig, StageContext, bool],
    tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, Any]]],
]

OUTPUT_META = ("sample_id", "dataset", "source_row", "source_line", "source_id", "label", "content_hash")


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
    # same kind: whole contents (prompts alone are too short); conversations: user turns; else prompts
    return decontaminate.eval_view(loaded, cfg.kind, kind)


def run_stages(
    frame: pl.DataFrame,
    curate: CurateConfig,
    ctx: StageContext,
    show_progress: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, Any]]]:
    """(survivors with a `split` column, all decisions incl. the terminal ones, per-stage counts).
    What the stages measured per row is left in `ctx.signals`."""
    all_decisions: list[pl.DataFrame] = []
    all_signals: list[pl.DataFrame] = [empty_signals()]
    per_stage: dict[str, dict[str, Any]] = {}
    with progress(show_progress) as bar:
        task = bar.add_task("curate", total=len(curate.stages), status="")
        for name in curate.stages:
            bar.update(task, description=f"curate: {name}", status=f"{frame.height:,} rows")
            started, rows_in = time.perf_counter(), frame.height
            out = registry.run_stage(name, frame, curate, ctx)
            all_decisions.append(out.decisions)
            if out.signals is not None:
                all_signals.append(out.signals)
            frame = out.frame
            per_stage[name] = registry.stage_counts(out, rows_in, started)
            bar.advance(task)
    if "split" not in frame.columns:  # no stage assigned train/val: the terminal step puts all in train
        out = split.everything_trains(frame)
        all_decisions.append(out.decisions)
        frame = out.frame
    ctx.signals = pl.concat(all_signals)
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
        # where the stages ran is not the data: local and Ray give one version (and versions made before
        # the executor keys existed stay the same)
        "curate": curate.model_dump(
            mode="json", by_alias=True, exclude={"executor", "ray_address", "stream_batch_rows"}
        ),
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
    runner: StageRunner | None = None,
) -> CurationResult:
    """Curate an already loaded frame in memory (audit, sweeps and tests use this; nothing is written).

    `runner` runs the stages (default `run_stages`, this process); the Ray executor passes its own."""
    ctx = ctx or StageContext()
    ctx.kind, ctx.dataset_name, ctx.show_progress = dataset.kind, dataset.name, show_progress
    if workspace is not None and ctx.cache_dir is None:
        ctx.cache_dir = workspace.embedding_cache
    if workspace is not None and ctx.workspace is None:
        ctx.workspace = workspace  # curate.length.tokenizer: tunelab-tiny is the workspace's model
    if eval_rows is not None:
        ctx.eval_texts, ctx.eval_prompts, ctx.eval_ids = eval_rows
    started = time.perf_counter()
    survivors, all_decisions, per_stage = (runner or run_stages)(loaded_frame, curate, ctx, show_progress)
    kept, dropped, oversampled = _account(read, survivors, all_decisions, quarantine.height)
    if "pii" in curate.stages and quarantine.height:
        quarantine = pii.masked_quarantine(quarantine, curate.pii)
    if "content_hash" not in survivors.columns:
        survivors = with_content(survivors, dataset.kind)
    ctx.stats["labels"] = label_counts(loaded_frame, survivors)
    if curate.length.tokenizer and dataset.kind != "text":
        ctx.stats["tokens_rendered"] = rendered_tokens(survivors, dataset.kind, curate.length.tokenizer, ctx)
    version = data_version(survivors, dataset, curate)
    curation_id = new_curation_id(dataset.name, version, workspace)
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
        signals=ctx.signals,
    )
    result.report = build_report(
        result, dataset, loaded_frame, per_stage, ctx.stats, time.perf_counter() - started
    )
    return result


def label_counts(loaded: pl.DataFrame, kept: pl.DataFrame) -> dict[str, dict[str, int]]:
    """Rows per label read and kept (oversampled copies included): which classes balance and split saw."""

    def counts(frame: pl.DataFrame) -> dict[str, int]:
        if "label" not in frame.columns:
            return {}
        return {
            str(k): int(n) for k, n in frame["label"].drop_nulls().value_counts().sort("label").iter_rows()
        }

    return {"read": counts(loaded), "kept": counts(kept)}


def rendered_tokens(frame: pl.DataFrame, kind: str, tokenizer_name: str, ctx: StageContext) -> dict[str, Any]:
    """Token length of each kept row rendered as training renders it (chat template and all), with the
    recipe's tokenizer: the number to set train.*.max_length from."""
    from tunelab.curate.length import all_texts, load_tokenizer
    from tunelab.modeling import lengths
    from tunelab.modeling.chat import dpo_example, sft_example

    tokenizer = load_tokenizer(tokenizer_name, ctx.workspace, lambda: all_texts(frame, kind))
    rows = frame.to_dicts()
    if kind == "dpo":
        examples = [dpo_example(row, tokenizer) for row in rows]
    else:
        examples = [sft_example(row, kind, tokenizer) for row in rows]
    measured = lengths.measure(examples, tokenizer)
    return {"tokenizer": tokenizer_name, "rows": len(rows), **lengths.token_stats(measured.lengths)}


def new_curation_id(name: str, version: str, workspace: Workspace | None) -> str:
    """`<name>-<UTC time>-<data version>-<random>`: the same data curated twice in one second still gets two
    ids (and a folder that exists already is never reused)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    while True:
        curation_id = f"{name}-{stamp}-{version[:6]}-{secrets.token_hex(2)}"
        if workspace is None or not (
            workspace.curation_dir(curation_id).exists()
            or workspace.pending_curation_dir(curation_id).exists()
        ):
            return curation_id


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
    if write:
        ws.ensure_writable()  # one line now, not a traceback after the whole run
        for curation_id, note in finish_interrupted(ws):
            print(f"note: curation {curation_id}: {note}", file=sys.stderr)
    eval_rows = None
    if "decontaminate" in curate.stages:
        if eval_texts is not None:
            eval_rows = (list(eval_texts), [], [f"eval:{i}" for i in range(len(eval_texts))])
        else:
            eval_rows = eval_content(curate, eval_set, dataset.kind)
    if curate.executor == "stream":  # batches from the source, bounded memory (curate/executors/streaming.py)
        return stream_executor.curate_stream(
            dataset, curate, ws, eval_rows, write, show_progress,
            version=data_version, new_id=new_curation_id, output_meta=OUTPUT_META,
        )  # fmt: skip
    if curate.executor == "ray" and ray_executor.off_driver(curate):  # the rows never on this process
        return ray_executor.curate_blocks(
            dataset, curate, ws, write, show_progress,
            version=data_version, new_id=new_curation_id, output_meta=OUTPUT_META,
        )  # fmt: skip
    runner = samples_writer = None
    if curate.executor == "ray":  # sharded reading and the stages on the cluster (curate/executors/ray.py)
        loaded, runner, samples_writer = ray_executor.prepare(dataset, curate, show_progress)
    else:
        loaded = load_dataset_records(dataset)
    result = curate_frame(
        loaded.frame,
        loaded.quarantine,
        loaded.read,
        dataset,
        curate,
        ws,
        eval_rows,
        show_progress,
        runner=runner,
    )
    result.report["source"] = loaded.source  # how the file was read (format, encoding, notes)
    if write:
        write_outputs(result, dataset, curate, loaded.frame, ws, samples_writer)
    return result


def curate_recipe(
    recipe: Recipe, workspace: Workspace | Path, show_progress: bool = True
) -> list[CurationResult]:
    """Curate recipe.dataset, and recipe.train.dpo.dataset when given (stages that need labels or
    prompts adapt to the kind: balance skips rows without labels)."""
    eval_set = recipe.evaluate.eval_set if recipe.evaluate is not None else None
    dpo = recipe.train.dpo if recipe.train is not None else None
    if dpo is not None and dpo.dataset.name == recipe.dataset.name:
        raise UserError("train.dpo.dataset.name: must differ from dataset.name (sample ids would collide)")
    results = [curate_for(recipe, recipe.dataset, workspace, eval_set, show_progress)]
    if dpo is not None:
        results.append(curate_for(recipe, dpo.dataset, workspace, eval_set, show_progress))
    return results


def curate_for(
    recipe: Recipe,
    dataset: DatasetConfig,
    workspace: Workspace | Path,
    eval_set: DatasetConfig | None,
    show_progress: bool,
) -> CurationResult:
    """Curate one dataset of `recipe` with its own curate settings (the DPO dataset may have its own
    block); a mistake in those settings names its recipe key (`train.dpo.curate.balance.ratios: ...`)."""
    curate, key = recipe.curate_for(dataset)
    note = recipe.dpo_curate_note() if dataset is not recipe.dataset else None
    if note:
        print(note, file=sys.stderr)
    try:
        return curate_dataset(dataset, curate, workspace, eval_set, show_progress=show_progress)
    except UserError as exc:
        message = str(exc)
        if message.startswith("curate."):  # a stage's own check, which cannot know where its block was
            raise UserError(f"{recipe.name}: {key}{message.removeprefix('curate')}") from None
        raise
