"""Importance per family: Optuna's fANOVA on that family's trials alone, its arguments' ranges made one
where they differ from trial to trial."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection

from bench.search.importance import N_TREES, by_family


def _trial(
    family: str, params: dict[str, object], dists: dict[str, object], value: float
) -> optuna.trial.FrozenTrial:
    space = {"scheduler": CategoricalDistribution((family,)), **dists}
    return optuna.trial.create_trial(params={"scheduler": family, **params}, distributions=space, value=value)  # type: ignore[arg-type]


def test_a_family_gets_optunas_own_importance_over_its_trials_only() -> None:
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    gamma = FloatDistribution(0.05, 0.9)
    step = IntDistribution(1, 10)
    mine = [
        _trial(
            "StepLR",
            {"lr": 10 ** (-4 + 3 * i / 11), "StepLR.gamma": 0.05 + 0.07 * i, "StepLR.step_size": 1 + i % 10},
            {"lr": lr, "StepLR.gamma": gamma, "StepLR.step_size": step},
            value=(i - 6) ** 2 / 10 + 0.01 * (i % 3),
        )
        for i in range(12)
    ]
    others = [_trial("constant", {"lr": 10 ** (-4 + i / 5)}, {"lr": lr}, value=float(i)) for i in range(4)]
    got = by_family(mine + others, StudyDirection.MINIMIZE)

    study = optuna.create_study()
    study.add_trials(
        optuna.trial.create_trial(
            params={k: v for k, v in t.params.items() if k != "scheduler"},
            distributions={k: d for k, d in t.distributions.items() if k != "scheduler"},
            value=t.value,
        )
        for t in mine
    )
    expected = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=N_TREES, seed=0)
    )
    assert got["StepLR"] == pytest.approx(dict(expected))
    assert set(got["constant"]) == {"lr"} and math.isclose(got["constant"]["lr"], 1.0)


def test_ranges_that_differ_by_trial_are_joined_and_too_few_trials_give_none() -> None:
    trials = [
        # eta_min's range depends on the base LR drawn with it: a different distribution in every trial.
        _trial(
            "CosineAnnealingLR",
            {"lr": 0.001 * (i + 1), "CosineAnnealingLR.eta_min": 1e-5 * i},
            {
                "lr": FloatDistribution(1e-4, 1e-1, log=True),
                "CosineAnnealingLR.eta_min": FloatDistribution(0.0, 1e-4 * (i + 1)),
            },
            value=0.1 * i,
        )
        for i in range(5)
    ]
    trials += [_trial("StepLR", {"lr": 0.01}, {"lr": FloatDistribution(1e-4, 1e-1, log=True)}, value=1.0)] * 2
    got = by_family(trials, StudyDirection.MINIMIZE)
    assert set(got) == {"CosineAnnealingLR"}  # StepLR: two trials, and nothing varied
    assert set(got["CosineAnnealingLR"]) == {"lr", "CosineAnnealingLR.eta_min"}
    assert math.isclose(sum(got["CosineAnnealingLR"].values()), 1.0)


def test_a_family_whose_trials_all_tied_has_no_importance() -> None:
    """Accuracy on small data ties often: fANOVA has no variance to explain, and the family is left out
    (Optuna's evaluator would raise)."""
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    tied = [_trial("StepLR", {"lr": 0.001 * (i + 1)}, {"lr": lr}, value=1.0) for i in range(4)]
    varied = [_trial("constant", {"lr": 0.001 * (i + 1)}, {"lr": lr}, value=float(i)) for i in range(4)]
    assert set(by_family(tied + varied, StudyDirection.MAXIMIZE)) == {"constant"}
