"""Uncertainty for every compared number: bootstrap intervals and paired significance tests.

- Per-sample metrics (ROUGE, sentence BLEU/chrF, cosine, label accuracy): the mean with a seeded
  percentile-bootstrap 95 % interval; a delta between two models on the same prompts with a paired
  bootstrap interval of the mean difference and a paired approximate-randomization p-value (random sign
  flips of the per-prompt differences), the same test sacrebleu runs for corpus metrics.
- Corpus BLEU / chrF: resampling and approximate randomization over sacrebleu's per-segment sufficient
  statistics, each corpus score recomputed with sacrebleu's own `_compute_score_from_stats` (sacrebleu
  reports per-system intervals only, not the interval of a difference; and see `corpus_difference` for why
  its p-value is not taken as is).
All resampling is seeded: the same inputs and seed give the same intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

N_RESAMPLES = 1000
SEED = 12345
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A value with its interval (and, for a difference, the p-value of 'no difference')."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float | None = None
    method: str = ""

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 1 - CONFIDENCE


def _bounds(samples: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def mean_interval(values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Estimate:
    """The mean of per-sample values with a percentile-bootstrap interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, method="empty")
    means = x[_indices(x.size, n_resamples, seed)].mean(axis=1)
    low, high = _bounds(means)
    return Estimate(float(x.mean()), low, high, int(x.size), method=f"bootstrap {n_resamples}, seed {seed}")


def paired_difference(
    treated: Sequence[float], baseline: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> Estimate:
    """Mean of (treated - baseline) over the same prompts: paired-bootstrap interval and a paired
    approximate-randomization p-value (two-sided; add-one smoothed, so never exactly 0)."""
    a, b = np.asarray(treated, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.size} vs {b.size}")
    if a.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, None, "empty")
    diff = a - b
    observed = float(diff.mean())
    low, high = _bounds(diff[_indices(diff.size, n_resamples, seed)].mean(axis=1))
    signs = np.random.default_rng(seed + 1).choice((-1.0, 1.0), size=(n_resamples, diff.size))
    flipped = np.abs((signs * diff).mean(axis=1))
    # a tolerance, so that float noise in identical systems doesn't count as a difference
    at_least = int((flipped >= abs(observed) - 1e-12).sum())
    p_value = (at_least + 1) / (n_resamples + 1)
    method = f"paired bootstrap {n_resamples} + approximate randomization, seed {seed}"
    return Estimate(observed, low, high, int(diff.size), p_value, method)


def corpus_interval(
    metric: Any, stats: Sequence[Sequence[float]], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> Estimate:
    """A sacrebleu corpus score recomputed over bootstrap resamples of its per-segment statistics."""
    table = np.asarray(stats, dtype=np.float64)
    if table.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, method="empty")
    score = metric._compute_score_from_stats(list(table.sum(axis=0))).score
    resampled = [
        metric._compute_score_from_stats(list(table[rows].sum(axis=0))).score
        for rows in _indices(len(table), n_resamples, seed)
    ]
    low, high = _bounds(np.asarray(resampled))
    return Estimate(
        float(score), low, high, len(table), method=f"sacrebleu stats bootstrap {n_resamples}, seed {seed}"
    )


def corpus_difference(
    metric: Any,
    treated_stats: Sequence[Sequence[float]],
    baseline_stats: Sequence[Sequence[float]],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Estimate:
    """Corpus score of treated minus baseline over the same segments: a paired bootstrap interval and a
    paired approximate-randomization p-value (each segment's two statistics swapped with probability 1/2).

    This is sacrebleu's approximate randomization (its `_paired_ar_test`) on sacrebleu's own statistics and
    scoring, with one deliberate difference: sacrebleu counts only shuffles with a strictly larger
    difference, so a system compared with itself gets p = 1/(R+1) and would be marked significant; here
    an equal difference counts too, so identical systems get p = 1 (what a reader of the table expects).
    """
    a, b = np.asarray(treated_stats, dtype=np.float64), np.asarray(baseline_stats, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, None, "empty")

    def score(table: np.ndarray) -> float:
        return float(metric._compute_score_from_stats(list(table.sum(axis=0))).score)

    observed = score(a) - score(b)
    diffs = [score(a[rows]) - score(b[rows]) for rows in _indices(len(a), n_resamples, seed)]
    low, high = _bounds(np.asarray(diffs))
    swaps = np.random.default_rng(seed + 1).random((n_resamples, len(a))) < 0.5
    at_least = 0
    for swap in swaps:
        mixed_a = np.where(swap[:, None], b, a)
        mixed_b = np.where(swap[:, None], a, b)
        at_least += int(abs(score(mixed_a) - score(mixed_b)) >= abs(observed) - 1e-9)
    p_value = (at_least + 1) / (n_resamples + 1)
    method = (
        f"paired bootstrap + approximate randomization on sacrebleu statistics, {n_resamples}, seed {seed}"
    )
    return Estimate(observed, low, high, len(a), p_value, method)


def relative_change_is_meaningful(base_value: float, scale: float) -> bool:
    """A % change is shown only against a base of at least 10 % of the metric's range: 0.04 → 0.09 ROUGE
    is '+0.05', not '+125 %'."""
    return bool(np.isfinite(base_value)) and abs(base_value) >= 0.1 * scale
