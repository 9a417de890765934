"""A suite's statistics across tasks: performance profiles on hand-made tables, the aggregates against
rliable's own computations on fixed inputs (the same bootstrap draws, so to rounding), the normalisation
and the metric's direction on hand examples, and the CIs' coverage by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rliable import metrics as rlm
from scipy import integrate

from bench.analysis import aggregate as ag
from bench.analysis import profiles as pf
from bench.analysis.suite import TaskScores, suite_tables

try:
    from rliable import library as rly
except (ImportError, TypeError) as exc:  # TypeError: arch 7.2 under pandas 3 (deprecate_kwarg)
    rly = None
    RLIABLE_LIBRARY = (
        f"rliable.library does not import ({type(exc).__name__}: {exc}); "
        "its arch 7.2 needs pandas < 3, as constraints.txt pins it"
    )
else:
    RLIABLE_LIBRARY = ""
needs_rliable_library = pytest.mark.skipif(rly is None, reason=RLIABLE_LIBRARY)

FAMILIES = ["constant", "cosine", "step", "wsd"]
COARSE = [1.0, 1.5, 2.0, 2.5, 3.0]  # a grid whose trapezoids can be added by hand


def _task(name: str, metric: str, means: list[float], epochs: list[float], families=FAMILIES) -> TaskScores:
    """Two seeds per family, mean +- 0.01 (the profile uses the mean)."""
    scores = pd.DataFrame([[m - 0.01 for m in means], [m + 0.01 for m in means]], columns=families)
    return TaskScores(
        name, metric, metric == "test_accuracy", scores, pd.Series(epochs, index=families, dtype=float)
    )


GOLDEN = [
    # Error rates 0.2, 0.1, 0.1, 0.3: cosine and step tied for best. Epochs: wsd never reaches.
    _task("acc", "test_accuracy", [0.8, 0.9, 0.9, 0.7], [10, 5, 5, np.nan]),
    _task("loss", "test_loss", [0.5, 0.4, 0.6, 1.0], [8, 4, 6, 12]),
    _task("rmse", "test_rmse", [2.0, 4.0, 1.0, 8.0], [20, np.nan, 10, 25]),
]


def test_golden_profiles_and_areas():
    """Ratios to the best on each task (score; time), written out:
        constant  2, 1.25, 2      time 2, 2, 2
        cosine    1, 1,    4      time 1, 1, inf
        step      1, 1.5,  1      time 1, 1.5, 1
        wsd       3, 2.5,  8      time inf, 3, 2.5
    rho at tau = 1, 1.5, 2, 2.5, 3 is the share of the three ratios <= tau. The area: trapezoids of width
    0.5 over a range of 2, i.e. (sum of (rho_k + rho_k+1) / 2) / 4:
        constant score 0, 1/3, 1, 1, 1     (1/6 + 2/3 + 1 + 1) / 4 = 17/24
        cosine         2/3 throughout      2/3
        step           2/3, 1, 1, 1, 1     (5/6 + 3) / 4 = 23/24
        wsd            0, 0, 0, 1/3, 2/3   (0 + 1/6 + 1/2) / 4 = 1/6
        constant time  0, 0, 1, 1, 1       (0 + 1/2 + 1 + 1) / 4 = 5/8
        cosine, step, wsd time: as for the score (the same shares)."""
    out = suite_tables(GOLDEN, taus=COARSE, reps=10)
    expected = {
        ("score", "constant"): [0, 1 / 3, 1, 1, 1],
        ("score", "cosine"): [2 / 3] * 5,
        ("score", "step"): [2 / 3, 1, 1, 1, 1],
        ("score", "wsd"): [0, 0, 0, 1 / 3, 2 / 3],
        ("time", "constant"): [0, 0, 1, 1, 1],
        ("time", "cosine"): [2 / 3] * 5,
        ("time", "step"): [2 / 3, 1, 1, 1, 1],
        ("time", "wsd"): [0, 0, 0, 1 / 3, 2 / 3],
    }
    assert list(out.profiles.columns) == ["kind", "family", "tau", "fraction"]
    for (kind, family), fractions in expected.items():
        rows = out.profiles[(out.profiles.kind == kind) & (out.profiles.family == family)]
        assert list(rows.tau) == COARSE
        assert list(rows.fraction) == pytest.approx(fractions), (kind, family)
    areas = out.families.set_index("family")
    assert dict(areas.profile_area_score) == pytest.approx(
        {"constant": 17 / 24, "cosine": 2 / 3, "step": 23 / 24, "wsd": 1 / 6}
    )
    assert dict(areas.profile_area_time) == pytest.approx(
        {"constant": 5 / 8, "cosine": 2 / 3, "step": 23 / 24, "wsd": 1 / 6}
    )


def test_ratios_when_the_best_cost_is_zero_or_no_family_reaches():
    costs = pd.DataFrame(
        [[0.0, 0.0, 0.1, np.nan], [np.nan, np.inf, np.nan, np.nan], [0.2, 0.1, np.inf, 0.3]],
        columns=FAMILIES,
    )
    inf = np.inf
    expected = [[1, 1, inf, inf], [inf, inf, inf, inf], [2, 1, inf, 3]]
    assert pf.cost_ratios(costs).to_numpy().tolist() == expected
    with pytest.raises(ValueError, match="negative"):
        pf.cost_ratios(pd.DataFrame([[-0.1, 0.2]]))


def _algoperf_areas(costs: pd.DataFrame, taus: np.ndarray) -> pd.Series:
    """AlgoPerf's own steps (scoring/performance_profile.py, compute_performance_profiles with
    reference_submission_tag=None; score_submissions.py, compute_leaderboard_score(normalize=True)) on
    submissions x workloads."""
    df = costs.T.copy()
    df.update(df.div(df.min(axis=0), axis=1))
    perf = pd.concat([(df <= tau).sum(axis=1) / df.shape[1] for tau in taus], axis=1)
    scores = integrate.trapezoid(perf.to_numpy(), x=taus) / (taus.max() - taus.min())
    return pd.Series(scores, index=df.index)


def test_areas_match_algoperfs_computation_on_its_grid():
    rng = np.random.default_rng(4)
    costs = pd.DataFrame(rng.uniform(0.1, 1.0, size=(6, 5)), columns=[f"f{i}" for i in range(5)])
    costs.iloc[0, 2] = costs.iloc[3, 4] = np.inf  # never reached
    ours = pf.profile_area(pf.performance_profile(pf.cost_ratios(costs)))
    assert ours.to_numpy() == pytest.approx(_algoperf_areas(costs, pf.TAUS).to_numpy(), abs=1e-12)


# Fixed inputs for the comparisons with rliable: 10 seeds x 3 tasks x 4 families, family 0 the baseline.
FIXED = np.random.default_rng(11).normal(size=(10, 3, 4)) + np.array([0.0, 0.3, 0.5, -0.2])
REPS = 400


@pytest.fixture
def global_numpy_seed():
    """rliable draws from numpy's global RandomState: seeded per call in a test, restored after it."""
    state = np.random.get_state()
    yield np.random.seed
    np.random.set_state(state)


@needs_rliable_library
def test_draws_are_rliables_stratified_bootstrap_draws(global_numpy_seed):
    bs = rly.StratifiedBootstrap(FIXED[:, :, 0])
    global_numpy_seed(5)
    theirs = np.stack([bs.update_indices()[0] for _ in range(50)])
    assert np.array_equal(ag.stratified_draws(10, 3, 50, seed=5), theirs)


@needs_rliable_library
def test_iqm_and_its_ci_are_rliables(global_numpy_seed):
    normalised = ag.normalise(FIXED, baseline=0)
    draws = ag.stratified_draws(10, 3, REPS, seed=3)
    point, (low, high) = ag.iqm(normalised), ag.iqm_ci(normalised, draws)
    for f in range(4):
        global_numpy_seed(3)  # our draws are shared by the families; rliable's continue from one to the next
        theirs, ci = rly.get_interval_estimates(
            {"f": normalised[:, :, f]}, lambda s: np.array([rlm.aggregate_iqm(s)]), reps=REPS
        )
        assert point[f] == pytest.approx(theirs["f"][0], rel=1e-12)
        assert (low[f], high[f]) == pytest.approx((ci["f"][0, 0], ci["f"][1, 0]), rel=1e-12)
        assert low[f] < point[f] < high[f]


def _paired_estimates(statistic, seed: int, reps: int = REPS) -> tuple[np.ndarray, np.ndarray]:
    """rliable's stratified bootstrap applied to the seed indices themselves ([seeds, tasks] of i), so that
    a statistic of all families is computed on the same resampled seeds: rliable's machinery, paired."""
    seeds, tasks = FIXED.shape[:2]
    index = np.tile(np.arange(seeds)[:, None], (1, tasks))
    np.random.seed(seed)
    point, ci = rly.get_interval_estimates(
        {"i": index}, lambda i: statistic(FIXED[i, np.arange(tasks)]), reps=reps
    )
    return point["i"], ci["i"]


@needs_rliable_library
def test_mean_rank_ci_is_rliables_paired_bootstrap(global_numpy_seed):
    point, ci = _paired_estimates(lambda s: ag.task_ranks(s.mean(axis=0)).mean(axis=0), seed=8)
    low, high = ag.mean_rank_ci(FIXED, ag.stratified_draws(10, 3, REPS, seed=8))
    # Ranks are halves averaged over tasks: the same draws give the same numbers, not merely close ones.
    assert np.array_equal(ag.mean_rank(FIXED), point)
    assert np.array_equal(low, ci[0]) and np.array_equal(high, ci[1])


@needs_rliable_library
def test_probability_of_improvement_is_rliables(global_numpy_seed):
    def theirs(s: np.ndarray) -> np.ndarray:
        return np.array([rlm.probability_of_improvement(s[:, :, f], s[:, :, 0]) for f in range(4)])

    point, ci = _paired_estimates(theirs, seed=9, reps=REPS // 2)  # rliable's Mann-Whitney loop is slow
    low, high = ag.probability_of_improvement_ci(FIXED, 0, ag.stratified_draws(10, 3, REPS // 2, seed=9))
    assert ag.probability_of_improvement(FIXED, 0) == pytest.approx(point, rel=1e-12)
    assert low == pytest.approx(ci[0], rel=1e-12) and high == pytest.approx(ci[1], rel=1e-12)
    assert (low[0], high[0]) == (0.5, 0.5)


def test_probability_of_improvement_point_is_rliables_metric():
    for f in range(1, 4):
        expected = rlm.probability_of_improvement(FIXED[:, :, f], FIXED[:, :, 0])
        assert ag.probability_of_improvement(FIXED, 0)[f] == pytest.approx(expected, rel=1e-12)


def test_normalisation_on_hand_examples():
    """Families constant, a, b; two seeds each. Per task, (x - c) / d with c the baseline's mean."""
    tasks = [
        # c = 2, best (a) = 5: d = 3.
        [[1, 4, 0], [3, 6, 2]],
        # The baseline is best (6), the worst (b) is 2: d = 4, the others in [-1, 0] by mean.
        [[5, 4, 1], [7, 4, 3]],
        # Every mean is 2: every score is 0.
        [[1, 2, 3], [3, 2, 1]],
        # The baseline tied for best with a (2), the worst 0: d = 2.
        [[2, 1, 0], [2, 3, 0]],
    ]
    scores = np.array(tasks, dtype=float).transpose(1, 0, 2)  # (seeds, tasks, families)
    expected = np.array(
        [
            [[-1 / 3, 2 / 3, -2 / 3], [1 / 3, 4 / 3, 0]],
            [[-0.25, -0.5, -1.25], [0.25, -0.5, -0.75]],
            [[0, 0, 0], [0, 0, 0]],
            [[0, -0.5, -1], [0, 0.5, -1]],
        ]
    ).transpose(1, 0, 2)
    assert ag.normalise(scores, baseline=0) == pytest.approx(expected)


def test_mean_rank_on_a_hand_example():
    """Means: task 1 (accuracy): constant 0.1, a 0.3, b 0.2 -> ranks 3, 1, 2; task 2: constant and a tied at
    0.2 (the same three scores in another seed order, whose float means differ in the last bit), b 0.1 ->
    1.5, 1.5, 3; task 3 (a loss): 0.1, 0.3, 0.2 -> 1, 3, 2. Mean ranks: constant 5.5/3, a 5.5/3, b 7/3."""
    fams = ["constant", "a", "b"]

    def task(name, metric, columns):
        scores = pd.DataFrame(np.array(columns, dtype=float).T, columns=fams)
        return TaskScores(name, metric, metric == "test_accuracy", scores, pd.Series(1.0, index=fams))

    tasks = [
        task("t1", "test_accuracy", [[0.1] * 3, [0.3] * 3, [0.2] * 3]),
        task("t2", "test_accuracy", [[0.1, 0.2, 0.3], [0.2, 0.3, 0.1], [0.1] * 3]),
        task("t3", "test_loss", [[0.1] * 3, [0.3] * 3, [0.2] * 3]),
    ]
    assert np.mean([0.1, 0.2, 0.3]) != np.mean([0.2, 0.3, 0.1])  # the float trap the ranks must not fall in
    out = suite_tables(tasks, reps=50)
    assert out.ranks.to_numpy().tolist() == [[3, 1, 2], [1.5, 1.5, 3], [1, 3, 2]]
    assert dict(out.families.set_index("family").mean_rank) == pytest.approx(
        {"constant": 5.5 / 3, "a": 5.5 / 3, "b": 7 / 3}
    )


def test_a_lower_is_better_metric_ranks_the_lowest_first_and_profiles_its_value():
    fams = ["constant", "a", "b"]
    scores = pd.DataFrame([[3.0, 1.0, 2.0], [3.2, 1.2, 2.2], [2.8, 0.8, 1.8]], columns=fams)
    rmse = TaskScores("rmse", "test_rmse", False, scores, pd.Series([4.0, 2.0, np.nan], index=fams))
    out = suite_tables([rmse], taus=COARSE, reps=50)
    assert out.ranks.loc["rmse"].to_dict() == {"constant": 3, "a": 1, "b": 2}
    table = out.families.set_index("family")
    assert list(out.families.family) == ["a", "b", "constant"]  # by IQM: a is the best (1), constant 0
    assert table.p_improvement.to_dict() == {"a": 1.0, "b": 1.0, "constant": 0.5}
    # Cost = the RMSE itself: ratios 3, 1, 2; time: 2, 1, never.
    score = out.profiles[(out.profiles.kind == "score") & (out.profiles.tau == 2.0)]
    assert dict(zip(score.family, score.fraction, strict=True)) == {"constant": 0, "a": 1, "b": 1}
    time = out.profiles[(out.profiles.kind == "time") & (out.profiles.tau == 2.0)]
    assert dict(zip(time.family, time.fraction, strict=True)) == {"constant": 1, "a": 1, "b": 0}


def test_a_family_missing_from_a_task_is_left_out_of_the_aggregates():
    partial = _task("loss", "test_loss", [0.5, 0.4, 0.6], [8, 4, 6], families=FAMILIES[:3])
    out = suite_tables([GOLDEN[0], partial, GOLDEN[2]], taus=COARSE, reps=50)
    wsd = out.families.set_index("family").loc["wsd"]
    assert wsd.tasks == 2 and wsd.note == "not run on loss: left out of the aggregates"
    assert wsd.drop(["tasks", "note"]).isna().all()
    assert list(out.families.family)[-1] == "wsd"
    assert "wsd" not in set(out.profiles.family) and "wsd" not in out.ranks.columns
    assert (out.families.set_index("family").loc[FAMILIES[:3], "tasks"] == 3).all()


def test_same_seed_same_tables():
    a, b = suite_tables(GOLDEN, seed=1, reps=200), suite_tables(GOLDEN, seed=1, reps=200)
    pd.testing.assert_frame_equal(a.families, b.families)
    pd.testing.assert_frame_equal(a.profiles, b.profiles)
    pd.testing.assert_frame_equal(a.ranks, b.ranks)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _task("t", "val_accuracy", [0.5] * 4, [1] * 4), "metric must be one of"),
        (
            lambda: TaskScores("t", "test_loss", False, pd.DataFrame({"a": [1.0]}), pd.Series({"b": 1.0})),
            "needs one value per family of scores",
        ),
        (
            lambda: TaskScores("t", "test_rmse", True, pd.DataFrame({"a": [1.0]}), pd.Series({"a": 1.0})),
            "higher_is_better must be False for test_rmse",
        ),
        (lambda: _task("t", "test_accuracy", [1.5] * 4, [1] * 4), r"must lie in \[0.0, 1.0\]"),
        (lambda: _task("t", "test_loss", [np.nan] * 4, [1] * 4), "lack a finite test score"),
        (lambda: _task("t", "test_loss", [0.5] * 4, [0] * 4), "above 0"),
        (lambda: suite_tables([GOLDEN[0]], baseline="linear"), "baseline 'linear' must be run on every task"),
        (lambda: suite_tables([GOLDEN[0], GOLDEN[0]]), "task names must be unique"),
        (lambda: suite_tables([]), "at least one task"),
        (lambda: suite_tables(GOLDEN, reps=0), "reps"),
    ],
)
def test_bad_input_is_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_every_task_needs_the_same_number_of_seeds():
    three = TaskScores(
        "three", "test_loss", False, pd.DataFrame({"constant": [1.0, 2, 3]}), pd.Series({"constant": 1.0})
    )
    with pytest.raises(ValueError, match="same number of seeds"):
        suite_tables([GOLDEN[1], three])


def _independent_p_ci(scores: np.ndarray, draws: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, ...]:
    """rliable's CI for P(improvement) (StratifiedIndependentBootstrap): the family's runs resampled with
    one set of draws, the baseline's with another. Each replicate counts how often each seed is drawn."""
    n = scores.shape[0]
    x, y = scores[:, None, :, :], scores[None, :, :, :1]
    wins = (x > y) + 0.5 * (
        x == y
    )  # (i, j, tasks, families): run i of a family against run j of the baseline
    cx, cy = ((d[..., None] == np.arange(n)).sum(axis=1) for d in (draws, other))  # (reps, tasks, seeds)
    p = np.einsum("rti,ijtf,rtj->rtf", cx, wins, cy, optimize=True) / n**2
    return ag.percentile_interval(p.mean(axis=1))


def test_the_cis_cover_at_about_the_stated_rate():
    """300 simulated suites of 10 seeds x 3 tasks x 3 families drawn from one distribution, with a seed effect
    of 3 SD shared by the families (paired seeds), so P(improvement over the baseline) is 1/2 and every mean
    rank is (F + 1)/2 = 2.
    - P(improvement): the paired bootstrap covers 1/2 at a little over 95 %. rliable's independent
      resampling of the two families (right for unpaired runs) is far too wide here: it covers 1/2 always.
    - The mean rank's null value is where every rank is tied: its CI is conservative there.
    - The IQM of a known distribution: three tasks N(-1, 1), N(0, 1), N(1, 1), a mixture symmetric about 0
      whose IQM is 0; the percentile interval of 30 values is a little narrow."""
    rng = np.random.default_rng(2025)
    sims, seeds, tasks, families = 300, 10, 3, 3
    p_cover = independent_cover = rank_cover = iqm_cover = 0
    for sim in range(sims):
        scores = 3.0 * rng.normal(size=(seeds, tasks, 1)) + rng.normal(size=(seeds, tasks, families))
        draws = ag.stratified_draws(seeds, tasks, 500, seed=sim)
        low, high = ag.probability_of_improvement_ci(scores, 0, draws)
        p_cover += int(((low[1:] <= 0.5) & (high[1:] >= 0.5)).sum())
        other = ag.stratified_draws(seeds, tasks, 500, seed=sims + sim)
        low, high = _independent_p_ci(scores, draws, other)
        independent_cover += int(((low[1:] <= 0.5) & (high[1:] >= 0.5)).sum())
        low, high = ag.mean_rank_ci(scores, draws)
        rank_cover += int(((low <= 2) & (high >= 2)).sum())
        sample = rng.normal(size=(seeds, tasks, 1)) + np.array([-1.0, 0.0, 1.0])[None, :, None]
        low, high = ag.iqm_ci(sample, draws)
        iqm_cover += int(low[0] <= 0 <= high[0])
    pairs = sims * (families - 1)
    assert 0.92 <= p_cover / pairs <= 0.99
    assert independent_cover / pairs > 0.99
    assert rank_cover / (sims * families) >= 0.95
    assert 0.88 <= iqm_cover / sims <= 0.98
