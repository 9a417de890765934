"""Crash at every write: a small study (a family's search in a study of its own, one trial, then its
confirmation on two seeds) is killed right after
each of its durable writes in turn (each Optuna journal write, spool file and MLflow request: bench.faults),
rerun, and checked: every family has exactly its trials, every cell its confirmation run, nothing RUNNING
in Optuna or MLflow, every finished trial linked to one closed run with its whole curves, and every other
trial run closed as not counted. ``make test`` kills at every point; ``make test-fast`` (``-m "not slow"``)
at a few spread over the study.

Each point starts from nothing but an empty MLflow store, copied (MLflow takes seconds to create its
tables, which is no write point of the study's)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from bench.faults import ENV
from bench.search import open_storage
from bench.tracking.curves import expand_curve

from helpers import LRBENCH, ROOT, mlflow_runs

FAMILIES = ["StepLR"]
N_TRIALS, SEEDS, EPOCHS = 1, 2, 2
STUDY = {
    "name": "crash",
    "task": {"dataset": "breast_cancer"},
    "training": {"optimizer": "adam", "lr": {"low": 1e-3, "high": 5e-2}, "epochs": EPOCHS, "batch_size": 64},
    "schedulers": {"StepLR": {"step_size": [1, 2]}},
    "objective": {"metric": "val_accuracy"},
    "optuna": {"sampler": "random", "pruner": "none", "n_trials": N_TRIALS, "seed": 0},
    "search": {"budget": "per_family"},
    "confirm": {"top_k": 1, "seeds": SEEDS},
}
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
FAST_POINTS = 4  # kill points tried by `make test-fast`
WORKERS = 3  # studies at once (each is two processes, which often wait on each other)


def _study(folder: Path, crash: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LRBENCH, "study", "study.yaml", "--output", "out"],
        cwd=folder,
        env=os.environ | {"PYTHONPATH": str(ROOT)} | (crash or {}),
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,  # bench.faults kills the study's process group
    )


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # MLflow creates its tables
    return path


def _crashed(folder: Path, at: int, store: Path) -> subprocess.CompletedProcess[str]:
    """The study from nothing, killed right after its ``at``-th durable write (0: never, counting them)."""
    (folder / "out").mkdir(parents=True)
    shutil.copy(store, folder / "out" / "mlflow.db")
    (folder / "study.yaml").write_text(yaml.safe_dump(STUDY))
    return _study(folder, {ENV: f"{at}:{folder / 'writes'}"})


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> tuple[Path, int]:
    """The study run to its end once, counting its write points: its folder, and how many."""
    folder = tmp_path_factory.mktemp("count")
    done = _crashed(folder, 0, empty_store)
    assert done.returncode == 0, done.stderr
    _check(folder / "out")  # the invariants hold without a crash too
    points = int((folder / "writes").read_text())
    print(f"\n{points} durable write points in the crash study")
    return folder, points


def _trials(out: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = open_storage(str(out / "optuna.journal"))
    names = [f"crash/{f}" for f in FAMILIES] + ["crash", "crash.confirm"]
    return {n: optuna.load_study(study_name=n, storage=storage).get_trials(deepcopy=False) for n in names}


def _check(out: Path) -> None:
    """The invariants of a study that ended well, after whatever crashes came before."""
    studies = _trials(out)
    every = [t for trials in studies.values() for t in trials]
    assert not [t.number for t in every if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for family in FAMILIES:
        assert sum(t.state in COUNTED for t in studies[f"crash/{family}"]) == N_TRIALS, family
    confirmed = [t for t in studies["crash.confirm"] if t.state in COUNTED]
    cells = [tuple(t.user_attrs["cell"].values()) for t in confirmed]
    assert len(cells) == len(set(cells)) == len(FAMILIES) * SEEDS, cells

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = {r.info.run_id: r for r in mlflow_runs(out, "crash")}
    assert not [r.info.run_name for r in runs.values() if r.info.status == "RUNNING"]
    parents = [r for r in runs.values() if r.data.tags.get("lrbench.role") == "study"]
    assert [r.info.status for r in parents] == ["FINISHED"]
    linked: dict[str, str] = {}
    for name, trials in studies.items():
        for t in trials:
            if t.state not in COUNTED:
                continue
            run_id = t.user_attrs["mlflow_run_id"]
            assert run_id not in linked, f"{name} trial {t.number} shares run {run_id} with {linked[run_id]}"
            linked[run_id] = f"{name} trial {t.number}"
            _check_run(client, runs[run_id], name, t)
    # One FINISHED run per ranked family under the parent (the latest ranking's: earlier ones deleted).
    ranked = [r for r in runs.values() if r.data.tags.get("lrbench.role") == "family"]
    assert sorted(r.data.tags["scheduler"] for r in ranked) == sorted(FAMILIES)
    assert {r.info.status for r in ranked} == {"FINISHED"}
    # Every other trial run is closed as not counted: none FINISHED, none counted twice.
    others = [
        r for r in runs.values() if r.info.run_id not in linked and r not in parents and r not in ranked
    ]
    assert not [r.info.run_name for r in others if r.info.status == "FINISHED"]
    confirm_csv = (out / "crash" / "confirm.csv").read_text().splitlines()
    assert len(confirm_csv) == 1 + len(FAMILIES) * SEEDS


def _check_run(client: MlflowClient, run: Any, study: str, t: optuna.trial.FrozenTrial) -> None:
    data = run.data
    assert run.info.status == "FINISHED"
    assert (data.tags["study"], data.tags["trial_number"]) == (study, str(t.number))
    assert data.tags["state"] == t.state.name
    result = t.user_attrs["result"]
    epochs = result["epochs_run"]
    assert data.metrics["val/accuracy"] == pytest.approx(result["final_val_accuracy"])
    for key in ("val/accuracy", "val/loss", "train/loss"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(epochs))
    lrs = expand_curve((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "lr"))
    steps = len(lrs) / epochs  # the optimizer steps of every epoch run
    assert steps == math.ceil(steps) and steps > 0


def test_a_crash_at_every_write_point_loses_nothing(
    counted: tuple[Path, int], empty_store: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    write_points = counted[1]
    points: list[int] = list(range(1, write_points + 1))
    if "not slow" in request.config.option.markexpr:  # make test-fast: a few points, spread
        points = sorted({round(1 + i * (write_points - 1) / (FAST_POINTS - 1)) for i in range(FAST_POINTS)})

    def one(at: int) -> str | None:
        folder = tmp_path / f"at-{at}"
        crashed = _crashed(folder, at, empty_store)
        if crashed.returncode != -9:
            return f"point {at}: the study was not killed ({crashed.returncode}): {crashed.stderr[-300:]}"
        again = _study(folder)
        if again.returncode != 0:
            return f"point {at}: the rerun failed ({again.returncode}): {again.stderr[-500:]}"
        try:
            _check(folder / "out")
        except (AssertionError, KeyError) as exc:
            return f"point {at}: {type(exc).__name__} {exc}".splitlines()[0]
        return None

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        failures = [f for f in pool.map(one, points) if f]
    print(f"killed at {len(points)} of {write_points} write points")
    assert not failures, "\n".join(failures)


def test_damaged_stores(counted: tuple[Path, int]) -> None:
    """The last record cut short (a crash or a full disk in mid-write): the next run cuts it off, keeps
    its bytes beside the journal, says so, and loses no finished trial. A record damaged inside the file:
    one line naming the file and line, exit status 2, the file unchanged. A journal whose MLflow store is
    gone: one line saying so, nothing created."""
    folder = counted[0]
    journal = folder / "out" / "optuna.journal"
    before = _trials(folder / "out")
    torn = b'{"op_code":5,"worker_id":"w","trial_id":3,"st'
    journal.write_bytes(journal.read_bytes() + torn)
    again = _study(folder)
    assert again.returncode == 0, again.stderr
    [kept] = (folder / "out").glob("optuna.journal.torn-*")
    assert kept.read_bytes() == torn and "its last record was cut short" in again.stderr
    after = _trials(folder / "out")
    for name, trials in before.items():
        assert [(t.number, t.state) for t in after[name]] == [(t.number, t.state) for t in trials]
    _check(folder / "out")

    repaired = journal.read_bytes()
    lines = repaired.split(b"\n")
    lines[6] = lines[6][:-5]
    damaged = b"\n".join(lines)
    journal.write_bytes(damaged)
    refused = _study(folder)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"lrbench: error: {journal}, line 7: no journal record (")
    assert refused.stderr.count("\n") == 1 and journal.read_bytes() == damaged

    journal.write_bytes(repaired)
    (folder / "out" / "mlflow.db").rename(folder / "mlflow.db.away")
    refused = _study(folder)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "holds trials, but the MLflow store beside it" in refused.stderr
    assert not (folder / "out" / "mlflow.db").exists()
