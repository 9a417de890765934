"""The confirmation stage and the ranking it gives: a null pair ties, a planted difference is found, the
same study gives the same files, `lrbench export` rebuilds them, and the runs sit in MLflow as the
confirmation's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from bench import config
from bench.search.confirm import CELL, cells_left
from bench.search.telling import RESULT

from helpers import SMOKE, lrbench, mlflow_runs, write_study

RANKING_FILES = ("families.csv", "confirm.csv", "pairwise.csv", "budget.csv")


def _null_and_planted(tmp_path: Path) -> Path:
    """constant and StepLR with gamma 1.0 train the same curve (a null pair); ExponentialLR halving the LR
    every epoch barely trains (a planted difference)."""
    return write_study(
        tmp_path,
        name="planted",
        training={"optimizer": "adam", "lr": 1.0e-3, "epochs": 12, "batch_size": 64},
        schedulers={
            "constant": {},
            "StepLR": {"gamma": 1.0, "step_size": 3},
            "ExponentialLR": {"gamma": 0.5},
        },
        objective={"metric": "val_loss"},
        optuna={"sampler": "grid", "pruner": "none", "n_trials": 3, "seed": 0},
        confirm={"top_k": 1, "seeds": 10, "resplit": True},
    )


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The study run twice, each into an output of its own."""
    tmp = tmp_path_factory.mktemp("confirm")
    study = _null_and_planted(tmp)
    outs = []
    for k in (1, 2):
        out = tmp / f"out{k}"
        done = lrbench("study", study, "--output", out)
        assert done.returncode == 0, done.stderr
        outs.append(out)
    return study, outs[0], outs[1]


def _families(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "planted" / "families.csv").set_index("family")


@pytest.mark.slow
def test_a_null_pair_ties_and_a_planted_difference_is_found(twice: tuple[Path, Path, Path]) -> None:
    fam = _families(twice[1])
    null = fam.loc[["constant", "StepLR"]]
    assert null["rank"].nunique() == 1 and null["tied_for_best"].all()
    assert null["ci_low"].max() <= null["ci_high"].min()  # the CIs overlap
    crippled = fam.loc["ExponentialLR"]
    assert crippled["rank"] == fam["rank"].max() and crippled["rank"] > null["rank"].max()
    assert not crippled["tied_for_best"]
    assert crippled["p_vs_best"] < 0.01
    assert (fam["seeds"] == 10).all() and (fam["status"] == "confirmed").all()
    confirm = pd.read_csv(twice[1] / "planted" / "confirm.csv")
    assert len(confirm) == 3 * 10 and confirm["chosen"].all()
    assert sorted(confirm["seed_index"].unique()) == list(range(10))


@pytest.mark.slow
def test_the_same_study_twice_gives_the_same_files(twice: tuple[Path, Path, Path]) -> None:
    _, one, two = twice
    for name in RANKING_FILES:
        assert (one / "planted" / name).read_bytes() == (two / "planted" / name).read_bytes(), name


@pytest.mark.slow
def test_export_rebuilds_the_ranking_without_training(twice: tuple[Path, Path, Path]) -> None:
    study, one, _ = twice
    before = {name: (one / "planted" / name).read_bytes() for name in RANKING_FILES}
    for name in RANKING_FILES:
        (one / "planted" / name).unlink()
    done = lrbench("export", study, "--output", one)
    assert done.returncode == 0, done.stderr
    assert "Best: " in done.stdout and "Ranking on 10 paired seeds" in done.stdout
    assert {name: (one / "planted" / name).read_bytes() for name in RANKING_FILES} == before


@pytest.mark.slow
def test_confirmation_runs_are_tagged_under_the_parent_and_none_is_left_running(
    twice: tuple[Path, Path, Path],
) -> None:
    runs = mlflow_runs(twice[1], experiment="planted")
    parent = [r for r in runs if r.data.tags.get("lrbench.role") == "study"]
    assert len(parent) == 1
    confirm = [r for r in runs if r.data.tags.get("lrbench.stage") == "confirm"]
    search = [r for r in runs if r.data.tags.get("lrbench.stage") == "search"]
    assert len(confirm) == 30 and len(search) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in confirm + search} == {parent[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params["seed"] for r in confirm} == {str(i) for i in range(10)}


def test_cells_left_counts_a_failed_or_missing_cell_and_not_a_diverged_one() -> None:
    """A study is complete (a suite marks its task done) only when every chosen cell has an ended run."""
    cfg = config.load(SMOKE)
    cfg = dataclasses.replace(cfg, confirm=dataclasses.replace(cfg.confirm, top_k=1, seeds=2))
    result = {"scheduler_args": json.dumps({}), "optimizer": "adam", "lr": 0.01}
    search = [  # one COMPLETE search trial per family, numbered 0 and 1 (a cell: family, config, seed)
        create_trial(
            state=TrialState.COMPLETE,
            value=0.9,
            params={"scheduler": family},
            distributions={"scheduler": CategoricalDistribution(["StepLR", "OneCycleLR"])},
            user_attrs={RESULT: result},
        )
        for family in ("StepLR", "OneCycleLR")
    ]
    for number, trial in enumerate(search):
        trial.number = number
    study = optuna.create_study(direction="maximize")

    def run(family: str, seed_index: int, state: TrialState) -> None:
        cell = {"family": family, "config": 0 if family == "StepLR" else 1, "seed_index": seed_index}
        value = 0.9 if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, value=value, user_attrs={CELL: cell}))

    assert cells_left(cfg, search, study) == 4
    run("StepLR", 0, TrialState.COMPLETE)
    run("StepLR", 1, TrialState.PRUNED)  # diverged: an ended run
    run("OneCycleLR", 0, TrialState.FAIL)
    assert cells_left(cfg, search, study) == 2  # OneCycleLR's seed 0 failed, its seed 1 never ran
    run("OneCycleLR", 0, TrialState.COMPLETE)
    run("OneCycleLR", 1, TrialState.COMPLETE)
    assert cells_left(cfg, search, study) == 0
