"""The statistics of a suite: the same families, budget and confirmation on several tasks, each with its
own test metric, summarised across the tasks.

Per family: the IQM of its normalised scores with a stratified bootstrap CI, its mean rank with a CI, its
probability of improvement over the baseline with a CI (bench/analysis/aggregate.py), and the areas under
its performance profiles on the test metric and on time to target (bench/analysis/profiles.py).

A family that was not run on every task has no aggregate (they would compare it on other tasks than the
rest): its row has NaN there and a note naming the tasks it lacks. The best on a task, the normalisation's
anchors and the ranks are taken over the families run on every task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.analysis import aggregate as ag
from bench.analysis import profiles as pf
from bench.analysis.stats import N_BOOTSTRAP

# Each test metric a task may be ranked by, and whether higher is better.
METRICS: dict[str, bool] = {"test_accuracy": True, "test_loss": False, "test_rmse": False}

FAMILY_COLUMNS = [
    "family",
    "tasks",
    "iqm",
    "iqm_ci_low",
    "iqm_ci_high",
    "mean_rank",
    "rank_ci_low",
    "rank_ci_high",
    "p_improvement",
    "p_ci_low",
    "p_ci_high",
    "profile_area_score",
    "profile_area_time",
    "note",
]


@dataclass(frozen=True)
class TaskScores:
    """One task's results: each family's chosen configuration's test metric on the paired seeds, and its
    median epochs to reach the validation target."""

    task: str
    metric: str  # a key of METRICS: test_accuracy, test_loss or test_rmse
    higher_is_better: bool  # the metric's direction, as METRICS gives it (checked)
    scores: pd.DataFrame  # index: seed index (paired: the same for every family), columns: family
    epochs_to_target: pd.Series  # index: family (each of the scores' columns; others ignored); NaN: never

    def __post_init__(self) -> None:
        where = f"task {self.task!r}"
        if self.metric not in METRICS:
            raise ValueError(f"{where}: metric must be one of {sorted(METRICS)}, got {self.metric!r}")
        if self.higher_is_better != METRICS[self.metric]:
            raise ValueError(
                f"{where}: higher_is_better must be {METRICS[self.metric]} for {self.metric}, "
                f"got {self.higher_is_better}"
            )
        if self.scores.empty:
            raise ValueError(f"{where}: scores must have a column per family and a row per seed")
        if not self.scores.columns.is_unique:
            raise ValueError(f"{where}: a family appears twice in scores: {list(self.scores.columns)}")
        lacking = [f for f in self.scores.columns if f not in self.epochs_to_target.index]
        if lacking or not self.epochs_to_target.index.is_unique:
            raise ValueError(
                f"{where}: epochs_to_target needs one value per family of scores; lacking {lacking}, "
                f"index {list(self.epochs_to_target.index)}"
            )
        values = self.scores.to_numpy(dtype=float)
        missing = self.scores.columns[~np.isfinite(values).all(axis=0)]
        if len(missing):
            raise ValueError(
                f"{where}: {list(missing)} lack a finite test score on some seed; drop a family that has no "
                "score on every seed (it is then not run on this task)"
            )
        low, high = (0.0, 1.0) if self.metric == "test_accuracy" else (0.0, math.inf)
        if (values < low).any() or (values > high).any():
            raise ValueError(f"{where}: {self.metric} must lie in [{low}, {high}]")
        if (self.epochs(self.scores.columns) <= 0).any():
            raise ValueError(f"{where}: epochs_to_target must be above 0 (NaN for never)")

    def oriented(self, families: Sequence[str]) -> np.ndarray:
        """``(seeds, families)`` scores with higher better (a loss or RMSE negated)."""
        values = self.scores[list(families)].to_numpy(dtype=float)
        return values if self.higher_is_better else -values

    def cost(self, families: Sequence[str]) -> np.ndarray:
        """Per family, the profile's cost (lower is better): the mean error rate (1 - accuracy) over the
        seeds, or the mean loss or RMSE."""
        values = self.scores[list(families)].to_numpy(dtype=float)
        return np.asarray((1.0 - values if self.higher_is_better else values).mean(axis=0))

    def epochs(self, families: Sequence[str]) -> np.ndarray:
        """Per family, the median epochs to target; NaN: never reached."""
        return self.epochs_to_target.reindex(list(families)).to_numpy(dtype=float)


@dataclass(frozen=True)
class SuiteTables:
    families: pd.DataFrame  # one row per family (FAMILY_COLUMNS), best first by IQM
    profiles: pd.DataFrame  # long: kind (score | time), family, tau, fraction; profiles.csv
    ranks: pd.DataFrame  # tasks x families run on every task: the rank on each task (1 = best)


def _families(tasks: Sequence[TaskScores]) -> tuple[list[str], list[str]]:
    """Every family in order of first appearance, and those run on every task."""
    every = list(dict.fromkeys(str(f) for t in tasks for f in t.scores.columns))
    common = [f for f in every if all(f in t.scores.columns for t in tasks)]
    return every, common


def _check(tasks: Sequence[TaskScores], common: list[str], baseline: str, reps: int) -> int:
    if not tasks:
        raise ValueError("a suite needs at least one task")
    if reps < 1:
        raise ValueError(f"reps (bootstrap replicates) must be 1 or more, got {reps}")
    names = [t.task for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    seeds = {t.task: len(t.scores) for t in tasks}
    if len(set(seeds.values())) != 1:
        raise ValueError(f"every task needs the same number of seeds (a [seeds, tasks] matrix), got {seeds}")
    if baseline not in common:
        raise ValueError(f"the baseline {baseline!r} must be run on every task; run on all: {common}")
    return next(iter(seeds.values()))


def suite_tables(
    tasks: Sequence[TaskScores],
    baseline: str = "constant",  # bench.schedules.BASELINE (analysis imports nothing of lrbench)
    taus: Sequence[float] | np.ndarray = pf.TAUS,
    seed: int = 0,
    reps: int = N_BOOTSTRAP,
) -> SuiteTables:
    """The suite's tables: per family the aggregates with their 95 % CIs (``reps`` stratified bootstrap
    replicates drawn from ``seed``) and the profiles' areas over ``taus``; the profiles; the ranks per task.
    The same inputs and seed give the same tables."""
    every, common = _families(tasks)
    n_seeds = _check(tasks, common, baseline, reps)
    names = [t.task for t in tasks]

    scores = np.stack([t.oriented(common) for t in tasks], axis=1)  # (seeds, tasks, families)
    base = common.index(baseline)
    draws = ag.stratified_draws(n_seeds, len(tasks), reps, seed)
    normalised = ag.normalise(scores, base)
    iqm_low, iqm_high = ag.iqm_ci(normalised, draws)
    rank_low, rank_high = ag.mean_rank_ci(scores, draws)
    p_low, p_high = ag.probability_of_improvement_ci(scores, base, draws)

    costs = {
        "score": pd.DataFrame([t.cost(common) for t in tasks], index=names, columns=common),
        "time": pd.DataFrame([t.epochs(common) for t in tasks], index=names, columns=common),
    }
    profiles = {kind: pf.performance_profile(pf.cost_ratios(c), taus) for kind, c in costs.items()}
    areas = {kind: pf.profile_area(p) for kind, p in profiles.items()}

    rows = pd.DataFrame(
        {
            "iqm": ag.iqm(normalised),
            "iqm_ci_low": iqm_low,
            "iqm_ci_high": iqm_high,
            "mean_rank": ag.mean_rank(scores),
            "rank_ci_low": rank_low,
            "rank_ci_high": rank_high,
            "p_improvement": ag.probability_of_improvement(scores, base),
            "p_ci_low": p_low,
            "p_ci_high": p_high,
            "profile_area_score": areas["score"].to_numpy(),
            "profile_area_time": areas["time"].to_numpy(),
        },
        index=common,
    ).reindex(every)
    lacking = {f: [t.task for t in tasks if f not in t.scores.columns] for f in every}
    rows["tasks"] = [len(tasks) - len(lacking[f]) for f in every]
    rows["note"] = [
        "not run on " + ", ".join(lacking[f]) + ": left out of the aggregates" if lacking[f] else ""
        for f in every
    ]
    families = rows.rename_axis("family").reset_index()
    families = families.sort_values(
        ["iqm", "mean_rank"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)
    ranks = pd.DataFrame(
        ag.task_ranks(scores.mean(axis=0)), index=pd.Index(names, name="task"), columns=common
    )
    return SuiteTables(families=families[FAMILY_COLUMNS], profiles=pf.profiles_long(profiles), ranks=ranks)
