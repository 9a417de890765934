"""Several workers, and workers that die: places in the study's total, trials past it, two workers on one
study (journal, PostgreSQL), kill -9 and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bench import config
from bench.config import Locations
from bench.errors import UserError
from bench.search import OpenedStudy, load_trials, open_storage, run_study
from bench.search.workers import surplus

from helpers import (
    LRBENCH,
    ROOT,
    SMOKE,
    eventually,
    lrbench,
    mlflow_runs,
    records,
    two_workers,
    write_study,
)


def test_of_trials_asked_at_once_by_two_workers_those_past_the_total_are_surplus(tmp_path: Path) -> None:
    """Workers that ask at the same moment each find places free: the order in which the storage numbered
    the asks decides which trials are past the total, the same for both workers whatever the timing; a
    trial of a worker that died holds no place."""
    storage = open_storage(str(tmp_path / "optuna.journal"))
    a = optuna.create_study(study_name="s", storage=storage)
    b = optuna.load_study(study_name="s", storage=storage)
    for _ in range(2):
        a.tell(a.ask(), 1.0)  # trials 0 and 1
    script = "from bench.search.workers import worker_id; print(worker_id())"
    dead = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    b.ask().set_user_attr("worker", dead.stdout.strip())  # trial 2, RUNNING in a process that has ended
    t3, t4, t5, t6 = a.ask(), b.ask(), a.ask(), b.ask()  # a and b ask in turns
    assert (surplus(a, [t3, t5], 5), surplus(b, [t4, t6], 5)) == (set(), {6})
    assert (surplus(a, [t3, t5], 4), surplus(b, [t4, t6], 4)) == ({5}, {6})
    assert surplus(a, [], 4) == set()


@pytest.mark.slow
def test_a_trial_asked_past_the_total_is_not_trained_and_reports_leave_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker asks the study's last trial just before this one asks it too: this worker's trial is
    failed as surplus at once, with no training and no MLflow run, and is not counted as a failure; the
    leaderboard leaves it out."""
    cfg = config.load(write_study(tmp_path, training__population_size=1))
    loc = Locations.resolve(cfg, output=str(tmp_path / "out"))
    real = OpenedStudy.ask

    def ask(self: OpenedStudy, k: int, claims: dict[str, str]) -> list[optuna.Trial]:
        if len(self.study.trials) == 2:  # the last place: another worker takes it first
            optuna.load_study(study_name=cfg.name, storage=open_storage(loc.storage)).ask()
        return real(self, k, claims)

    monkeypatch.setattr(OpenedStudy, "ask", ask)
    told: list[int] = []
    outcome = run_study(cfg, loc, n_trials=3, on_trial=lambda t: told.append(t.number))
    assert (outcome.ran, told) == (2, [0, 1])
    trials = optuna.load_study(study_name=cfg.name, storage=open_storage(loc.storage)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "RUNNING", "FAIL"]
    assert "surplus" in trials[3].user_attrs and not trials[3].intermediate_values
    assert "mlflow_run_id" not in trials[3].user_attrs
    runs = [r for r in mlflow_runs(loc.root) if r.info.run_name.startswith("trial-")]
    assert sorted(r.data.tags["trial_number"] for r in runs) == ["0", "1"]
    assert [r.number for r in load_trials(cfg, loc).trials] == [0, 1, 2]


def _trained(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that are not surplus (asked for the last places by two workers at the same moment), after
    checking that those are failed, untrained."""
    past = [t for t in trials if "surplus" in t.user_attrs]
    assert all(t.state.name == "FAIL" and not t.intermediate_values for t in past)
    return [t for t in trials if t not in past]


@pytest.mark.slow
def test_two_workers_at_once_share_the_journal(tmp_path: Path) -> None:
    """Two `lrbench study` processes run one study at the same time, each holding its reports and reading
    the other's writes: together they reach the total, and every trial has each epoch's report, the last
    and the best matching its stored result (read back with Optuna's own backend)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out = tmp_path / "out"
    argv = [*LRBENCH, "study", str(SMOKE), "--output", str(out), "--n-trials", "40"]
    two_workers(argv)
    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    trials = optuna.load_study(study_name="smoke", storage=storage).trials
    trials = _trained(trials)
    assert len(trials) == 40 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    runs = {r.info.run_id: r for r in mlflow_runs(out)}
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    assert len([r for r in runs.values() if r.info.run_name.startswith("trial-")]) == 40
    # workers that start together tag every run, parents too, with the one uid the study keeps
    uid = optuna.load_study(study_name="smoke", storage=storage).user_attrs["study_uid"]
    assert {r.data.tags.get("lrbench.study_uid") for r in runs.values()} == {uid}
    # and share one parent run, the one the study keeps
    stored = optuna.load_study(study_name="smoke", storage=storage).user_attrs["mlflow_parent_run_id"]
    assert [r.info.run_id for r in runs.values() if r.data.tags.get("lrbench.role") == "study"] == [stored]
    children = {r.data.tags.get("mlflow.parentRunId") for r in runs.values() if r.info.run_id != stored}
    assert children == {stored}
    for t in trials:
        result = t.user_attrs["result"]
        assert sorted(t.intermediate_values) == [0, 1, 2, 3]
        assert t.intermediate_values[3] == result["final_val_accuracy"]
        assert max(t.intermediate_values.values()) == result["best_val_accuracy"]
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
        assert {"lr", "val/loss", "val/accuracy", "train/loss"} <= set(run.data.metrics)


@pytest.mark.slow
def test_two_workers_start_together_on_an_empty_postgresql_database(
    postgres_database: str, tmp_path: Path
) -> None:
    """The scale-out storage: two workers start one study at once on a new PostgreSQL database (both create
    Optuna's tables: PostgreSQL refused one of two creations at once before lrbench tried again), reach the
    total together and write every trial's run; `lrbench export` reads the study back from the database."""
    out = tmp_path / "out"
    argv = [*LRBENCH, "study", str(SMOKE), "--output", str(out), "--storage", postgres_database]
    two_workers([*argv, "--n-trials", "20"])
    trials = optuna.load_study(study_name="smoke", storage=postgres_database).trials
    trials = _trained(trials)
    assert len(trials) == 20 and {t.state.name for t in trials} == {"COMPLETE"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert all(sorted(t.intermediate_values) == [0, 1, 2, 3] for t in trials)
    runs = {r.info.run_id: r for r in mlflow_runs(out)}
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    assert all(runs[t.user_attrs["mlflow_run_id"]].info.status == "FINISHED" for t in trials)
    assert len([r for r in runs.values() if r.data.tags.get("lrbench.role") == "study"]) == 1
    export = lrbench("export", SMOKE, "--output", out, "--storage", postgres_database)
    assert export.returncode == 0, export.stderr
    board = pd.read_csv(out / "smoke" / "leaderboard.csv")
    assert sorted(board["number"]) == sorted(t.number for t in trials)


def _start_and_wait_for_a_running_trial(
    study: Path, out: Path, storage: str | None = None
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*LRBENCH, "study", str(study), "--output", str(out), *(["--storage", storage] if storage else [])],
        cwd=ROOT,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def running() -> bool:
        """A trial in the middle of training, with its own MLflow run (not only the run of a trial that
        ended, which the writer has yet to close), after at least one finished trial."""
        if not storage and not (out / "optuna.journal").exists():
            return False
        try:
            trials = records(study, out, storage)
        except UserError:  # the storage is there, the study's creation not yet in it
            return False
        numbers = {str(r.number) for r in trials if r.state == "RUNNING"}
        return sum(r.state == "COMPLETE" for r in trials) >= 1 and any(
            r.info.status == "RUNNING" and r.data.tags.get("trial_number") in numbers
            for r in mlflow_runs(out)
        )

    try:
        eventually(running, 120, "a trial running, with its own run", every=0.5)
    except AssertionError:
        proc.kill()
        raise
    return proc


def _slow_study(tmp_path: Path) -> Path:
    # Long enough trials (about three seconds each here) to be caught in the middle by a poll of the stores
    # (with 200 epochs, under a second: a trial seen running had sometimes ended by the kill).
    return write_study(tmp_path, training__epochs=800, training__batch_size=16, optuna__n_trials=4)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["postgresql"])
def test_kill_9_mid_trial_then_rerun_recovers(
    tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    """On a PostgreSQL storage (the embedded journal: tests/test_crash.py kills a study at every write)."""
    storage = request.getfixturevalue("postgres_database") if store == "postgresql" else None
    study, out = _slow_study(tmp_path), tmp_path / "out"
    proc = _start_and_wait_for_a_running_trial(study, out, storage)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    states = [(r.state, r.user_attrs) for r in records(study, out, storage)]
    assert any(s == "RUNNING" for s, _ in states)  # what the dead process left behind
    assert any(r.info.status == "RUNNING" for r in mlflow_runs(out))

    rerun = lrbench("study", study, "--output", out, *(["--storage", storage] if storage else []))
    assert rerun.returncode == 0, rerun.stderr
    assert "closed 1 trial(s) left RUNNING by a process that died" in rerun.stderr
    states = [(r.state, r.user_attrs) for r in records(study, out, storage)]
    assert sum(s in ("COMPLETE", "PRUNED") for s, _ in states) == 4
    failed = [a for s, a in states if s == "FAIL"]
    assert len(failed) == 1 and "worker process died" in failed[0]["failure"]
    runs = mlflow_runs(out)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    number = next(r.number for r in records(study, out, storage) if r.state == "FAIL")
    killed = [r for r in runs if r.data.tags.get("trial_number") == str(number)]
    assert len(killed) == 1 and killed[0].info.status == "KILLED"
    assert sum(r.info.status == "FINISHED" for r in runs) == 4 + 1  # four trials and the parent


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_ctrl_c_or_a_stop_signal_stops_cleanly_and_says_how_to_resume(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Ctrl-C, and what a scheduler, `docker stop` or systemd sends (SIGTERM): the same clean stop, with the
    shell's exit status for the signal (SIGHUP takes SIGTERM's path: tests/test_cli.py)."""
    study, out = _slow_study(tmp_path), tmp_path / "out"
    proc = _start_and_wait_for_a_running_trial(study, out)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 5  # the bound for a stop (0.7 to 1.0 s here)
    assert proc.returncode == 128 + sig
    assert not (out / "optuna.journal.lock").exists()  # Optuna's journal lock: none outlives the process
    assert "run the same command again to resume" in err and "Traceback" not in err
    states = [(r.state, r.user_attrs) for r in records(study, out)]
    assert "RUNNING" not in [s for s, _ in states]
    assert [a["failure"] for s, a in states if s == "FAIL"] == ["interrupted by the user"]
    runs = mlflow_runs(out)
    assert "RUNNING" not in [r.info.status for r in runs]
    parent = next(r for r in runs if r.info.run_name == "study smoke")
    assert parent.info.status == "KILLED"
    assert sum(r.info.status == "KILLED" for r in runs) == 2  # the interrupted trial and the parent
    if sig != signal.SIGINT:
        # Nothing left for the next run to reclaim, and no lock held: it goes on at once.
        rerun = lrbench("study", study, "--output", out)
        assert rerun.returncode == 0, rerun.stderr
        assert "left RUNNING" not in rerun.stderr
        assert sum(r.state in ("COMPLETE", "PRUNED") for r in records(study, out)) == 4


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT], ids=lambda s: s.name)
def test_a_second_signal_never_breaks_a_trial_from_its_run(tmp_path: Path, sig: signal.Signals) -> None:
    """Two Ctrl-Cs 0.2 s apart: every trial that ended keeps its run, and the rerun leaves nothing RUNNING
    (a second SIGTERM or SIGHUP is ignored: tests/test_cli.py)."""
    study, out = _slow_study(tmp_path), tmp_path / "out"
    proc = _start_and_wait_for_a_running_trial(study, out)
    proc.send_signal(sig)
    time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    rerun = lrbench("study", study, "--output", out)
    assert rerun.returncode == 0, rerun.stderr
    runs = {r.info.run_id: r for r in mlflow_runs(out)}
    assert "RUNNING" not in [r.info.status for r in runs.values()]
    counted = [r for r in records(study, out) if r.state in ("COMPLETE", "PRUNED")]
    assert len(counted) == 4
    for r in counted:
        run = runs[r.user_attrs["mlflow_run_id"]]
        assert (run.info.status, run.data.tags["trial_number"]) == ("FINISHED", str(r.number))


@pytest.mark.slow
def test_a_writer_process_that_dies_stops_the_study_with_one_line(tmp_path: Path) -> None:
    """The study's MLflow writer killed mid-study: one line and exit status 2 (not three chained
    tracebacks), and the rerun sends what was kept, closes what was left RUNNING and ends the study."""
    study, out = _slow_study(tmp_path), tmp_path / "out"
    proc = _start_and_wait_for_a_running_trial(study, out)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    [writer] = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    os.kill(writer, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "Warning" not in err
    [line] = [line for line in err.splitlines() if line.startswith("lrbench:")]
    assert line.startswith("lrbench: error: the study's MLflow writer process died (killed?)")
    rerun = lrbench("study", study, "--output", out)
    assert rerun.returncode == 0, rerun.stderr
    assert "RUNNING" not in [r.info.status for r in mlflow_runs(out)]
    states = [r.state for r in records(study, out)]
    assert "RUNNING" not in states and sum(s in ("COMPLETE", "PRUNED") for s in states) == 4
