"""Threshold calibration from labelled pairs: precision / recall / F1 per threshold, and the threshold that
meets a precision target.

Pairs are (`text_a`, `text_b`) with a `label` (1 = duplicate, 0 = not) or a 0-5 `score` (a pair is a
duplicate when score >= `positive_score`). A pair's similarity is what the stage would compute for it:
`minhash` = exact Jaccard of the character n-grams of the two dedup keys (what the stage verifies with);
`semantic` = cosine of the two embeddings (cached like the stage's). A pair is *predicted* a duplicate at
threshold t when its similarity >= t.

The chosen threshold is the lowest one on a 0.01 grid whose precision meets the target there and at every
higher grid threshold that predicts any pair: the most recall for the target, without taking a lucky dip
in a noisy precision curve. `tunelab calibrate` prints it with the recipe line to paste.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from tunelab.curate.config import MinhashSettings, SemanticSettings
from tunelab.curate.dedup_key import dedup_keys
from tunelab.errors import UserError
from tunelab.textnorm import shingle_hashes

Stage = Literal["minhash", "semantic"]
FINE_STEP = 0.01


@dataclass(frozen=True)
class Pairs:
    text_a: list[str]
    text_b: list[str]
    positive: np.ndarray  # bool per pair

    def __len__(self) -> int:
        return len(self.text_a)


@dataclass(frozen=True)
class ThresholdRow:
    threshold: float
    precision: float | None  # None when no pair is predicted a duplicate
    recall: float
    f1: float
    predicted: int
    true_positives: int


@dataclass
class Calibration:
    stage: str
    model: str | None
    target_precision: float
    pairs: int
    positives: int
    rows: list[ThresholdRow] = field(default_factory=list)  # the table (coarse grid + the chosen one)
    chosen: ThresholdRow | None = None

    def recipe_line(self) -> str | None:
        if self.chosen is None:
            return None
        t = f"{self.chosen.threshold:g}"
        if self.stage == "semantic":
            return f"curate:\n  semantic: {{model: {self.model}, threshold: {t}}}"
        return f"curate:\n  minhash: {{threshold: {t}}}"

    def as_dict(self) -> dict[str, Any]:
        chosen = self.chosen
        return {
            "threshold": chosen.threshold if chosen else None,
            "precision": chosen.precision if chosen else None,
            "recall": chosen.recall if chosen else None,
            "f1": chosen.f1 if chosen else None,
            "stage": self.stage,
            "model": self.model,
            "target_precision": self.target_precision,
            "pairs": self.pairs,
            "positives": self.positives,
            "recipe": self.recipe_line(),
            "rows": [asdict(row) for row in self.rows],
        }


def read_pairs(path: Path, positive_score: float = 4.0) -> Pairs:
    """text_a, text_b and label (0/1) or score (positive when >= positive_score) from csv/tsv/jsonl/json."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            frame = pl.read_ndjson(path, infer_schema_length=None)
        elif suffix == ".json":
            frame = pl.DataFrame(json.loads(path.read_text(encoding="utf-8")))
        elif suffix in (".csv", ".tsv"):
            # TSV has no quoting: KorSTS sentences open with a quoted word ("일반화된 행성"에 ...), which
            # a quote character would swallow up to the next quote, and the file failed to read
            tsv = suffix == ".tsv"
            frame = pl.read_csv(
                path, separator="\t" if tsv else ",", infer_schema=False, quote_char=None if tsv else '"'
            )
        else:
            raise UserError(f"{path}: expected a .csv, .tsv, .jsonl or .json file of pairs")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is about the user's file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot read it ({first})") from None
    columns = set(frame.columns)
    missing = [c for c in ("text_a", "text_b") if c not in columns]
    if missing:
        raise UserError(
            f"{path}: missing column {', '.join(missing)} (need text_a, text_b and label or score)"
        )
    if "label" in columns:
        raw = frame["label"].cast(pl.String).str.strip_chars()
        bad = raw.filter(~raw.is_in(["0", "1", "true", "false", "True", "False"]) | raw.is_null())
        if bad.len():
            raise UserError(f"{path}: label must be 0 or 1 (found {bad[0]!r})")
        positive = raw.is_in(["1", "true", "True"]).to_numpy()
    elif "score" in columns:
        scores = frame["score"].cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        if scores.null_count():
            raise UserError(f"{path}: score must be a number (0-5) on every row")
        positive = (scores >= positive_score).to_numpy()
    else:
        raise UserError(f"{path}: need a label column (0/1) or a score column (0-5, with --positive-score)")
    if frame.height == 0:
        raise UserError(f"{path}: no pairs")
    a = frame["text_a"].cast(pl.String).fill_null("").to_list()
    b = frame["text_b"].cast(pl.String).fill_null("").to_list()
    return Pairs(a, b, np.asarray(positive, dtype=bool))


def jaccard_pairs(text_a: Sequence[str], text_b: Sequence[str], cfg: MinhashSettings) -> np.ndarray:
    """Exact Jaccard of each pair's character n-gram sets, on the dedup key: the stage's verification."""
    keys = dedup_keys(list(text_a) + list(text_b), cfg.key)
    hashes, counts = shingle_hashes(keys, cfg.ngram, cfg.seed)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    n = len(text_a)
    out = np.empty(n)
    for i in range(n):
        x = np.unique(hashes[offsets[i] : offsets[i + 1]])
        y = np.unique(hashes[offsets[n + i] : offsets[n + i + 1]])
        inter = np.intersect1d(x, y, assume_unique=True).size
        out[i] = inter / (x.size + y.size - inter)
    return out


def cosine_pairs(
    text_a: Sequence[str], text_b: Sequence[str], cfg: SemanticSettings, cache_dir: Path | None
) -> np.ndarray:
    """Cosine of each pair's embeddings, embedded as the semantic stage embeds rows (cached)."""
    from tunelab.curate import semantic
    from tunelab.curate.common import StageContext

    vectors = semantic.embed(list(text_a) + list(text_b), cfg, StageContext(cache_dir=cache_dir))
    n = len(text_a)
    return (vectors[:n] * vectors[n:]).sum(axis=1).astype(np.float64)


def row_at(similarity: np.ndarray, positive: np.ndarray, threshold: float) -> ThresholdRow:
    predicted = similarity >= threshold - 1e-12
    tp = int((predicted & positive).sum())
    n_pred, n_pos = int(predicted.sum()), int(positive.sum())
    precision = tp / n_pred if n_pred else None
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return ThresholdRow(round(threshold, 4), precision, recall, f1, n_pred, tp)


def grid(low: float, high: float, step: float) -> list[float]:
    count = int(round((high - low) / step))
    return [round(low + k * step, 4) for k in range(count + 1)]


def choose(
    similarity: np.ndarray, positive: np.ndarray, target: float, low: float = 0.0
) -> ThresholdRow | None:
    """The lowest 0.01-grid threshold meeting `target` precision there and at every higher one (None: none)."""
    rows = [row_at(similarity, positive, t) for t in grid(low, 1.0, FINE_STEP)]
    chosen = None
    for row in reversed(rows):
        if row.precision is None:
            continue
        if row.precision < target:
            break
        chosen = row
    return chosen


def calibrate(
    pairs: Pairs,
    similarity: np.ndarray,
    stage: str,
    target_precision: float = 0.9,
    model: str | None = None,
    step: float = 0.05,
) -> Calibration:
    """The per-threshold table (every `step` from 0 to 1, plus the chosen threshold) and the chosen one."""
    low = 0.0
    result = Calibration(stage, model, target_precision, len(pairs), int(pairs.positive.sum()))
    result.chosen = choose(similarity, pairs.positive, target_precision, low)
    thresholds = set(grid(low, 1.0, step))
    if result.chosen is not None:
        thresholds.add(result.chosen.threshold)
    result.rows = [row_at(similarity, pairs.positive, t) for t in sorted(thresholds)]
    return result


def plot(similarity: np.ndarray, positive: np.ndarray, result: Calibration, out: Path) -> Path:
    """Precision, recall and F1 against the threshold (0.01 grid) as a PNG; needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise UserError("--plot needs matplotlib; fix: pip install matplotlib") from None
    rows = [row_at(similarity, positive, t) for t in grid(0.0, 1.0, FINE_STEP)]
    xs = [r.threshold for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(xs, [np.nan if r.precision is None else r.precision for r in rows], label="precision")
    ax.plot(xs, [r.recall for r in rows], label="recall")
    ax.plot(xs, [r.f1 for r in rows], label="F1", linestyle="--")
    ax.axhline(result.target_precision, color="grey", linewidth=0.8, linestyle=":")
    if result.chosen is not None:
        ax.axvline(result.chosen.threshold, color="black", linewidth=0.8)
        ax.annotate(f"t = {result.chosen.threshold:g}", (result.chosen.threshold, 0.05), xytext=(4, 0),
                    textcoords="offset points")  # fmt: skip
    what = "exact Jaccard of the dedup key" if result.stage == "minhash" else f"cosine ({result.model})"
    ax.set(xlabel=f"threshold ({what})", ylabel="share", ylim=(0, 1.02), xlim=(0, 1))
    ax.set_title(f"{result.stage}: {result.pairs:,} pairs, {result.positives:,} duplicates")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as exc:
        raise UserError(f"--plot {out}: cannot write it ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    return out


def examples_above(
    texts: Sequence[str], ref: np.ndarray, score: np.ndarray, threshold: float, k: int = 3
) -> list[dict[str, Any]]:
    """The `k` drops whose score is closest above `threshold`: (kept text, dropped text, score), for the
    audit's threshold sweep (the pairs a user should look at to judge a threshold)."""
    dropped = np.flatnonzero((ref >= 0) & (score >= threshold))
    if dropped.size == 0:
        return []
    closest = dropped[np.argsort(score[dropped], kind="stable")[:k]]
    return [{"score": float(score[i]), "kept": texts[int(ref[i])], "dropped": texts[int(i)]} for i in closest]


# ---------------------------------------------------------------- candidate pairs by similarity band
# (the dashboard's Thresholds page) and people's marks as pairs (`tunelab calibrate --marks`)

# band width: 0.1 of Jaccard, 0.05 of cosine (cosines of near-duplicates crowd into 0.8-1.0); the warehouse
# view v_threshold_precision bands marks the same way
BANDS_PER_UNIT = {"minhash": 10, "semantic": 20}
# how far under the threshold the near-miss bands reach (3 bands each)
NEAR_MISS_SPAN = {"minhash": 0.3, "semantic": 0.15}
# rows a near-miss search looks at: all of a curation up to this many, else a seeded sample (the page says so)
NEAR_MISS_MAX_ROWS = {"minhash": 20_000, "semantic": 5_000}
# LSH candidates verified with the exact Jaccard (~0.1 ms each): a seeded sample beyond this many
NEAR_MISS_MAX_CANDIDATES = 50_000
MARK_STAGES = ("minhash", "semantic")


def band_low(similarity: np.ndarray | float, stage: str) -> np.ndarray:
    """The lower edge of each similarity's band; 1.0 belongs to the top band [0.9, 1.0] (as in the view)."""
    per_unit = BANDS_PER_UNIT[stage]
    index = np.minimum(np.floor(np.asarray(similarity, dtype=np.float64) * per_unit + 1e-9), per_unit - 1)
    return np.round(index / per_unit, 4)


def band_label(low: float, stage: str) -> str:
    return f"{low:.2f}–{low + 1 / BANDS_PER_UNIT[stage]:.2f}"


def stage_settings(recipe_json: str | None, stage: str) -> MinhashSettings | SemanticSettings:
    """The stage's settings as the curation ran it, from the recipe it stored (defaults when unknown).

    A minhash block without `key` was stored before the dedup key existed: that curation compared the raw
    text, so its key is switched off here and recomputed similarities match its decisions."""
    try:
        recipe = json.loads(recipe_json or "{}")
    except json.JSONDecodeError:
        recipe = {}
    curate = recipe.get("curate") if isinstance(recipe, dict) else None
    block = curate.get(stage) if isinstance(curate, dict) else None
    block = dict(block) if isinstance(block, dict) else {}
    if stage == "minhash":
        if block and "key" not in block:
            block["key"] = {"unicode": "none", "lowercase": False, "punctuation": False, "whitespace": False}
        try:
            return MinhashSettings.model_validate(block)
        except ValueError:
            return MinhashSettings()
    try:
        return SemanticSettings.model_validate(block)
    except ValueError:
        return SemanticSettings()


def contents(samples: pl.DataFrame, kind: str) -> list[str]:
    """What the dedup stages compare for each warehouse sample row (curate.common.with_content)."""
    from tunelab.curate.common import with_content

    return with_content(samples, kind)["content"].fill_null("").to_list()


def minhash_near_pairs(
    texts: Sequence[str], cfg: MinhashSettings, low: float, max_candidates: int = NEAR_MISS_MAX_CANDIDATES
) -> tuple[pl.DataFrame, int]:
    """Pairs (i > j) whose exact Jaccard on the dedup key is in [low, cfg.threshold): the near misses.

    Candidates come from the stage's own LSH, banded for `low` instead of the threshold, and each is
    verified with the stage's exact Jaccard, so a pair's similarity is the number the stage would compute.
    LSH buckets give star pairs (each member with the bucket's first row), so this is a sample of the
    pairs in each band, not all of them. Returns the pairs and how many candidates LSH proposed (at most
    `max_candidates` of them, a seeded sample, are verified)."""
    from tunelab.curate import minhash

    schema = {"i": pl.Int64, "j": pl.Int64, "similarity": pl.Float64}
    keys = dedup_keys(list(texts), cfg.key)
    if len(keys) < 2 or low >= cfg.threshold:
        return pl.DataFrame(schema=schema), 0
    sig = minhash.signatures(keys, cfg.ngram, cfg.num_perm, cfg.seed)
    bands, rows = minhash.band_params(round(max(low, 0.05), 4), cfg.num_perm)
    pairs = minhash.candidate_pairs(sig, bands, rows, cfg.seed)
    proposed = len(pairs)
    if proposed == 0:
        return pl.DataFrame(schema=schema), 0
    if proposed > max_candidates:
        pick = np.random.default_rng(cfg.seed).choice(proposed, max_candidates, replace=False)
        pairs = pairs[np.sort(pick)]
    sets = minhash.ShingleSets(keys, np.unique(pairs), cfg.ngram, cfg.seed)
    sims = np.array([sets.jaccard(int(a), int(b)) for a, b in pairs])
    keep = (sims >= low - 1e-12) & (sims < cfg.threshold - 1e-12)
    first, second = pairs[keep].max(axis=1), pairs[keep].min(axis=1)
    found = (
        pl.DataFrame({"i": first, "j": second, "similarity": sims[keep]}, schema=schema)
        .unique(["i", "j"])
        .sort(["i", "j"])
    )
    return found, proposed


def semantic_vectors(texts: Sequence[str], cfg: SemanticSettings, cache_dir: Path | None) -> np.ndarray:
    """Vectors of `texts` as the semantic stage embeds rows (row budget, cache under `cache_dir`)."""
    from tunelab.curate import semantic
    from tunelab.curate.common import StageContext

    return semantic.embed(list(texts), cfg, StageContext(cache_dir=cache_dir))


def semantic_near_pairs(vectors: np.ndarray, low: float, high: float, block: int = 2048) -> pl.DataFrame:
    """Each row with its most similar other row under `high` (the threshold), kept when their cosine is at
    least `low`; pairs as (i > j). Exact dot products, blockwise (rows are bounded by NEAR_MISS_MAX_ROWS)."""
    schema = {"i": pl.Int64, "j": pl.Int64, "similarity": pl.Float64}
    n = vectors.shape[0]
    if n < 2:
        return pl.DataFrame(schema=schema)
    best = np.empty(n, dtype=np.int64)
    best_sim = np.empty(n, dtype=np.float64)
    for begin in range(0, n, block):
        sims = vectors[begin : begin + block] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, begin + rows] = -np.inf  # never the row itself
        sims[sims >= high - 1e-6] = -np.inf  # pairs at or over the threshold are the stage's drops
        best[begin : begin + block] = sims.argmax(axis=1)
        best_sim[begin : begin + block] = sims[rows, best[begin : begin + block]]
    keep = (best_sim >= low - 1e-6) & (best_sim < high - 1e-6)
    me = np.flatnonzero(keep)
    return (
        pl.DataFrame(
            {"i": np.maximum(me, best[me]), "j": np.minimum(me, best[me]), "similarity": best_sim[me]},
            schema=schema,
        )
        .unique(["i", "j"])
        .sort(["i", "j"])
    )


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (the one v_threshold_precision computes in SQL)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class MarkedPairs:
    """People's marks on a curation's candidate pairs, as calibration pairs, with what the stage ran with."""

    pairs: Pairs
    similarity: np.ndarray  # the similarity recorded with each mark
    settings: MinhashSettings | SemanticSettings
    kind: str


def pairs_from_marks(db: Path, curation_id: str, stage: str) -> MarkedPairs:
    """The newest mark of each pair marked on the Thresholds page, joined with the two samples' content."""
    from tunelab.warehouse import store

    if stage not in MARK_STAGES:
        raise UserError(f"--marks: stage must be one of {', '.join(MARK_STAGES)}")
    if not Path(db).is_file():
        raise UserError(f"{db}: no warehouse here (pass --workspace DIR)")
    curation = store.get_curation(db, curation_id)
    if curation is None:
        raise UserError(f"--marks {curation_id}: no such curation in {db}")
    marks = store.threshold_marks(db, curation_id, stage)
    if marks.height == 0:
        raise UserError(
            f"--marks {curation_id}: no {stage} pairs marked yet; mark some on the dashboard's Thresholds page"
        )
    ids = sorted(set(marks["sample_id"].to_list()) | set(marks["ref_sample_id"].to_list()))
    samples = store.curation_samples(db, curation_id, ids)
    kind = str(curation.get("kind") or "sft")
    text = dict(zip(samples["sample_id"].to_list(), contents(samples, kind), strict=True))
    return MarkedPairs(
        Pairs(
            [text.get(s, "") for s in marks["ref_sample_id"].to_list()],
            [text.get(s, "") for s in marks["sample_id"].to_list()],
            marks["is_duplicate"].to_numpy().astype(bool),
        ),
        marks["similarity"].to_numpy().astype(np.float64),
        stage_settings(curation.get("recipe"), stage),
        kind,
    )
