"""The statistics: against scipy's and rliable's own computations on fixed inputs, and calibrated by
simulation (a comparison that should find nothing finds nothing at the stated rate)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rliable import metrics as rl
from scipy import stats

from bench.analysis import budget
from bench.analysis import stats as st

FIXED_X = np.array([0.061, 0.058, 0.070, 0.064, 0.059, 0.066, 0.062, 0.071, 0.060, 0.063])
FIXED_Y = np.array([0.066, 0.060, 0.069, 0.070, 0.065, 0.072, 0.061, 0.075, 0.066, 0.064])


def test_summary_agrees_with_scipy_and_rliable():
    s = st.summarize(FIXED_X, seed=3)
    assert s.mean == pytest.approx(FIXED_X.mean())
    assert s.std == pytest.approx(FIXED_X.std(ddof=1))
    assert s.median == pytest.approx(np.median(FIXED_X))
    assert s.iqm == pytest.approx(rl.aggregate_iqm(FIXED_X[:, None]))
    ci = stats.bootstrap(
        (FIXED_X,), np.mean, n_resamples=st.N_BOOTSTRAP, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    assert (s.ci_low, s.ci_high) == pytest.approx((ci.low, ci.high))
    assert s.ci_low < s.mean < s.ci_high


def test_paired_agrees_with_scipy_and_rliable():
    p = st.paired(FIXED_X, FIXED_Y, seed=1)
    d = FIXED_X - FIXED_Y
    assert p.diff == pytest.approx(d.mean())
    assert p.p_value == pytest.approx(stats.wilcoxon(FIXED_X, FIXED_Y).pvalue)
    assert p.p_improvement == pytest.approx(rl.probability_of_improvement(FIXED_X[:, None], FIXED_Y[:, None]))
    ci = stats.bootstrap(
        (d,), np.mean, n_resamples=st.N_BOOTSTRAP, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    assert (p.ci_low, p.ci_high) == pytest.approx((ci.low, ci.high))


def test_identical_results_are_a_tie_with_a_point_ci():
    p = st.paired(FIXED_X, FIXED_X.copy())
    assert (p.diff, p.ci_low, p.ci_high, p.p_value, p.p_improvement) == (0.0, 0.0, 0.0, 1.0, 0.5)
    s = st.summarize(np.full(10, 0.25))
    assert (s.ci_low, s.ci_high, s.std) == (0.25, 0.25, 0.0)


def test_critical_difference_is_scipys_permutation_quantile():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(4, 10))

    def range_of_means(*samples, axis=-1):
        m = np.stack([s.mean(axis=axis) for s in samples])
        return m.max(axis=0) - m.min(axis=0)

    null = stats.permutation_test(
        tuple(scores),
        range_of_means,
        permutation_type="samples",
        vectorized=True,
        n_resamples=st.N_PERMUTATIONS,
        alternative="greater",
        rng=np.random.default_rng(0),
    ).null_distribution
    assert st.critical_difference(scores, seed=0) == pytest.approx(np.quantile(null, 0.95, method="higher"))


def _simulate(shift: float, n_sims: int = 1000, families: int = 8, seeds: int = 10) -> tuple[float, float]:
    """Rates over simulated studies: any family declared not tied for best; the shifted family (index 0,
    lowered by ``shift`` standard deviations) declared not tied for best."""
    rng = np.random.default_rng(2024)
    anything = shifted = 0
    for sim in range(n_sims):
        # A seed effect shared by every family (paired seeds), and each run's own noise.
        scores = rng.normal(size=(1, seeds)) * 0.5 + rng.normal(size=(families, seeds))
        scores[0] -= shift
        _, tied = st.ranks(scores, seed=sim)
        anything += not tied.all()
        shifted += not tied[0]
    return anything / n_sims, shifted / n_sims


@pytest.mark.slow
def test_null_comparisons_find_nothing_at_the_stated_rate():
    # 8 families x 10 paired seeds from one distribution: nothing should be declared worse.
    false_alarms, _ = _simulate(shift=0.0)
    assert false_alarms <= 0.07


@pytest.mark.slow
def test_a_family_two_standard_deviations_worse_is_found():
    _, power = _simulate(shift=2.0)
    assert power >= 0.80


@pytest.mark.slow
def test_selection_of_the_best_is_accounted_for():
    """The trap the procedure avoids: Holm over "every family against the empirically best" declares
    something worse far more often than 5 % under the null (the best was picked by the same data); the
    max-statistic procedure does not, on the same simulated studies."""
    rng = np.random.default_rng(5)
    holm = ours = 0
    sims = 1000
    for sim in range(sims):
        scores = rng.normal(size=(8, 10))
        best = int(np.argmax(scores.mean(axis=1)))
        ps = sorted(stats.ttest_rel(scores[best], scores[j]).pvalue for j in range(8) if j != best)
        holm += ps[0] <= st.ALPHA / len(ps)  # Holm declares something iff its first step does
        ours += not st.ranks(scores, seed=sim)[1].all()
    assert holm / sims > 0.07
    assert ours / sims <= 0.07


def test_ranks_show_ties():
    base = np.linspace(0, 1, 10)
    # Two identical, one a hair better, one far worse.
    scores = np.stack([base + 5, base + 5, base + 5.01, base])
    rank, tied = st.ranks(scores)
    assert list(tied) == [True, True, True, False]
    assert rank[0] == rank[1] == rank[2] == 1 and rank[3] == 4


def test_expected_best_is_the_exact_expectation():
    scores = [0.3, 0.9, 0.5, 0.5, 0.1]
    for n in (1, 2, 3):
        draws = itertools.product(scores, repeat=n)  # every equally likely sequence of n draws
        exact = np.mean([max(d) for d in draws])
        assert budget.expected_best(scores, n) == pytest.approx(exact)
    curve = budget.budget_curve(scores, 6)
    assert curve[0] == pytest.approx(np.mean(scores))
    assert all(a <= b for a, b in itertools.pairwise(curve)) and curve[-1] <= max(scores)


def test_time_to_target():
    curves = [[0.1, 0.5, 0.9], [0.2, 0.3, 0.4], [0.9, 0.95, 0.97]]
    assert budget.first_epoch_reaching(curves[0], 0.5) == 2
    assert budget.first_epoch_reaching(curves[1], 0.5) is None
    median, reached = budget.time_to_target(curves, 0.5)
    assert (median, reached) == (2.0, pytest.approx(2 / 3))
    median, reached = budget.time_to_target(curves, 0.96)  # one of three: the median run never gets there
    assert np.isnan(median) and reached == pytest.approx(1 / 3)
