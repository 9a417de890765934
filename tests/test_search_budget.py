"""Equal budgets (search.budget: per_family): every family gets its n_trials, in a study of its own whose
sampler and pruner see that family's trials alone, also after a kill -9 and a rerun (a confirmation
killed: tests/test_crash.py kills one at each of its writes)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bench import config
from bench.errors import UserError
from bench.search import open_storage

from helpers import LRBENCH, ROOT, eventually, lrbench, mlflow_runs, records, write_study

FAMILIES = {"constant": {}, "StepLR": {"step_size": [1, 3]}, "OneCycleLR": {}}


def _per_family(tmp_path: Path, **changes: object) -> Path:
    settings: dict[str, object] = {
        "schedulers": FAMILIES,
        "training__optimizer": "adam",
        "search": {"budget": "per_family"},
        "optuna": {"sampler": "tpe", "pruner": "median", "n_trials": 3, "seed": 0, "warmup_epochs": 1},
    }
    return write_study(tmp_path, **(settings | changes))


def _counted(study: Path, out: Path) -> dict[str, int]:
    done = [r for r in records(study, out) if r.state in ("COMPLETE", "PRUNED")]
    return pd.Series([r.params["scheduler"] for r in done]).value_counts().to_dict()


@pytest.mark.slow
def test_every_family_gets_its_budget_in_a_study_of_its_own(tmp_path: Path) -> None:
    study, out = _per_family(tmp_path), tmp_path / "out"
    done = lrbench("study", study, "--output", out)
    assert done.returncode == 0, done.stderr
    assert _counted(study, out) == dict.fromkeys(FAMILIES, 3)
    storage = open_storage(str(out / "optuna.journal"))
    for family in FAMILIES:
        # The family's sampler and pruner read this study's trials: that family's alone.
        trials = optuna.load_study(study_name=f"smoke/{family}", storage=storage).trials
        assert [t.params["scheduler"] for t in trials] == [family] * 3
        assert [t.number for t in trials] == [0, 1, 2]
    assert optuna.load_study(study_name="smoke", storage=storage).trials == []  # the study's attributes
    again = lrbench("study", study, "--output", out)  # nothing left to run
    assert again.returncode == 0, again.stderr
    assert _counted(study, out) == dict.fromkeys(FAMILIES, 3)
    leaderboard = pd.read_csv(out / "smoke" / "leaderboard.csv")
    assert leaderboard.groupby("scheduler").size().to_dict() == dict.fromkeys(FAMILIES, 3)


def test_the_pruner_waits_a_third_of_the_epochs_by_default(tmp_path: Path) -> None:
    cfg = config.load(write_study(tmp_path, training__epochs=50))
    assert cfg.warmup_epochs == 17
    cfg = config.load(write_study(tmp_path, training__epochs=50, optuna__warmup_epochs=4))
    assert cfg.warmup_epochs == 4


def test_an_unknown_budget_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"search\.budget must be one of per_family, joint, got 'equal'"):
        config.load(write_study(tmp_path, search={"budget": "equal"}))


def _popen(study: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LRBENCH, "study", str(study), "--output", str(out)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen[str], seen: object, what: str) -> None:
    try:
        eventually(seen, 120, what, every=0.5)  # type: ignore[arg-type]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_kill_9_per_family_then_rerun_keeps_every_budget(tmp_path: Path) -> None:
    study = _per_family(
        tmp_path,
        schedulers={"constant": {}, "StepLR": {}},
        training__epochs=800,
        training__batch_size=16,
        optuna={"sampler": "random", "pruner": "none", "n_trials": 2, "seed": 0},
    )
    out = tmp_path / "out"
    proc = _popen(study, out)

    def running() -> bool:
        try:
            trials = records(study, out)
        except UserError:
            return False
        return any(r.state == "RUNNING" for r in trials) and any(r.state == "COMPLETE" for r in trials)

    _kill_when(proc, running, "a trial running after one complete")
    rerun = lrbench("study", study, "--output", out)
    assert rerun.returncode == 0, rerun.stderr
    assert "left RUNNING by a process that died" in rerun.stderr
    assert _counted(study, out) == {"constant": 2, "StepLR": 2}
    assert not [r for r in records(study, out) if r.state == "RUNNING"]
    assert not [r for r in mlflow_runs(out) if r.info.status == "RUNNING"]
