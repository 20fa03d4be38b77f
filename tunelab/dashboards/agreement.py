"""Blind A/B reviews: which side each answer goes on, and how far raters agree (no Streamlit here).

Agreement is chance-corrected by the libraries made for it: Krippendorff's alpha (nominal, the
`krippendorff` package; any number of raters, prompts rated by only some of them) and Cohen's kappa
(scikit-learn) for each pair of raters, reviewers and the LLM judge alike. Each comes with a seeded
bootstrap 95 % interval over the rated prompts and the number of prompts it is computed on.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from itertools import combinations
from typing import Any

import numpy as np
import polars as pl

N_RESAMPLES = 1000
SEED = 12345
# a rater's verdict on a pair as a category: the first model of the sorted pair, a tie, or the second
CATEGORIES = {"a": 0, "tie": 1, "b": 2}
AGREEMENT_COLUMNS = {
    "rater_1": pl.Utf8, "rater_2": pl.Utf8, "kind": pl.Utf8, "n": pl.Int64, "agreement": pl.Float64,
    "kappa": pl.Float64, "kappa_low": pl.Float64, "kappa_high": pl.Float64,
}  # fmt: skip


def blind_sides(reviewer: str, eval_id: str, sample_id: str, model_x: str, model_y: str) -> tuple[str, str]:
    """(left, right): a coin flip seeded by reviewer, evaluation, prompt and pair, so a reload (or the
    same reviewer coming back tomorrow) sees the same sides, while each prompt's coin is independent."""
    first, second = sorted((model_x, model_y))
    key = "\x1f".join((reviewer, eval_id, sample_id, first, second)).encode("utf-8")
    flip = hashlib.sha256(key).digest()[0] & 1
    return (first, second) if flip == 0 else (second, first)


def _codes(votes: pl.DataFrame) -> dict[str, dict[tuple[str, str, str], int]]:
    """rater -> {(sample_id, model_a, model_b): category}."""
    coded: dict[str, dict[tuple[str, str, str], int]] = {}
    for row in votes.iter_rows(named=True):
        winner = row["winner"]
        side = "a" if winner == row["model_a"] else "b" if winner == row["model_b"] else "tie"
        coded.setdefault(row["rater"], {})[(row["sample_id"], row["model_a"], row["model_b"])] = CATEGORIES[
            side
        ]
    return coded


def _alpha(matrix: np.ndarray) -> float:
    import krippendorff

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # one category only: 0/0, alpha undefined
            value = krippendorff.alpha(
                reliability_data=matrix,
                level_of_measurement="nominal",
                value_domain=sorted(CATEGORIES.values()),
            )
    except ValueError:  # no prompt rated by two raters
        return math.nan
    return float(value)


def _percentile_interval(values: list[float]) -> tuple[float | None, float | None]:
    finite = np.asarray([v for v in values if math.isfinite(v)])
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def krippendorff_alpha(
    votes: pl.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> dict[str, Any]:
    """Nominal alpha over every rater in `votes` (v_pair_votes rows), on the prompts two or more rated.

    Returns alpha (None when undefined: fewer than two raters on any prompt, or one category only), a
    bootstrap interval over prompts, `n` the prompts rated by at least two, and `raters`.
    """
    coded = _codes(votes)
    raters = sorted(coded)
    units = sorted({u for rated in coded.values() for u in rated})
    shared = [u for u in units if sum(u in coded[r] for r in raters) >= 2]
    result: dict[str, Any] = {
        "alpha": None,
        "ci_low": None,
        "ci_high": None,
        "n": len(shared),
        "raters": len(raters),
    }
    if len(raters) < 2 or not shared:
        return result
    matrix = np.array([[coded[r].get(u, np.nan) for u in shared] for r in raters], dtype=float)
    alpha = _alpha(matrix)
    if not math.isfinite(alpha):
        return result
    rng = np.random.default_rng(seed)
    resampled = [_alpha(matrix[:, rng.integers(0, len(shared), len(shared))]) for _ in range(n_resamples)]
    low, high = _percentile_interval(resampled)
    return result | {"alpha": alpha, "ci_low": low, "ci_high": high}


def _kappa(first: np.ndarray, second: np.ndarray) -> float:
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(first, second, labels=sorted(CATEGORIES.values())))


def _kappa_resampled(first: np.ndarray, second: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each resample (rows of `picks`), vectorised: (p_o - p_e) / (1 - p_e), the formula
    cohen_kappa_score computes from its confusion matrix (one sklearn call per resample took ~15 ms)."""
    a, b = first[picks], second[picks]
    observed = (a == b).mean(axis=1)
    expected = sum((a == c).mean(axis=1) * (b == c).mean(axis=1) for c in CATEGORIES.values())
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)


def pairwise_agreement(votes: pl.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> pl.DataFrame:
    """For each two raters who rated some of the same prompts: n, raw agreement, Cohen's kappa with a
    bootstrap interval over those prompts. `kind` says whether a judge is one of the two."""
    coded = _codes(votes)
    rows = []
    for one, two in combinations(sorted(coded), 2):
        shared = sorted(set(coded[one]) & set(coded[two]))
        if not shared:
            continue
        first = np.array([coded[one][u] for u in shared])
        second = np.array([coded[two][u] for u in shared])
        kappa = _kappa(first, second)
        low = high = None
        if math.isfinite(kappa):
            picks = np.random.default_rng(seed).integers(0, len(shared), (n_resamples, len(shared)))
            low, high = _percentile_interval(_kappa_resampled(first, second, picks).tolist())
        judges = sum(r.startswith("judge:") for r in (one, two))
        rows.append({
            "rater_1": one, "rater_2": two,
            "kind": ("reviewer–reviewer", "reviewer–judge", "judge–judge")[judges],
            "n": len(shared), "agreement": float((first == second).mean()),
            "kappa": kappa if math.isfinite(kappa) else None, "kappa_low": low, "kappa_high": high,
        })  # fmt: skip
    return pl.DataFrame(rows, schema=AGREEMENT_COLUMNS)
