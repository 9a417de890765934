"""Statistics over paired seeds: per family a summary with a bootstrap CI, paired comparisons, and which
families are tied for best, by a procedure that holds its error rate although the best is picked from the
same data.

Scores are oriented so that higher is better (a loss is negated by the caller). Every array here is
``(families, seeds)``: column *i* is seed index *i*, the same initialisation, batch order and split for
every family. The computations are scipy's (``bootstrap``, ``wilcoxon``, ``mannwhitneyu``,
``permutation_test``, ``trim_mean``); tests/test_analysis_stats.py checks them against scipy's and rliable's
own results and for calibration by simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
N_BOOTSTRAP = 2000
N_PERMUTATIONS = 2000


@dataclass(frozen=True)
class Summary:
    """One family's scores over seeds."""

    n: int
    mean: float
    std: float  # ddof 1
    median: float
    iqm: float  # interquartile mean: the mean of the middle 50 % (rliable's IQM)
    ci_low: float  # 95 % percentile bootstrap CI of the mean
    ci_high: float


@dataclass(frozen=True)
class Paired:
    """Family x against family y on the same seeds."""

    diff: float  # mean of x - y (higher: x better)
    ci_low: float  # 95 % percentile bootstrap CI of that mean
    ci_high: float
    p_value: float  # Wilcoxon signed-rank, two-sided, raw (no correction for multiplicity)
    p_improvement: float  # P(X > Y) + P(X = Y) / 2 over runs (rliable's probability of improvement)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _mean_ci(x: np.ndarray, seed: int) -> tuple[float, float]:
    if x.size < 2 or np.ptp(x) == 0:  # nothing to resample: the CI is the point
        return float(x.mean()), float(x.mean())
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=N_BOOTSTRAP,
        method="percentile",
        confidence_level=1 - ALPHA,
        rng=_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(x: np.ndarray, seed: int = 0) -> Summary:
    x = np.asarray(x, dtype=float)
    low, high = _mean_ci(x, seed)
    return Summary(
        n=int(x.size),
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        median=float(np.median(x)),
        iqm=float(stats.trim_mean(x, 0.25)),
        ci_low=low,
        ci_high=high,
    )


def wilcoxon_p(d: np.ndarray) -> float:
    """The signed-rank test's two-sided p-value for paired differences; 1.0 where every difference is 0
    (identical results: no evidence either way)."""
    d = np.asarray(d, dtype=float)
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2, from the Mann-Whitney U statistic (as rliable computes it)."""
    u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
    return float(u) / (len(x) * len(y))


def paired(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Paired:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    d = x - y
    low, high = _mean_ci(d, seed)
    return Paired(float(d.mean()), low, high, wilcoxon_p(d), probability_of_improvement(x, y))


def _range_of_means(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    means = np.stack([s.mean(axis=axis) for s in samples])
    return np.asarray(means.max(axis=0) - means.min(axis=0))


def critical_difference(scores: np.ndarray, seed: int = 0) -> float:
    """The smallest difference of two families' mean scores that is significant at ALPHA for every pair at
    once: the (1 - ALPHA) quantile of the largest difference of means when, on each seed, the families'
    scores are shuffled among them (a max-statistic permutation test over seeds). It holds the family-wise
    error rate over all pairs, so also for "every family against the best" when the best is picked from
    the same data."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape[0] < 2:
        return float("inf")
    res = stats.permutation_test(
        tuple(scores),
        _range_of_means,
        permutation_type="samples",
        vectorized=True,
        n_resamples=N_PERMUTATIONS,
        alternative="greater",
        rng=_rng(seed),
    )
    return float(np.quantile(res.null_distribution, 1 - ALPHA, method="higher"))


def ranks(scores: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each family's rank, ties shown as ties: 1 + the number of families significantly better than it
    (by :func:`critical_difference`); and whether it is tied for best (rank 1: no family is significantly
    better)."""
    scores = np.asarray(scores, dtype=float)
    means = scores.mean(axis=1)
    cd = critical_difference(scores, seed)
    better = (means[None, :] - means[:, None]) > cd  # [j, i]: i significantly better than j
    rank = 1 + better.sum(axis=1)
    return rank, rank == 1
