"""A study run: resuming, refilling populations, progress, what it stores, and how it stops on an error."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from bench import config, schedules
from bench.cli.commands import parse_value
from bench.cli.parser import run as main
from bench.config import Locations
from bench.search import load_trials, open_storage, run_study
from bench.search import round as round_module
from bench.search.progress import Progress
from bench.tracking.writer import Writer
from bench.train import population

from helpers import SMOKE, mlflow_runs, write_study


def test_a_trial_run_names_its_params_as_the_leaderboard_does_and_none_as_a_metric(
    tiny_study: tuple[Path, Path],
) -> None:
    """DESIGN.md's names: no param of a search or confirmation run shares a name with one of its metrics
    (the base LR is ``base_lr`` beside the ``lr`` curve), and the schedule's arguments are
    ``<family>.<arg>``, leaderboard.csv's column names: every argument it was built with (derived and fixed
    ones too), a searched one with the value in the trial's row."""
    _, out = tiny_study
    board = pd.read_csv(out / "tiny" / "leaderboard.csv").set_index("mlflow_run_id")
    runs = [r for r in mlflow_runs(out, "tiny") if "lrbench.stage" in r.data.tags]
    assert Counter(r.data.tags["lrbench.stage"] for r in runs) == {"search": 4, "confirm": 4}
    for run in runs:
        params, metrics, name = run.data.params, set(run.data.metrics), run.info.run_name
        assert {"lr", "train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy"} <= metrics
        assert not set(params) & metrics, name
        family = params["scheduler"]
        args = {k for k in params if "." in k}
        assert args == {f"{family}.{arg}" for arg in schedules.SCHEDULES[family].args}, name
        columns = {c for c in board.columns if c.startswith(f"{family}.")}
        assert columns and columns <= args, (name, columns)
        if run.data.tags["lrbench.stage"] == "search":
            row = board.loc[run.info.run_id]
            assert float(params["base_lr"]) == pytest.approx(row["base_lr"])
            for column in columns:
                value = parse_value(params[column])
                assert value == (row[column] if isinstance(value, str) else pytest.approx(row[column]))


@pytest.mark.slow
def test_rerun_resumes_to_the_asked_total(smoke_run: Path) -> None:
    loc = Locations.resolve(config.load(SMOKE), output=str(smoke_run))
    first = load_trials(config.load(SMOKE), loc).trials
    assert main(["study", str(SMOKE), "--output", str(smoke_run), "--n-trials", "8"]) == 0
    after = load_trials(config.load(SMOKE), loc).trials
    assert len(after) == 8 and after[:6] == first
    assert {r.number: r.params for r in after[6:]} != {r.number: r.params for r in first[:2]}
    assert main(["study", str(SMOKE), "--output", str(smoke_run), "--n-trials", "8"]) == 0
    assert len(load_trials(config.load(SMOKE), loc).trials) == 8  # nothing left to run


@pytest.mark.slow
def test_changed_definition_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = write_study(tmp_path, optuna__n_trials=1)
    assert main(["study", str(study), "--output", str(tmp_path / "out")]) == 0
    changed = write_study(tmp_path, optuna__n_trials=1, training__epochs=3)
    capsys.readouterr()
    assert main(["study", str(changed), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "training.epochs: 4 -> 3" in err[-1] and "new name" in err[-1]


@pytest.mark.slow
def test_diverged_trial_is_pruned_with_its_reason(tmp_path: Path) -> None:
    study = write_study(
        tmp_path, training__lr=1.0e4, training__optimizer="sgd", schedulers=["constant"], optuna__n_trials=2
    )
    assert main(["study", str(study), "--output", str(tmp_path)]) == 0
    board = pd.read_csv(tmp_path / "smoke" / "leaderboard.csv")
    assert (board["state"] == "PRUNED").all()
    assert board["failure"].str.startswith("diverged: non-finite loss at step").all()
    assert board["value"].isna().all()


def test_progress_lines_give_the_best_value_as_the_trial_value(capsys: pytest.CaptureFixture[str]) -> None:
    """Off a terminal (logs, CI) a line per trial; its best value has the trial value's four decimals."""
    progress = Progress(total=3, done=0, name="x")
    progress.update("trial 0 StepLR: FAIL boom", None, counted=False)
    progress.update("trial 1 StepLR: COMPLETE val_loss=0.0600", 0.06, counted=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[0/3] trial 0 StepLR: FAIL boom  best -  ")
    assert lines[1].startswith("[1/3] trial 1 StepLR: COMPLETE val_loss=0.0600  best 0.0600  ")


def _runs_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer creates trials' runs before training goes on: a trial is told (it needs its run) in the
    epoch it ends, whatever the writer's speed."""
    start_trials = Writer.start_trials

    def at_once(self: Writer, *args: Any) -> Any:
        future = start_trials(self, *args)
        future.result()
        return future

    monkeypatch.setattr(Writer, "start_trials", at_once)


@pytest.mark.slow
def test_new_trials_take_the_places_of_trials_that_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The population refills: a trial that ends (here: diverges at once) frees its place for a new trial,
    asked then, with the results told so far; one population trains the whole study, and the study stops
    at n_trials exactly."""
    _runs_at_once(monkeypatch)
    built: list[int] = []
    real_init = population.Population.__init__

    def counting_init(self: Any, task: Any, cfgs: Any, *args: Any) -> None:
        built.append(len(cfgs))
        real_init(self, task, cfgs, *args)

    monkeypatch.setattr(population.Population, "__init__", counting_init)
    path = write_study(
        tmp_path,
        training__optimizer="sgd",
        training__lr={"low": 1.0e-3, "high": 1.0e4},
        training__population_size=3,
        training__epochs=3,
        schedulers=["constant"],
        optuna__n_trials=10,
    )
    assert main(["study", str(path), "--output", str(tmp_path)]) == 0
    trials = optuna.load_study(
        study_name="smoke", storage=open_storage(str(tmp_path / "optuna.journal"))
    ).trials
    assert len(trials) == 10 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert any(t.user_attrs.get("failure", "").startswith("diverged") for t in trials)
    assert built == [3]  # one population of three places for all ten trials
    first_told = min(t.datetime_complete for t in trials if t.datetime_complete)
    assert sum(t.datetime_start > first_told for t in trials) >= 7  # asked after results came in


class _SlowRuns:
    """A run-id future that says it is not done until it is waited for: a writer always behind."""

    def __init__(self, future: Any):
        self.future = future

    def done(self) -> bool:
        return False

    def result(self) -> Any:
        return self.future.result()


@pytest.mark.slow
def test_a_refilled_study_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same study on new outputs samples and trains the same trials whether the writer creates runs at
    once or is always behind: trials that end are told before new ones are asked."""
    path = write_study(
        tmp_path,
        training__optimizer="adam",
        training__lr={"low": 1.0e-3, "high": 1.0},
        training__population_size=3,
        training__epochs=6,
        schedulers=["constant", "StepLR", "OneCycleLR"],
        optuna__sampler="tpe",
        optuna__pruner="median",
        optuna__n_trials=12,
    )
    start_trials = Writer.start_trials
    seen = []
    for name in ("at-once", "behind"):
        if name == "at-once":
            _runs_at_once(monkeypatch)
        else:
            monkeypatch.setattr(Writer, "start_trials", lambda self, *a: _SlowRuns(start_trials(self, *a)))
        assert main(["study", str(path), "--output", str(tmp_path / name)]) == 0
        storage = open_storage(str(tmp_path / name / "optuna.journal"))
        trials = optuna.load_study(study_name="smoke", storage=storage).trials
        seen.append(
            [
                (t.number, t.state.name, t.params, t.value, t.user_attrs["result"]["epochs_run"])
                for t in trials
            ]
        )
    assert seen[0] == seen[1]
    assert (
        len(seen[0]) == 12 and sum(state != "COMPLETE" for _, state, *_ in seen[0]) >= 1
    )  # some ended early


@pytest.mark.slow
def test_progress_shows_each_trial_as_it_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A population's diverged members are told, and shown, while the rest of it still trains; the best
    shown is the best of the trials shown so far."""
    _runs_at_once(monkeypatch)
    training = [False]
    real = round_module.Round._train

    def spy(*args: Any, **kwargs: Any) -> Any:
        training[0] = True
        try:
            return real(*args, **kwargs)
        finally:
            training[0] = False

    monkeypatch.setattr(round_module.Round, "_train", spy)
    path = write_study(
        tmp_path,
        training__optimizer="sgd",
        training__lr={"low": 1.0e-3, "high": 1.0e4},
        schedulers=["constant"],
        optuna__n_trials=8,
        optuna__pruner="none",
        training__epochs=3,
    )
    shown: list[tuple[str, float | None, bool]] = []
    monkeypatch.setattr(
        Progress,
        "update",
        lambda self, line, best, counted: shown.append((line, best, training[0])),
    )
    cfg = config.load(path)
    outcome = run_study(cfg, Locations.resolve(cfg, output=str(tmp_path)))
    assert outcome.ran == 8 and len(shown) == 8
    diverged = [during for line, _, during in shown if "PRUNED diverged" in line]
    complete = [during for line, _, during in shown if "COMPLETE" in line]
    assert diverged and complete and all(diverged + complete)  # the last epoch's too: no wait for the batch
    values = [float(line.split("=")[1]) for line, _, _ in shown if "COMPLETE" in line]
    bests = [best for line, best, _ in shown if "COMPLETE" in line]
    assert bests == pytest.approx([max(values[: i + 1]) for i in range(len(values))], abs=1e-4)  # accuracy


@pytest.mark.slow
def test_report_every_stores_fewer_intermediate_values(tmp_path: Path) -> None:
    import optuna

    study = write_study(tmp_path, optuna__report_every=3, optuna__n_trials=2, training__epochs=7)
    assert main(["study", str(study), "--output", str(tmp_path)]) == 0
    storage = open_storage(str(tmp_path / "optuna.journal"))
    for trial in optuna.load_study(study_name="smoke", storage=storage).trials:
        assert sorted(trial.intermediate_values) == [2, 5, 6]  # every third epoch, and the last


@pytest.mark.slow
def test_each_trial_schedule_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study builds a trial's schedule when it starts the trial (bad arguments fail that trial alone)
    and the population trains on that one: not built a second time."""
    calls: list[str] = []
    real = population.proxy_schedule

    def counting(cfg: Any, steps_per_epoch: int) -> Any:
        calls.append(cfg.scheduler)
        return real(cfg, steps_per_epoch)

    # Where the study builds it when a trial starts, and where a population would build it again.
    monkeypatch.setattr(population, "proxy_schedule", counting)
    monkeypatch.setattr(population.engine, "proxy_schedule", counting)
    path = write_study(tmp_path, optuna__n_trials=4, training__epochs=2)
    assert main(["study", str(path), "--output", str(tmp_path)]) == 0
    assert len(calls) == 4


@pytest.mark.slow
def test_a_study_gives_torch_its_threads_back(tmp_path: Path) -> None:
    """On the CPU a study trains on one core fewer (its MLflow writer has the other); a caller in the same
    process gets its thread count back afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        study = write_study(tmp_path, optuna__n_trials=2, training__epochs=2)
        assert main(["study", str(study), "--output", str(tmp_path)]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["answering", "asked"])
def test_a_study_stopped_by_its_writer_leaves_no_trial_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The MLflow writer fails (here: it cannot create the trials' runs, and says so in its answer or when
    asked): the study stops with its error, and the trials it had asked are failed with the reason, none
    left RUNNING."""
    from concurrent.futures import Future

    def broken(self: Writer, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(RuntimeError("the writer is down"))
        if when == "asked":
            future.result()
        return future

    monkeypatch.setattr(Writer, "start_trials", broken)
    cfg = config.load(SMOKE)
    loc = Locations.resolve(cfg, output=str(tmp_path / "out"))
    with pytest.raises(RuntimeError, match="the writer is down"):
        run_study(cfg, loc)
    trials = optuna.load_study(study_name=cfg.name, storage=open_storage(loc.storage)).trials
    assert trials and all(t.state == optuna.trial.TrialState.FAIL for t in trials), [t.state for t in trials]
    assert {t.user_attrs["failure"] for t in trials} == {
        "the study stopped: RuntimeError: the writer is down"
    }


@pytest.mark.slow
def test_a_study_stopped_by_an_error_leaves_its_reports_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lrbench command exits without running exit handlers: a study that stops on an error writes the
    reports its journal still holds before it ends."""
    cfg = config.load(SMOKE)
    loc = Locations.resolve(cfg, output=str(tmp_path / "out"))
    real = round_module.Round._epoch
    reported: list[int] = []

    def epoch(self: Any, started: Any, metrics: Any) -> bool:
        if len(reported) == 5:
            raise SystemExit("stopped")
        reported.append(started.trial.number)
        return real(self, started, metrics)

    monkeypatch.setattr(round_module.Round, "_epoch", epoch)
    with pytest.raises(SystemExit):
        run_study(cfg, loc)
    assert Path(loc.storage).read_text().count('"intermediate_value"') == 5
