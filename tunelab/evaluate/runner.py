"""Evaluate models from a recipe, or re-score a predictions file; store everything in the warehouse.

Every evaluation also writes WORKSPACE/evals/<eval_id>/predictions.jsonl with the columns `tunelab score`
needs to reproduce the stored scores exactly: the texts, plus the curation whose train responses
define the persona centroids, the embedding model and the resolved ROUGE tokenizer.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tunelab.errors import UserError
from tunelab.evaluate.compare import (
    TABLE_METRICS,
    Comparison,
    compare_models,
    print_comparison,
    print_samples,
)
from tunelab.evaluate.config import EvaluateConfig, JudgeSettings
from tunelab.evaluate.generate import (
    PREDICTION_COLUMNS,
    eval_rows_from_frame,
    generate_predictions,
    trained_datasets,
)
from tunelab.evaluate.judge import (
    JUDGE_METRIC,
    JudgeCallsFailed,
    JudgeClient,
    JudgeOutcome,
    print_judge,
    run_judge,
)
from tunelab.evaluate.metrics import (
    DEGENERATE_METRIC,
    METRIC_SCHEMA,
    SCORE_SCHEMA,
    bleu_tokenizer_for,
    score_pairs,
)
from tunelab.evaluate.persona import label_hits
from tunelab.evaluate.predictions_file import SCORING_COLUMNS, read_predictions_file
from tunelab.evaluate.tokenizers import resolve_tokenizer_name
from tunelab.progress import progress
from tunelab.records.loader import load_dataset_records
from tunelab.warehouse import store
from tunelab.workspace import Workspace, as_workspace

if TYPE_CHECKING:
    from tunelab.recipe import Recipe

DEFAULT_EMBEDDING_MODEL = "e5-small"
# korean_answer_rate: ~35k answers/s (Hangul ratio first, lingua for the rest), so it is always computed
DEFAULT_METRICS = ("rouge", "bleu", "chrf", "cosine", "label_acc", "korean_answer_rate")
# a file of someone's predictions: persona accuracy needs training labels, so only when asked for
SCORE_DEFAULT_METRICS = ("rouge", "bleu", "chrf", "cosine", "korean_answer_rate")
# added to the defaults for a raft eval set: exact match and token F1 of the `<ANSWER>:` part
RAG_METRICS = ("exact_match", "token_f1")


@dataclass
class EvalResult:
    eval_id: str
    comparison: Comparison  # every model's value with its interval; every delta with interval and p-value
    predictions_path: Path
    predictions: pl.DataFrame
    scores: pl.DataFrame
    metrics: pl.DataFrame
    eval_set: str = ""
    curation_id: str | None = None
    judge: dict[str, Any] | None = None  # the LLM judge's signature, calls, win rates / scores (judge.py)

    def as_record(self) -> dict[str, Any]:
        """What `--format json` prints: ids, the predictions file, every model's value with its interval and
        every delta with its interval and p-value (a value that is not a finite number is null)."""

        def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
            return [
                {key: _json_number(value) for key, value in row.items()}
                for row in frame.iter_rows(named=True)
            ]

        record = {
            "eval_id": self.eval_id,
            "eval_set": self.eval_set,
            "curation_id": self.curation_id,
            "models": list(dict.fromkeys(self.predictions["model"].to_list())),
            "predictions_path": str(self.predictions_path),
            "metrics": rows(self.comparison.estimates),
            "deltas": rows(self.comparison.deltas),
            "degenerate": self.degenerate_counts(),
        }
        if self.judge is not None:
            record["judge"] = self.judge  # signature, calls, win rates or rubric means (judge.py)
        return record

    def degenerate_counts(self) -> dict[str, dict[str, int]]:
        """Per model: how many answers were empty or degenerate (scored 0 on every metric), of how many."""
        flags = self.scores.filter(pl.col("metric") == DEGENERATE_METRIC)
        return {
            model: {"degenerate": int(group["value"].sum()), "n": group.height}
            for (model,), group in flags.group_by("model", maintain_order=True)
        }

    def print_tables(self) -> None:
        """The comparison table and a few side-by-side samples, on stdout."""
        title = f"evaluation {self.eval_id}" + (f" on {self.eval_set}" if self.eval_set else "")
        counts = {m: f"{c['degenerate']}/{c['n']}" for m, c in self.degenerate_counts().items()}
        print_comparison(self.comparison, title=title, degenerate=counts)
        if self.judge:
            print_judge(self.judge)
        print_samples(self.predictions)


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Scoring warnings (a text with no tokens) as `warning: ...` lines, not Python's file:line + source."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def new_eval_id() -> str:
    return f"eval-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def persona_source(workspace: Workspace, curation_id: str | None) -> tuple[list[str], list[str]] | None:
    """Labelled train responses of a curation (the persona centroids), or None when there are none."""
    if curation_id is None:
        return None
    path = workspace.curation_split(curation_id, "train")
    if not path.is_file():
        return None
    frame = pl.read_parquet(path)
    if "messages" in frame.columns and "response" not in frame.columns:
        # a conversation's voice is its assistant turns: the last one stands for the row
        assistant = (
            pl.element().filter(pl.element().struct.field("role") == "assistant").struct.field("content")
        )
        frame = frame.with_columns(pl.col("messages").list.eval(assistant).list.last().alias("response"))
    if "label" not in frame.columns or "response" not in frame.columns:
        return None
    frame = frame.filter(pl.col("label").is_not_null() & pl.col("response").is_not_null())
    if frame["label"].n_unique() < 2:
        return None
    return frame["response"].to_list(), frame["label"].cast(pl.Utf8).to_list()


def label_accuracy_rows(
    predictions: pl.DataFrame,
    source: tuple[list[str], list[str]],
    embedding_model: str,
    cache_dir: Path,
    curation_id: str,
    show_progress: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`label_acc` per labelled sample (1.0/0.0) and its mean per model."""
    labelled = predictions.filter(pl.col("label").is_not_null())
    if labelled.height == 0:
        return pl.DataFrame(schema=SCORE_SCHEMA), pl.DataFrame(schema=METRIC_SCHEMA)
    hits, _ = label_hits(
        source[0],
        source[1],
        labelled["prediction"].fill_null("").to_list(),
        labelled["label"].to_list(),
        embedding_model,
        cache_dir,
        show_progress,
    )
    signature = f"nearest-centroid|emb:{embedding_model}|train:{curation_id}"
    scores = labelled.select("model", "sample_id").with_columns(
        pl.lit("label_acc").alias("metric"),
        pl.Series("value", hits, pl.Float64),
        pl.lit(signature).alias("signature"),
    )
    metrics = scores.group_by("model", maintain_order=True).agg(
        pl.lit("label_acc").alias("metric"), pl.col("value").mean(), pl.lit(signature).alias("signature")
    )
    return scores.select(SCORE_SCHEMA.keys()), metrics.select(METRIC_SCHEMA.keys())


def score_predictions(
    predictions: pl.DataFrame,
    workspace: Workspace,
    metrics: tuple[str, ...] | list[str],
    rouge_tokenizer_name: str,
    embedding_model: str,
    curation_id: str | None,
    show_progress: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-sample scores and corpus metrics for a predictions frame (all models at once)."""
    cache_dir = workspace.embedding_cache
    scores, corpus = score_pairs(
        predictions, metrics, rouge_tokenizer_name, embedding_model, cache_dir, show_progress
    )
    source = persona_source(workspace, curation_id) if "label_acc" in metrics else None
    if source is not None:
        asked = set(predictions["label"].drop_nulls().unique().to_list())
        known = set(source[1])
        if asked and not asked & known:
            raise UserError(
                f"label_acc: the predictions' labels ({', '.join(sorted(asked)[:5])}) occur nowhere among the "
                f"training labels of curation {curation_id} ({', '.join(sorted(known)[:5])}); persona accuracy "
                "would be 0 for every model — leave label_acc out of the metrics"
            )
    if source is None and "label_acc" in metrics and predictions["label"].drop_nulls().len() > 0:
        warnings.warn(
            f"label_acc skipped: rows carry labels but curation {curation_id or '(none found)'} has no train "
            "responses with at least two labels to build persona centroids from",
            stacklevel=2,
        )
    if source is not None and curation_id is not None:
        label_scores, label_metrics = label_accuracy_rows(
            predictions, source, embedding_model, cache_dir, curation_id, show_progress
        )
        scores, corpus = pl.concat([scores, label_scores]), pl.concat([corpus, label_metrics])
    return scores, corpus


def store_eval(
    workspace: Workspace,
    eval_row: dict[str, Any],
    predictions: pl.DataFrame,
    scores: pl.DataFrame,
    metrics: pl.DataFrame,
    scoring: dict[str, Any],
    deltas: pl.DataFrame | None = None,
    judgments: pl.DataFrame | None = None,
) -> Path:
    """Warehouse rows in one transaction, then the re-scorable predictions file."""
    eval_id = eval_row["eval_id"]
    with_id = pl.lit(eval_id).alias("eval_id")
    store.ingest_eval(
        workspace.warehouse,
        eval_row,
        predictions.select(PREDICTION_COLUMNS.keys()).with_columns(with_id),
        scores.with_columns(with_id),
        metrics.with_columns(with_id),
        deltas=None if deltas is None else deltas.with_columns(with_id),
        judgments=judgments,
    )
    path = workspace.predictions_file(eval_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    predictions.select(PREDICTION_COLUMNS.keys()).with_columns(
        with_id, *(pl.lit(scoring[name], dtype).alias(name) for name, dtype in SCORING_COLUMNS.items())
    ).write_ndjson(path)
    return path


def _finish(
    workspace: Workspace,
    eval_set: str,
    curation_id: str | None,
    predictions: pl.DataFrame,
    metrics_wanted: list[str],
    rouge_tokenizer_name: str,
    embedding_model: str,
    extra_params: dict[str, Any],
    show_progress: bool = False,
    judge: JudgeSettings | None = None,
    keep_without_judge: bool = False,
) -> EvalResult:
    """Score, judge (when `judge` is given and asked for), compare and store. With `keep_without_judge`
    (a fresh generation, costly to redo), judge calls that failed after their retries leave the evaluation
    stored without the judge, then raise; otherwise nothing is stored."""
    judge_outcome: JudgeOutcome | None = None
    judge_failure: JudgeCallsFailed | None = None
    if "judge" in metrics_wanted and judge is not None:
        try:
            judge_outcome = run_judge(predictions, judge, workspace, show_progress)
        except JudgeCallsFailed as exc:
            if not keep_without_judge:
                raise
            judge_failure = exc
    lexical = [m for m in metrics_wanted if m != "judge"]
    resolved = resolve_tokenizer_name(
        rouge_tokenizer_name,
        [*predictions["reference"].fill_null(""), *predictions["prediction"].fill_null("")],
    )
    scores, metrics = score_predictions(
        predictions, workspace, lexical, resolved, embedding_model, curation_id, show_progress
    )
    if judge_outcome is not None:
        scores = pl.concat([scores, judge_outcome.scores])
        metrics = pl.concat([metrics, judge_outcome.metrics])
        extra_params = {**extra_params, "judge": judge_outcome.summary["signature"]}
    eval_id = new_eval_id()
    scoring = {
        "curation_id": curation_id,
        "embedding_model": embedding_model,
        "rouge_tokenizer": resolved,
        "metrics": ",".join(metrics_wanted),
        "eval_set": eval_set,
    }
    eval_row = {
        "eval_id": eval_id,
        "eval_set": eval_set,
        "curation_id": curation_id,
        "created_at": datetime.now(UTC).isoformat(),
        "params": json.dumps({**scoring, "metrics": list(metrics_wanted), **extra_params}, sort_keys=True),
    }
    texts = [*predictions["reference"].fill_null(""), *predictions["prediction"].fill_null("")]
    comparison = compare_models(
        predictions, scores, (*TABLE_METRICS, JUDGE_METRIC), bleu_tokenize=bleu_tokenizer_for(texts)
    )
    if judge_outcome is not None and judge_outcome.deltas.height:
        # pairwise win rates are comparisons of their own: rows of eval_deltas beside the metric deltas
        comparison.deltas = pl.concat([comparison.deltas, judge_outcome.deltas])
    intervals = comparison.estimates.select("model", "metric", "ci_low", "ci_high", "n", "method", "seed")
    metrics = metrics.join(intervals, on=["model", "metric"], how="left")
    path = store_eval(
        workspace, eval_row, predictions, scores, metrics, scoring, comparison.deltas,
        judgments=None if judge_outcome is None else judge_outcome.judgments,
    )  # fmt: skip
    if judge_failure is not None:
        raise UserError(
            f"{judge_failure}; evaluation {eval_id} is stored without the judge: "
            f"`tunelab score {path} --judge --recipe RECIPE` judges it again"
        )
    return EvalResult(
        eval_id, comparison, path, predictions, scores, metrics, eval_set, curation_id,
        judge=None if judge_outcome is None else judge_outcome.summary,
    )  # fmt: skip


def load_eval_rows(recipe: Recipe, workspace: Workspace) -> tuple[pl.DataFrame, str, str, str | None]:
    """(eval rows, kind, eval set name, curation id of recipe.dataset used for persona centroids)."""
    db = workspace.warehouse
    curation_id = store.latest_curation(db, recipe.dataset.name) if db.is_file() else None
    eval_set = recipe.evaluate.eval_set if recipe.evaluate is not None else None
    if eval_set is not None:
        frame = load_dataset_records(eval_set).frame
        return (
            eval_rows_from_frame(frame, eval_set.kind, str(eval_set.path)),
            eval_set.kind,
            eval_set.name,
            curation_id,
        )
    if curation_id is None:
        raise UserError(
            f"evaluate.eval_set: not given and dataset '{recipe.dataset.name}' was never curated; "
            "run `tunelab curate` first or set evaluate.eval_set"
        )
    val = workspace.curation_split(curation_id, "val")
    if not val.is_file():
        raise UserError(f"evaluate.eval_set: curation {curation_id} has no val split at {val}")
    frame = pl.read_parquet(val)
    name = f"{recipe.dataset.name}:val"
    return eval_rows_from_frame(frame, recipe.dataset.kind, str(val)), recipe.dataset.kind, name, curation_id


def available_models(recipe: Recipe, workspace: Workspace, refs: list[str], explicit: bool) -> list[str]:
    """Check "sft"/"dpo" before any model is loaded: a missing run fails fast when the user asked for it,
    and is skipped with a note when it only came from the default list (e.g. no DPO trained yet)."""
    db = workspace.warehouse
    kept = []
    for ref in refs:
        if ref in ("sft", "dpo"):
            dataset = trained_datasets(recipe)[ref]
            if not (db.is_file() and store.latest_finished_run(db, ref, dataset)):
                if explicit:
                    raise UserError(
                        f"evaluate.models: no finished {ref} run for dataset '{dataset}' in {db}; "
                        f"run `tunelab train {ref}` first"
                    )
                print(
                    f"note: skipping {ref}: no finished {ref} run for dataset '{dataset}' yet",
                    file=sys.stderr,
                )
                continue
        kept.append(ref)
    if not kept:
        raise UserError("evaluate.models: nothing to evaluate")
    return kept


def run_evaluate(
    recipe: Recipe,
    workspace: Workspace | Path,
    models: list[str] | None = None,
    show_progress: bool = True,
    print_tables: bool | None = None,
) -> EvalResult:
    """Generate with every model (recipe.evaluate.models unless `models`), score, store, compare.

    With `show_progress`, generation (rows) and embedding show progress on stderr, and scoring warnings are
    one line each. `print_tables` (default: `show_progress`) prints the comparison table and a few
    side-by-side samples on stdout at the end (the demo relies on that; the CLI prints by --format).
    """
    if recipe.evaluate is None:
        recipe = recipe.model_copy(update={"evaluate": EvaluateConfig()})
    cfg = recipe.evaluate
    model_refs = list(models or cfg.models)
    if not model_refs:
        raise UserError("evaluate.models: empty; name at least one of base, sft, dpo, a run id or a path")
    workspace = as_workspace(workspace)
    workspace.ensure_writable()
    explicit = models is not None or "models" in cfg.model_fields_set
    model_refs = available_models(recipe, workspace, model_refs, explicit)
    rows, kind, eval_set, curation_id = load_eval_rows(recipe, workspace)
    judging = cfg.judge is not None and ("judge" in cfg.metrics or "metrics" not in cfg.model_fields_set)
    if judging and cfg.judge is not None:
        check_judge(cfg.judge)  # an unreachable judge fails now, not after an hour of generation
    elif cfg.judge is not None:
        print(
            "note: evaluate.judge is set but evaluate.metrics leaves out judge: no judging", file=sys.stderr
        )
    frames = []
    with progress(None if show_progress else False) as bar:
        task = bar.add_task("generating rows", total=len(model_refs) * rows.height, status="")
        for ref in model_refs:
            bar.update(task, status=ref)
            frames.append(
                generate_predictions(ref, rows, kind, recipe, workspace, lambda n: bar.advance(task, n))
            )
            gc.collect()  # one model in memory at a time
    predictions = pl.concat(frames)
    metrics_wanted = list(cfg.metrics)
    if kind == "raft" and "metrics" not in cfg.model_fields_set:
        metrics_wanted += [
            m for m in RAG_METRICS if m not in metrics_wanted
        ]  # what RAG answers are judged by
    if judging and "judge" not in metrics_wanted:
        metrics_wanted.append("judge")  # a judge block with the default metrics: the judge is wanted too
    with one_line_warnings() if show_progress else nullcontext():
        result = _finish(
            workspace,
            eval_set,
            curation_id,
            predictions,
            metrics_wanted,
            cfg.rouge_tokenizer,
            cfg.embedding_model,
            {"models": model_refs, "generation": cfg.generation.model_dump()},
            show_progress,
            judge=cfg.judge,
            keep_without_judge=True,
        )
    if show_progress if print_tables is None else print_tables:
        result.print_tables()
    return result


def check_judge(settings: JudgeSettings) -> None:
    """One line (UserError) now when the judge's endpoint is unreachable or refuses the key."""
    client = JudgeClient(settings)
    try:
        client.preflight()
    finally:
        client.close()


def _one_value(frame: pl.DataFrame, column: str) -> str | None:
    values = frame[column].drop_nulls().unique().to_list()
    return values[0] if len(values) == 1 else None


def score_file(
    path: Path,
    workspace: Workspace | Path,
    eval_set: str | None = None,
    rouge_tokenizer: str | None = None,
    embedding_model: str | None = None,
    show_progress: bool = False,
    metrics: list[str] | None = None,
    judge: JudgeSettings | None = None,
) -> EvalResult:
    """Re-score an existing predictions JSONL (no generation) and store it as a new evaluation.

    With `judge`, the LLM judge judges it too (only calls not in the workspace's judge cache are asked);
    without one, a `judge` among the file's recorded metrics is left out with a note.

    Tokenizer, embedding model, metrics and eval set name default to the ones recorded in the file by
    `tunelab evaluate` (so its scores are reproduced exactly), else `auto`, e5-small, the lexical and cosine
    metrics (persona accuracy only when asked for) and the file's stem. Persona centroids come from the
    file's curation_id, else the newest curation of the dataset named by the sample ids' prefix.
    """
    path, workspace = Path(path), as_workspace(workspace)
    workspace.ensure_writable()
    frame = read_predictions_file(path)
    rouge_name = rouge_tokenizer or _one_value(frame, "rouge_tokenizer") or "auto"
    embedder = embedding_model or _one_value(frame, "embedding_model") or DEFAULT_EMBEDDING_MODEL
    curation_id = _one_value(frame, "curation_id")
    db = workspace.warehouse
    if curation_id is None and db.is_file():
        prefixes = {sid.split(":", 1)[0] for sid in frame["sample_id"]}
        if len(prefixes) == 1:
            curation_id = store.latest_curation(db, prefixes.pop())
    recorded = _one_value(frame, "metrics")
    wanted = metrics or (recorded.split(",") if recorded else list(SCORE_DEFAULT_METRICS))
    if judge is not None and "judge" not in wanted:
        wanted = [*wanted, "judge"]
    if judge is None and "judge" in wanted:
        if metrics and "judge" in metrics:
            raise UserError(
                "--metric judge: needs a judge: --recipe with an evaluate.judge block, or --judge-endpoint "
                "and --judge-model"
            )
        print("note: the file was judged before; pass --judge to judge it again", file=sys.stderr)
        wanted = [m for m in wanted if m != "judge"]
    return _finish(
        workspace,
        eval_set or _one_value(frame, "eval_set") or path.stem,
        curation_id,
        frame.select(PREDICTION_COLUMNS.keys()),
        wanted,
        rouge_name,
        embedder,
        {"source_file": str(path.resolve())},
        show_progress,
        judge=judge,
    )
