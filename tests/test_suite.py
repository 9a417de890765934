"""Suites: a definition read into one study per task, ``lrbench suite`` run end to end (each task's files,
the suite's own), resumed after it ended and after a kill -9, and its page opened in headless Chromium."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from browser import visit
from test_report_html import _browser_or_skip

from bench.cli.parser import run as main
from bench.config.suite import SuiteConfig, load_suite
from bench.errors import UserError
from bench.search import load_trials
from bench.stored import StoredTrial

from helpers import LRBENCH, ROOT, eventually, lrbench, mlflow_runs

FAMILIES = ["constant", "StepLR", "OneCycleLR"]
TINY = {
    "name": "tiny",
    "protocol": {
        "schedulers": FAMILIES,
        "optuna": {"sampler": "random", "pruner": "none", "n_trials": 3, "seed": 0},
        "confirm": {"top_k": 1, "seeds": 3},
    },
    "defaults": {"training": {"epochs": 4, "batch_size": 64, "lr": {"low": 1.0e-3, "high": 5.0e-2}}},
    "tasks": {
        "bc": {"task": {"dataset": "breast_cancer"}},
        "wine": {"task": {"dataset": "wine"}, "model": {"hidden": [16]}},
        "dia": {"task": {"dataset": "diabetes"}, "training": {"epochs": 6}},
    },
}


def _write(folder: Path, **changes: object) -> Path:
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}, sort_keys=False))
    return path


def _trials(suite: SuiteConfig, out: Path, task: str) -> list[StoredTrial]:
    t = next(t for t in suite.tasks if t.name == task)
    return load_trials(t.study, t.locations(suite.root(str(out)), None, None)).trials


def _ended(suite: SuiteConfig, out: Path, task: str) -> list[tuple[str, str, float | None]]:
    """The task's search trials that ended, by their MLflow run (trial numbers repeat across families)."""
    return sorted(
        (str(r.user_attrs.get("mlflow_run_id")), r.state, r.value)
        for r in _trials(suite, out, task)
        if r.state in ("COMPLETE", "PRUNED")
    )


# --- the definition ------------------------------------------------------------------------------------


def test_a_task_is_a_study_of_the_protocol_with_its_own_model_and_training(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path))
    assert [t.name for t in suite.tasks] == ["bc", "wine", "dia"]
    bc, wine, dia = (t.study for t in suite.tasks)
    assert [bc.name, wine.name, dia.name] == ["tiny.bc", "tiny.wine", "tiny.dia"]
    assert list(bc.schedulers) == list(wine.schedulers) == FAMILIES
    assert bc.confirm == wine.confirm == dia.confirm and bc.confirm.seeds == 3
    assert wine.model.hidden == (16,) and bc.model.hidden != (16,)
    assert dia.training.epochs == 6 and bc.training.epochs == 4
    assert dia.training.batch_size == bc.training.batch_size == 64  # the defaults under the task's own
    loc = suite.tasks[0].locations(suite.root(str(tmp_path / "out")), None, None)
    assert loc.results_dir(bc) == tmp_path / "out" / "tiny" / "bc"
    assert loc.storage == str(tmp_path / "out" / "tiny" / "optuna.journal")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"tasks": {"bc": {"task": {"dataset": "breast_cancer"}, "optuna": {"n_trials": 9}}}},
            "tasks.bc.optuna: the protocol",
        ),
        ({"tasks": {}}, "a suite needs at least one task"),
        ({"tasks": {"bc": {"model": {"hidden": [8]}}}}, "tasks.bc.task is required"),
        ({"tasks": {"b c": {"task": {"dataset": "wine"}}}}, "a task's name is 1 to 64 letters"),
        ({"tasks": {"bc": {"task": {"dataset": "mnist"}}}}, "tasks.bc: task: unknown dataset 'mnist'"),
        ({"optuna": {"n_trials": 3}}, "optuna is not a known key (it belongs under protocol)"),
        ({"protocol": {"model": {}}}, "protocol.model is not a known key"),
        ({"defaults": {"training": {"epochs": "ten"}}}, "tasks.bc: training.epochs must be an integer"),
        (
            {"protocol": {**TINY["protocol"], "schedulers": ["StepLR", "OneCycleLR"]}},  # type: ignore[dict-item]
            "protocol.schedulers must include constant",
        ),
        (
            {"protocol": {**TINY["protocol"], "confirm": {"seeds": 0}}},  # type: ignore[dict-item]
            "protocol.confirm.seeds: a suite ranks",
        ),
        (
            {"protocol": {**TINY["protocol"], "confirm": {"seeds": 3, "target": 0.9}}},  # type: ignore[dict-item]
            "protocol.confirm.target: a target is in one task's units",
        ),
        (
            {"protocol": {**TINY["protocol"], "objective": {"metric": "val_loss", "direction": "maximize"}}},  # type: ignore[dict-item]
            "tasks.bc: objective.direction: lower val_loss is better",
        ),
        (
            {"tasks": {"spool": {"task": {"dataset": "wine"}}}},
            "tasks.spool: the name is the suite folder's own",
        ),
    ],
)
def test_a_bad_suite_is_one_line_before_anything_is_made(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(UserError) as caught:
        load_suite(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    done = lrbench("suite", path, "--output", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("command", "file", "message"),
    [
        (
            "study",
            "studies/suite.yaml",
            "a suite definition (it has tasks), not a study: run it with lrbench suite",
        ),
        (
            "suite",
            "studies/smoke.yaml",
            "a study definition (it has one task), not a suite: run it with lrbench study",
        ),
    ],
)
def test_a_suite_given_as_a_study_or_back_says_which_command(
    tmp_path: Path, command: str, file: str, message: str
) -> None:
    done = lrbench(command, ROOT / file, "--output", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


# --- a run, and what it writes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("suite")
    path, out = _write(folder), folder / "out"
    assert main(["suite", str(path), "--output", str(out)]) == 0
    return path, out


@pytest.mark.slow
def test_a_suite_writes_each_tasks_study_files_and_its_own(ran: tuple[Path, Path]) -> None:
    _, out = ran
    root = out / "tiny"
    for task in ("bc", "wine", "dia"):
        for name in ("leaderboard.csv", "families.csv", "confirm.csv", "report.html"):
            assert (root / task / name).is_file(), (task, name)
    assert "test_rmse" in pd.read_csv(root / "dia" / "confirm.csv").columns
    suite = pd.read_csv(root / "suite.csv")
    assert sorted(suite["family"]) == sorted(FAMILIES)
    assert {"iqm", "iqm_ci_low", "iqm_ci_high", "mean_rank", "p_improvement"} <= set(suite.columns)
    assert (suite["iqm_ci_low"] <= suite["iqm"]).all() and (suite["iqm"] <= suite["iqm_ci_high"]).all()
    profiles = pd.read_csv(root / "profiles.csv")
    assert set(profiles["family"]) == set(FAMILIES) and profiles["fraction"].between(0, 1).all()
    ranks = pd.read_csv(root / "ranks.csv").set_index("task")
    assert list(ranks.index) == ["bc", "wine", "dia"]
    # the regression task: rank 1 is the family of the lowest mean test RMSE, the highest RMSE ranks last
    confirm = pd.read_csv(root / "dia" / "confirm.csv")
    rmse = confirm[confirm["chosen"].astype(bool)].groupby("family")["test_rmse"].mean()
    assert ranks.loc["dia", rmse.idxmin()] == ranks.loc["dia"].min()
    assert ranks.loc["dia", rmse.idxmax()] == ranks.loc["dia"].max()
    page = (root / "suite.html").read_text()
    for task in ("bc", "wine", "dia"):
        assert f'href="{task}/report.html"' in page


@pytest.mark.slow
def test_a_suite_run_again_skips_the_tasks_that_ended(ran: tuple[Path, Path]) -> None:
    path, out = ran
    suite = load_suite(path)
    before = {t: _ended(suite, out, t) for t in ("bc", "wine", "dia")}
    runs = len(mlflow_runs(out / "tiny", "tiny.bc"))
    again = lrbench("suite", path, "--output", out)
    assert again.returncode == 0, again.stderr
    for i, task in enumerate(("bc", "wine", "dia"), start=1):
        assert f"task {i}/3 {task}: done" in again.stderr
    assert "study tiny." not in again.stderr  # no study was opened
    after = {t: _ended(suite, out, t) for t in ("bc", "wine", "dia")}
    assert after == before
    assert len(mlflow_runs(out / "tiny", "tiny.bc")) == runs
    assert "IQM" in again.stdout


@pytest.mark.slow
def test_the_suite_page_opens_offline_with_its_profiles_and_heatmap(
    ran: tuple[Path, Path], tmp_path: Path
) -> None:
    _browser_or_skip()
    _, out = ran
    seen = visit(
        out / "tiny" / "suite.html",
        tmp_path / "suite.png",
        count=("#fig-profiles .main-svg", "#fig-heatmap .main-svg", "#fig-aggregate .main-svg"),
        text=("#task-table tbody tr a", "#fig-heatmap .ytick text"),
    )
    assert seen.errors == [] and seen.requests == []
    assert all(seen.counts[s] >= 1 for s in seen.counts), seen.counts
    assert seen.texts["#task-table tbody tr a"] == ["report"] * 3
    assert sorted(seen.texts["#fig-heatmap .ytick text"]) == ["bc", "dia", "wine"]
    assert (tmp_path / "suite.png").stat().st_size > 10_000


def test_a_task_its_worker_did_not_finish_is_not_marked_done(tmp_path: Path) -> None:
    """The search stopped by its timeout: no confirmation, so the task is left for a later run."""
    protocol = {**TINY["protocol"], "optuna": {**TINY["protocol"]["optuna"], "timeout": 0.001}}  # type: ignore[dict-item]
    path = _write(tmp_path, protocol=protocol, tasks={"wine": TINY["tasks"]["wine"]})  # type: ignore[index]
    done = lrbench("suite", path, "--output", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "task wine not finished by this worker" in done.stderr
    assert not (tmp_path / "out" / "tiny" / "wine" / ".lrbench-done").exists()
    assert "No answer yet" in done.stdout and "wine (no confirmed ranking yet)" in done.stdout


@pytest.mark.slow
def test_two_workers_share_a_suite(tmp_path: Path) -> None:
    path = _write(tmp_path, tasks={k: TINY["tasks"][k] for k in ("bc", "dia")})  # type: ignore[index]
    out = tmp_path / "out"
    workers = [
        subprocess.Popen(
            [*LRBENCH, "suite", str(path), "--output", str(out)],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    ended = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[1][-2000:] for e in ended]
    suite = load_suite(path)
    for task in ("bc", "dia"):
        trials = _trials(suite, out, task)
        assert not [t for t in trials if t.state == "RUNNING"]
        # each family's budget spent once between them, not once per worker
        assert len(_ended(suite, out, task)) == len(FAMILIES) * 3
        assert (out / "tiny" / task / ".lrbench-done").is_file()
        assert not [r for r in mlflow_runs(out / "tiny", f"tiny.{task}") if r.info.status == "RUNNING"]
    families = pd.read_csv(out / "tiny" / "suite.csv")
    assert (families["tasks"] == 2).all() and sorted(families["family"]) == sorted(FAMILIES)


# --- resumed after kill -9 ------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_in_the_second_task_then_rerun_redoes_nothing_that_ended(tmp_path: Path) -> None:
    slow = {"epochs": 600, "batch_size": 16}
    path = _write(
        tmp_path,
        protocol={
            **TINY["protocol"],
            "schedulers": ["constant", "StepLR"],
            "confirm": {"top_k": 1, "seeds": 2},
        },  # type: ignore[dict-item]
        tasks={
            "fast": {"task": {"dataset": "breast_cancer"}},
            "slow": {"task": {"dataset": "breast_cancer"}, "training": slow},
        },
    )
    out = tmp_path / "out"
    suite = load_suite(path)
    proc = subprocess.Popen(
        [*LRBENCH, "suite", str(path), "--output", str(out)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def mid_second_task() -> bool:
        if not (out / "tiny" / "fast" / ".lrbench-done").is_file():
            return False
        try:
            trials = _trials(suite, out, "slow")
        except UserError:
            return False
        return any(r.state == "RUNNING" for r in trials) and any(r.state == "COMPLETE" for r in trials)

    try:
        eventually(mid_second_task, 180, "the second task training after one of its trials ended", every=0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    fast = _ended(suite, out, "fast")
    fast_runs = sorted(r.info.run_id for r in mlflow_runs(out / "tiny", "tiny.fast"))
    ended = _ended(suite, out, "slow")

    rerun = lrbench("suite", path, "--output", out)
    assert rerun.returncode == 0, rerun.stderr
    assert "task 1/2 fast: done" in rerun.stderr
    assert "left RUNNING by a process that died" in rerun.stderr
    assert _ended(suite, out, "fast") == fast
    assert sorted(r.info.run_id for r in mlflow_runs(out / "tiny", "tiny.fast")) == fast_runs
    slow_trials = _trials(suite, out, "slow")
    assert set(ended) <= set(_ended(suite, out, "slow"))  # what ended before the kill, kept as it was
    assert len(_ended(suite, out, "slow")) == 2 * 3  # two families, three trials each
    assert not [r for r in slow_trials if r.state == "RUNNING"]
    assert not [r for r in mlflow_runs(out / "tiny", "tiny.slow") if r.info.status == "RUNNING"]
    assert (out / "tiny" / "suite.csv").is_file()
