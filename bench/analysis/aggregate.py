"""Aggregates over the tasks of a suite, with stratified bootstrap CIs (rliable: Agarwal et al. 2021,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice", google-research/rliable).

Every array here is ``(seeds, tasks, families)`` of scores oriented so that higher is better (a loss or an
RMSE is negated by the caller); seed index *i* is the same initialisation, batches and split for every
family on a task, so the bootstrap resamples seed indices, within each task, and uses the SAME indices for
every family.

The draws are rliable's: ``StratifiedBootstrap.update_indices`` draws ``np.random.choice(seeds, (seeds,
tasks))`` per replicate from numpy's global RandomState (not from the ``random_state`` it is given), so
``stratified_draws(..., seed)`` equals its draws after ``np.random.seed(seed)``, and the CIs are arch's
percentile intervals of them. tests/test_analysis_suite.py checks the IQM, the mean rank and the
probability of improvement, points and CIs, against ``rliable.library.get_interval_estimates`` and
``rliable.metrics``. rliable itself is a test dependency only.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from bench.analysis.stats import ALPHA

IQM_CUT = 0.25  # rliable's aggregate_iqm: scipy.stats.trim_mean(scores, 0.25, axis=None)


def stratified_draws(seeds: int, tasks: int, reps: int, seed: int) -> np.ndarray:
    """``(reps, seeds, tasks)`` seed indices: for each replicate and each task, ``seeds`` indices drawn with
    replacement, exactly as rliable's ``StratifiedBootstrap`` draws them after ``np.random.seed(seed)``."""
    # RandomState.choice(n, shape) with replacement is randint(0, n, shape), one replicate after the other.
    return np.random.RandomState(seed).randint(0, seeds, size=(reps, seeds, tasks))


def resample(scores: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``(seeds, tasks, ...)`` -> ``(reps, seeds, tasks, ...)``: replicate r's value at (i, t) is
    ``scores[draws[r, i, t], t]``."""
    return scores[draws, np.arange(scores.shape[1])]


def percentile_interval(replicates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % percentile interval over axis 0, as arch's ``conf_int(method='percentile')`` takes it."""
    size = 1 - ALPHA
    alpha = (1.0 - size) / 2  # arch's arithmetic, to the last bit
    low, high = np.percentile(replicates, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def ranking_key(means: np.ndarray) -> np.ndarray:
    """Means along the last axis made comparable: equal to 12 significant digits of the largest one means
    equal (the same scores summed in another order differ in the last bit; they are a tie)."""
    scale = np.max(np.abs(means), axis=-1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    return np.asarray(np.round(means / scale, 12))


def normalise(scores: np.ndarray, baseline: int) -> np.ndarray:
    """Per task, ``(x - c) / d`` with c the baseline's mean over seeds: the baseline's mean is 0 and
    - the best family's mean is 1 (d = best mean - c), when some family's mean is above the baseline's;
    - the worst family's mean is -1 (d = c - worst mean), when the baseline is best or tied for best: the
      others lie in [-1, 0] by their means;
    - every score is 0, when every family's mean is the same (nothing to scale by).
    The anchors are the means of all the data; a bootstrap resamples the normalised scores (as rliable
    resamples scores normalised by fixed reference scores), so a CI does not carry the anchors' noise."""
    means = scores.mean(axis=0)  # (tasks, families)
    key = ranking_key(means)
    c = means[:, baseline]
    above = key.max(axis=1) > key[:, baseline]
    below = key.min(axis=1) < key[:, baseline]
    d = np.where(above, means.max(axis=1) - c, np.where(below, c - means.min(axis=1), np.inf))
    return np.asarray((scores - c[None, :, None]) / d[None, :, None])


def iqm(scores: np.ndarray) -> np.ndarray:
    """Per family, the interquartile mean of all its ``(seeds, tasks)`` scores (rliable's aggregate_iqm)."""
    return np.asarray(stats.trim_mean(scores.reshape(-1, scores.shape[-1]), IQM_CUT, axis=0))


def iqm_ci(scores: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boot = resample(scores, draws)
    reps = boot.shape[0]
    return percentile_interval(stats.trim_mean(boot.reshape(reps, -1, scores.shape[-1]), IQM_CUT, axis=1))


def task_ranks(means: np.ndarray) -> np.ndarray:
    """``(..., families)`` means -> ranks along the last axis: 1 for the highest, ties get their average
    rank."""
    return np.asarray(stats.rankdata(-ranking_key(means), method="average", axis=-1))


def mean_rank(scores: np.ndarray) -> np.ndarray:
    """Per family, its rank by mean score on each task, averaged over the tasks."""
    return np.asarray(task_ranks(scores.mean(axis=0)).mean(axis=0))


def mean_rank_ci(scores: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    means = resample(scores, draws).mean(axis=1)  # (reps, tasks, families)
    return percentile_interval(task_ranks(means).mean(axis=1))


def _wins(scores: np.ndarray, baseline: int) -> np.ndarray:
    """``(seeds, seeds, tasks, families)``: 1 where family f's run on seed i beats the baseline's run on
    seed j on a task, 1/2 where they are equal, else 0."""
    x = scores[:, None, :, :]
    y = scores[None, :, :, baseline, None]
    return np.asarray((x > y) + 0.5 * (x == y))


def probability_of_improvement(scores: np.ndarray, baseline: int) -> np.ndarray:
    """Per family, P(X > Y) + P(X = Y) / 2 of its runs X against the baseline's runs Y on a task (the
    Mann-Whitney U over n x n), averaged over the tasks: rliable's probability_of_improvement."""
    return np.asarray(_wins(scores, baseline).mean(axis=(0, 1)).mean(axis=0))


def probability_of_improvement_ci(
    scores: np.ndarray, baseline: int, draws: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The CI resamples seed indices, the same for the family and the baseline (they are paired). rliable
    resamples the two independently (``StratifiedIndependentBootstrap``), which is right for unpaired runs;
    for paired seeds that share an effect it is wider than the sampling spread."""
    n = scores.shape[0]
    counts = (draws[..., None] == np.arange(n)).sum(axis=1)  # (reps, tasks, seeds): times each seed drawn
    wins = _wins(scores, baseline)
    p = np.einsum("rti,ijtf,rtj->rtf", counts, wins, counts, optimize=True) / n**2
    return percentile_interval(p.mean(axis=1))
