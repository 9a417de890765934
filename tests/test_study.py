"""Studies end to end: Optuna storage, MLflow runs (on a real tracking server), leaderboards, resume,
a killed worker, and every bad-definition case."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import optuna
import pandas as pd
import pytest
import yaml

from bench import config, perf, schedules
from bench.cli import main, parse_value
from bench.config import Locations
from bench.errors import UserError
from bench.study import load_trials, open_storage
from bench.tracking import expand_curve

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "studies" / "smoke.yaml"
LRBENCH = [sys.executable, "-m", "bench"]


def lrbench(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LRBENCH, *map(str, argv)], capture_output=True, text=True, cwd=ROOT, **kwargs)


def write_study(tmp_path: Path, **changes: Any) -> Path:
    raw = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            raw.setdefault(section, {})[sub] = value
        else:
            raw[section] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a real MLflow tracking server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with perf.mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


def rest(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.load(resp))


def test_a_worker_that_loses_the_race_for_the_experiment_takes_the_winners(mlflow_server: str) -> None:
    """Two workers on a tracking server that both found no experiment: the second one's create fails (the
    name is taken), and it uses the experiment the first created."""
    from bench.tracking import Tracker

    first = Tracker(mlflow_server, "raced")
    second = Tracker(mlflow_server, "raced")
    assert second._create_experiment("raced", mlflow_server) == first.experiment_id


def test_writes_to_a_tracking_server_go_several_at_once_in_order_with_their_errors(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a server, the writer makes up to REQUESTS writes at once (each waits at a barrier that opens
    only when all of them are in flight). Any other call waits for them first; a failed write is raised by
    the next call and keeps its spooled copy."""
    from mlflow.exceptions import MlflowException

    from bench import tracking
    from bench.tracking import Tracker

    server = Tracker(mlflow_server, "behind")
    assert server.requests == Tracker.REQUESTS > 1
    barrier = threading.Barrier(server.requests, timeout=30)
    for _ in range(server.requests):
        assert server.write_behind(barrier.wait)
    server.wait_behind()  # a BrokenBarrierError had the writes gone one at a time
    server.open_parent("behind", None, {}, "uid")
    run_ids = server.start_trials("behind", [(n, "StepLR") for n in range(3)])
    assert len(set(run_ids)) == 3
    spools = [tmp_path / f"{run_id}.pkl" for run_id in run_ids]
    for spool in spools:
        spool.write_bytes(b"spooled")
    old, tracking._WORKER = tracking._WORKER, server
    try:
        for n, (run_id, spool) in enumerate(zip(run_ids, spools, strict=True)):
            points = [("lr", 0.1 * step + n, step) for step in range(5)]
            assert tracking._call("finish_trial", (run_id, "COMPLETE", {}, points), str(spool)) is None
        for n, run_id in enumerate(run_ids):  # each read waits for the writes before it
            assert tracking._call("history", (run_id, "lr"), None) == [(s, 0.1 * s + n) for s in range(5)]
        assert not any(spool.exists() for spool in spools)
        # The summary figure's curves, read several at once, each under its own run's label.
        drawn: dict[str, Any] = {}
        monkeypatch.setattr("bench.report.summary_figure", lambda curves, *_: drawn.update(curves) or [])
        server.summary_figure({f"#{n}": run_id for n, run_id in enumerate(run_ids)}, "val/loss", "", tmp_path)
        assert drawn == {f"#{n}": ([(s, 0.1 * s + n) for s in range(5)], []) for n in range(3)}
        gate, written = threading.Event(), []
        server.write_behind(lambda: written.append(gate.wait(30)))
        threading.Timer(0.5, gate.set).start()
        tracking._call("history", (run_ids[0], "lr"), None)
        assert written == [True]  # the read waited for the write in flight
        spool = tmp_path / "lost.pkl"
        spool.write_bytes(b"spooled")
        tracking._call("finish_trial", ("0" * 32, "COMPLETE", {}, [("lr", 1.0, 0)]), str(spool))
        with pytest.raises(MlflowException):
            tracking._call("history", (run_ids[0], "lr"), None)
        assert spool.exists()  # for the next run of the study to replay
    finally:
        tracking._WORKER = old
        server.close()
    local = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "behind")
    assert not local.write_behind(barrier.wait)  # a database store: the caller writes, one at a time
    local.close()


def _lines_into(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_a_tracking_server_that_stops_answering_stops_the_study_in_a_line_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """The server dies mid-study: once MLflow's retries are spent (shortened here), the study stops with one
    line, no trial left RUNNING; run again on the server restarted, it writes what it had kept and goes on,
    and every trial that ended has its run, closed, with its curves."""
    study = write_study(tmp_path, optuna__n_trials=400)
    out_dir, home, port = tmp_path / "results", tmp_path / "server", free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    argv = [*LRBENCH, "study", str(study), "--output", str(out_dir), "--tracking-uri", url]
    with perf.mlflow_server(home, port, stop=signal.SIGKILL):  # the server dies
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_lines_into, args=(proc.stderr, lines), daemon=True)
        reader.start()
        seen = [lines.get(timeout=240) for _ in range(3)]  # the study's first line, then trials
        assert seen[-1].startswith("[2/400]"), seen
    try:
        assert proc.wait(timeout=240) == 2
    finally:
        proc.kill()
    reader.join(timeout=30)
    rest_of_it = "".join(lines.get() for _ in range(lines.qsize()))
    lines_out = [line for line in rest_of_it.splitlines() if not line.startswith("[")]
    notice = f"the tracking server {url} does not answer; MLflow retries"
    assert any(notice in line for line in lines_out), lines_out
    error = [line for line in lines_out if line.startswith("lrbench: error:")]
    assert len(error) == 1 and f"the tracking server {url} stopped answering" in error[0], lines_out
    assert "Traceback" not in rest_of_it
    cfg = config.load(study)
    loc = Locations.resolve(cfg, str(out_dir), None, url)
    stopped = load_trials(cfg, loc).records
    assert stopped and not [t for t in stopped if t["state"] == "RUNNING"]
    ended = len([t for t in stopped if t["state"] in ("COMPLETE", "PRUNED")])
    spool = out_dir / "spool" / cfg.name
    kept = len(list(spool.glob("*.pkl"))) if spool.is_dir() else 0
    assert (f"of {kept} trial(s) is kept under {spool}" in error[0]) == (kept > 0), error

    with perf.mlflow_server(home, port):
        again = lrbench("study", study, "--output", out_dir, "--tracking-uri", url, "--n-trials", ended + 2)
        assert again.returncode == 0, again.stderr
        assert (f"sent {kept} trial(s) to MLflow" in again.stderr) == (kept > 0), again.stderr
        records = load_trials(cfg, loc).records
        ended_trials = [t for t in records if t["state"] in ("COMPLETE", "PRUNED")]
        assert len(ended_trials) >= ended + 2
        for trial in ended_trials:
            run = rest(url, f"runs/get?run_id={trial['user_attrs']['mlflow_run_id']}")["run"]
            assert run["info"]["status"] == "FINISHED", trial["number"]
            keys = {m["key"] for m in run["data"]["metrics"]}
            assert {"lr", "val/loss", "val/accuracy", "train/loss"} <= keys, (trial["number"], keys)
    assert not list(spool.glob("*.pkl")) if spool.is_dir() else True


def test_smoke_study_against_a_real_tracking_server(mlflow_server: str, tmp_path: Path) -> None:
    out = lrbench("study", SMOKE, "--output", tmp_path, "--tracking-uri", mlflow_server)
    assert out.returncode == 0, out.stderr
    assert "View run" not in out.stdout  # MLflow's own line for each run that ends: two a trial
    exp = rest(mlflow_server, "experiments/get-by-name?experiment_name=smoke")["experiment"]
    runs = rest(
        mlflow_server, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
    )["runs"]
    parents = [r for r in runs if r["info"]["run_name"] == "study smoke"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1
    n_trials = yaml.safe_load(SMOKE.read_text())["optuna"]["n_trials"]
    assert len(children) == n_trials
    assert all(r["info"]["status"] != "RUNNING" for r in runs)
    parent_id = parents[0]["info"]["run_id"]
    for run in children:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert tags["mlflow.parentRunId"] == parent_id and tags["study"] == "smoke"
        assert run["info"]["run_name"] == f"trial-{int(tags['trial_number']):04d} {params['scheduler']}"
        assert tags["state"] in ("COMPLETE", "PRUNED") and tags["scheduler"] == params["scheduler"]
        for key in ("optimizer", "lr", "epochs", "batch_size", "seed", "dataset"):
            assert key in params

        def history(key: str, run: dict[str, Any] = run) -> list[tuple[int, float]]:
            """Every point of a metric, page by page. ``max_results`` is given as MLflow's client gives it
            (servers of MLflow 3.10 answer an empty page without it)."""
            q = (
                f"metrics/get-history?run_id={run['info']['run_id']}&metric_key={urllib.request.quote(key)}"
                "&max_results=1000"
            )
            points, page = [], rest(mlflow_server, q)
            while True:
                points += page.get("metrics", [])
                if not page.get("next_page_token"):
                    return sorted((int(m["step"]), float(m["value"])) for m in points)
                page = rest(mlflow_server, f"{q}&page_token={urllib.request.quote(page['next_page_token'])}")

        val_loss = [v for _, v in history("val/loss")]
        epochs = len(val_loss)
        assert epochs >= 1, tags
        assert [s for s, _ in history("val/accuracy")] == list(range(epochs))
        assert len(history("train/loss")) == epochs and len(history("test/accuracy")) == 1
        # The schedule rebuilt from the run's params alone (derived arguments included) ...
        args = {
            k.removeprefix("scheduler."): parse_value(v)
            for k, v in params.items()
            if k.startswith("scheduler.")
        }
        family = schedules.SCHEDULES[params["scheduler"]]
        assert set(args) == set(family.args)
        steps_per_epoch = -(-341 // int(params["batch_size"]))  # 341 training rows
        expected, _ = schedules.preview(
            params["scheduler"],
            args,
            lr=float(params["lr"]),
            epochs=int(params["epochs"]),
            steps_per_epoch=steps_per_epoch,
            val_losses=val_loss,
        )
        # ... equals the logged lr curve at every optimizer step.
        logged = expand_curve(history("lr"))
        assert len(logged) == epochs * steps_per_epoch
        assert logged == pytest.approx(expected[: len(logged)], rel=1e-12)


def test_ui_on_a_tracking_server_gives_its_address_and_starts_nothing(
    mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lrbench study ... --tracking-uri http://...` ends with `lrbench ui --study ... --tracking-uri ...`:
    the server serves the UI itself, so ui prints the address of the study's runs there. A server that is
    down is one line."""
    from bench.tracking import Tracker

    exp = Tracker(mlflow_server, "smoke").experiment_id  # the smoke study's experiment, made if need be
    assert main(["ui", "--study", str(SMOKE), "--tracking-uri", mlflow_server]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"{mlflow_server}/#/experiments/{exp}?workflowType=machine_learning"), out
    assert main(["ui", "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "does not answer" in capsys.readouterr().err


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("smoke")
    assert main(["study", str(SMOKE), "--output", str(out_dir)]) == 0
    return out_dir


LEADERBOARD_COLUMNS = {
    "number",
    "state",
    "scheduler",
    "optimizer",
    "lr",
    "seed",
    "value",
    "best_val_accuracy",
    "final_val_accuracy",
    "test_accuracy",
    "test_loss",
    "epochs_run",
    "seconds",
    "mlflow_run_id",
    "failure",
}
SCHEDULER_COLUMNS = {
    "scheduler",
    "trials",
    "complete",
    "pruned",
    "failed",
    "best_val_accuracy",
    "best_trial",
    "test_accuracy",
    "median_val_accuracy",
    "rank",
}


def test_leaderboards_load_and_export_reproduces_them(smoke_run: Path) -> None:
    board = pd.read_csv(smoke_run / "smoke" / "leaderboard.csv")
    table = pd.read_csv(smoke_run / "smoke" / "schedulers.csv")
    assert set(board.columns) >= LEADERBOARD_COLUMNS and set(table.columns) >= SCHEDULER_COLUMNS
    assert len(board) == 6 and board["number"].is_unique
    sampled = {c for c in board.columns if "." in c}
    assert sampled and all(c.split(".")[0] in schedules.SCHEDULES for c in sampled)
    assert board["mlflow_run_id"].str.len().eq(32).all()
    assert table["trials"].sum() == len(board) and table["rank"].min() == 1
    best = table.iloc[0]
    assert best["best_val_accuracy"] == board[board["scheduler"] == best["scheduler"]]["value"].max()
    # export rebuilds both from storage, without training
    before = {
        name: (smoke_run / "smoke" / name).read_bytes() for name in ("leaderboard.csv", "schedulers.csv")
    }
    for name in before:
        (smoke_run / "smoke" / name).unlink()
    assert main(["export", str(SMOKE), "--output", str(smoke_run)]) == 0
    for name, content in before.items():
        assert (smoke_run / "smoke" / name).read_bytes() == content


def test_summary_figure_leaves_out_runs_whose_curves_are_not_written_yet(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With several workers, one may draw the figure while a trial another worker told still has no curves
    in MLflow: the figure is drawn without it, and the output says so (here: one best run's metrics removed
    from a copy of the store)."""
    import shutil
    import sqlite3

    from bench.report import summary_figure

    assert summary_figure({"a (#1)": ([], [])}, "val_loss", tmp_path / "none.png") == ["a (#1)"]
    assert (tmp_path / "none.png").stat().st_size > 0

    out = tmp_path / "out"
    shutil.copytree(smoke_run, out)
    board = pd.read_csv(out / "smoke" / "schedulers.csv")
    leader = pd.read_csv(out / "smoke" / "leaderboard.csv")
    number = int(board["best_trial"].iloc[0])
    run_id = leader.loc[leader["number"] == number, "mlflow_run_id"].iloc[0]
    with sqlite3.connect(out / "mlflow.db") as db:
        db.execute("DELETE FROM metrics WHERE run_uuid = ?", (run_id,))
        db.execute("DELETE FROM latest_metrics WHERE run_uuid = ?", (run_id,))
    (out / "smoke" / "summary.png").unlink()
    capsys.readouterr()
    assert main(["export", str(SMOKE), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"(#{number}): no curves in MLflow yet" in printed and "summary.png leaves out" in printed
    assert (out / "smoke" / "summary.png").stat().st_size > 0


def test_export_reads_the_stored_study_without_torch(smoke_run: Path) -> None:
    """Exporting, like reading a study's definition, does not import torch (2 s and more here)."""
    board = smoke_run / "smoke" / "leaderboard.csv"
    content = board.read_bytes()
    board.unlink()
    code = f"""
import contextlib, io, sys
from bench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["export", {str(SMOKE)!r}, "--output", {str(smoke_run)!r}]) == 0
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert board.read_bytes() == content


def test_a_tracking_server_that_stops_answering_during_an_export_is_one_line(
    smoke_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracking server that answered lrbench's first check and then stops answering (here nothing
    listens on its port past the check) ends an export in one line, not in MLflow's traceback."""
    from bench import cli

    monkeypatch.setattr(cli, "_check_given_stores", lambda args: None)  # as if the server had answered it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["export", str(SMOKE), "--output", str(smoke_run), "--tracking-uri", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lrbench: error: the tracking server {url} stopped answering ([Errno 111] Connection refused); "
        "run the same command again once it answers"
    ], err


def test_workers_that_open_a_study_together_draw_different_points(tmp_path: Path) -> None:
    """Two workers open a new study before either asks (same sampler seed): the second to ask reseeds from
    its first trial's number, while a lone worker draws what it always drew."""
    from bench import study as study_module

    cfg = config.load(SMOKE)

    def first_point(study: Any) -> tuple[str, float]:
        (trial,) = study_module._ask(cfg, study, 1)
        spec = study_module.sample(trial, cfg, 6)
        return spec.scheduler, spec.lr

    alone = first_point(study_module.open_study(cfg, Locations.resolve(cfg, output=str(tmp_path / "alone"))))
    loc = Locations.resolve(cfg, output=str(tmp_path / "shared"))
    a, b = study_module.open_study(cfg, loc), study_module.open_study(cfg, loc)
    assert first_point(a) == alone  # the first to ask keeps the study's seed
    assert first_point(b) != alone


def test_a_study_keeps_one_uid_which_another_output_dir_does_not_share(tmp_path: Path) -> None:
    """The uid that tags a study's MLflow runs: stored by the worker that creates the study and read by
    every worker that opens it; a study of the same name in another output dir has its own; a study stored
    before lrbench kept one (a definition, no uid) gets one when opened, without waiting for a creator."""
    from bench import study as study_module

    cfg = config.load(SMOKE)
    loc = Locations.resolve(cfg, output=str(tmp_path / "one"))
    first = study_module.open_study(cfg, loc).user_attrs["study_uid"]
    assert study_module.open_study(cfg, loc).user_attrs["study_uid"] == first
    other = Locations.resolve(cfg, output=str(tmp_path / "two"))
    assert study_module.open_study(cfg, other).user_attrs["study_uid"] != first

    older = Locations.resolve(cfg, output=str(tmp_path / "older"))
    stored = optuna.create_study(storage=open_storage(older.storage), study_name=cfg.name)
    stored.set_user_attr("definition", study_module._canonical(cfg.comparable()))
    start = time.monotonic()
    uid = study_module.open_study(cfg, older).user_attrs["study_uid"]
    assert uid and uid != first and time.monotonic() - start < 5


def test_rerun_resumes_to_the_asked_total(smoke_run: Path) -> None:
    loc = Locations.resolve(config.load(SMOKE), output=str(smoke_run))
    first = load_trials(config.load(SMOKE), loc).records
    assert main(["study", str(SMOKE), "--output", str(smoke_run), "--n-trials", "8"]) == 0
    after = load_trials(config.load(SMOKE), loc).records
    assert len(after) == 8 and after[:6] == first
    assert {r["number"]: r["params"] for r in after[6:]} != {r["number"]: r["params"] for r in first[:2]}
    assert main(["study", str(SMOKE), "--output", str(smoke_run), "--n-trials", "8"]) == 0
    assert len(load_trials(config.load(SMOKE), loc).records) == 8  # nothing left to run


def test_changed_definition_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = write_study(tmp_path, optuna__n_trials=1)
    assert main(["study", str(study), "--output", str(tmp_path / "out")]) == 0
    changed = write_study(tmp_path, optuna__n_trials=1, training__epochs=3)
    capsys.readouterr()
    assert main(["study", str(changed), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "training.epochs: 4 -> 3" in err[-1] and "new name" in err[-1]


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
    from bench import study as study_module

    progress = study_module._Progress(total=3, done=0, name="x")
    progress.update("trial 0 StepLR: FAIL boom", None, counted=False)
    progress.update("trial 1 StepLR: COMPLETE val_loss=0.0600", 0.06, counted=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[0/3] trial 0 StepLR: FAIL boom  best -  ")
    assert lines[1].startswith("[1/3] trial 1 StepLR: COMPLETE val_loss=0.0600  best 0.0600  ")


def _runs_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer creates trials' runs before training goes on: a trial is told (it needs its run) in the
    epoch it ends, whatever the writer's speed."""
    from bench.tracking import AsyncTracker

    start_trials = AsyncTracker.start_trials

    def at_once(self: AsyncTracker, *args: Any) -> Any:
        future = start_trials(self, *args)
        future.result()
        return future

    monkeypatch.setattr(AsyncTracker, "start_trials", at_once)


def test_new_trials_take_the_places_of_trials_that_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The population refills: a trial that ends (here: diverges at once) frees its place for a new trial,
    asked then, with the results told so far; one population trains the whole study, and the study stops
    at n_trials exactly."""
    from bench import population

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


def test_a_refilled_study_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same study on new outputs samples and trains the same trials whether the writer creates runs at
    once or is always behind: trials that end are told before new ones are asked."""
    from bench.tracking import AsyncTracker

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
    start_trials = AsyncTracker.start_trials
    seen = []
    for name in ("at-once", "behind"):
        if name == "at-once":
            _runs_at_once(monkeypatch)
        else:
            monkeypatch.setattr(
                AsyncTracker, "start_trials", lambda self, *a: _SlowRuns(start_trials(self, *a))
            )
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


def test_progress_shows_each_trial_as_it_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A population's diverged members are told, and shown, while the rest of it still trains; the best
    shown is the best of the trials shown so far."""
    from bench import study as study_module

    _runs_at_once(monkeypatch)
    training = [False]
    real = study_module._train

    def spy(*args: Any, **kwargs: Any) -> Any:
        training[0] = True
        try:
            return real(*args, **kwargs)
        finally:
            training[0] = False

    monkeypatch.setattr(study_module, "_train", spy)
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
        study_module._Progress,
        "update",
        lambda self, line, best, counted: shown.append((line, best, training[0])),
    )
    cfg = config.load(path)
    outcome = study_module.run_study(cfg, Locations.resolve(cfg, output=str(tmp_path)))
    assert outcome.ran == 8 and len(shown) == 8
    diverged = [during for line, _, during in shown if "PRUNED diverged" in line]
    complete = [during for line, _, during in shown if "COMPLETE" in line]
    assert diverged and complete and all(diverged + complete)  # the last epoch's too: no wait for the batch
    values = [float(line.split("=")[1]) for line, _, _ in shown if "COMPLETE" in line]
    bests = [best for line, best, _ in shown if "COMPLETE" in line]
    assert bests == pytest.approx([max(values[: i + 1]) for i in range(len(values))], abs=1e-4)  # accuracy


# --- killed and interrupted workers ----------------------------------------------------------------------


def _optuna_states(study: Path, out: Path, storage: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [(r["state"], r["user_attrs"]) for r in _records(study, out, storage)]


def _records(study: Path, out: Path, storage: str | None = None) -> list[dict[str, Any]]:
    cfg = config.load(study)
    return load_trials(cfg, Locations.resolve(cfg, output=str(out), storage=storage)).records


def _mlflow_runs(out: Path) -> list[Any]:
    from mlflow import MlflowClient

    if not (out / "mlflow.db").exists():
        return []
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=1000))


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
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if storage or (out / "optuna.journal").exists():
            try:
                records = _records(study, out, storage)
            except UserError:  # the storage is there, the study's creation not yet in it
                continue
            # a trial in the middle of training, with its own MLflow run (not only the run of a trial that
            # ended, which the writer has yet to close), after at least one finished trial
            running = {str(r["number"]) for r in records if r["state"] == "RUNNING"}
            if sum(r["state"] == "COMPLETE" for r in records) >= 1 and any(
                r.info.status == "RUNNING" and r.data.tags.get("trial_number") in running
                for r in _mlflow_runs(out)
            ):
                time.sleep(0.3)
                return proc
    proc.kill()
    raise AssertionError("no trial was seen running")


def _slow_study(tmp_path: Path) -> Path:
    # Long enough trials (about three seconds each here) to be caught in the middle by a poll of the stores
    # (with 200 epochs, under a second: a trial seen running had sometimes ended by the kill).
    return write_study(tmp_path, training__epochs=800, training__batch_size=16, optuna__n_trials=4)


@pytest.mark.parametrize("store", ["journal", "postgresql"])
def test_kill_9_mid_trial_then_rerun_recovers(
    tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    """On the embedded journal and on a PostgreSQL storage."""
    storage = request.getfixturevalue("postgres_database") if store == "postgresql" else None
    study, out = _slow_study(tmp_path), tmp_path / "out"
    proc = _start_and_wait_for_a_running_trial(study, out, storage)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    states = _optuna_states(study, out, storage)
    assert any(s == "RUNNING" for s, _ in states)  # what the dead process left behind
    assert any(r.info.status == "RUNNING" for r in _mlflow_runs(out))

    rerun = lrbench("study", study, "--output", out, *(["--storage", storage] if storage else []))
    assert rerun.returncode == 0, rerun.stderr
    assert "closed 1 trial(s) left RUNNING by a process that died" in rerun.stderr
    states = _optuna_states(study, out, storage)
    assert sum(s in ("COMPLETE", "PRUNED") for s, _ in states) == 4
    failed = [a for s, a in states if s == "FAIL"]
    assert len(failed) == 1 and "worker process died" in failed[0]["failure"]
    runs = _mlflow_runs(out)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    number = next(r["number"] for r in _records(study, out, storage) if r["state"] == "FAIL")
    killed = [r for r in runs if r.data.tags.get("trial_number") == str(number)]
    assert len(killed) == 1 and killed[0].info.status == "KILLED"
    assert sum(r.info.status == "FINISHED" for r in runs) == 4 + 1  # four trials and the parent


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    study, out = _slow_study(tmp_path), tmp_path / "out"
    proc = _start_and_wait_for_a_running_trial(study, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "run the same command again to resume" in err and "Traceback" not in err
    states = _optuna_states(study, out)
    assert "RUNNING" not in [s for s, _ in states]
    assert [a["failure"] for s, a in states if s == "FAIL"] == ["interrupted by the user"]
    runs = _mlflow_runs(out)
    assert "RUNNING" not in [r.info.status for r in runs]
    parent = next(r for r in runs if r.info.run_name == "study smoke")
    assert parent.info.status == "KILLED"
    assert sum(r.info.status == "KILLED" for r in runs) == 2  # the interrupted trial and the parent


# --- bad definitions: exit 2, one line, nothing created ----------------------------------------------------


BAD = [
    ("not: [valid", "not valid YAML"),
    ("name: x\ntrainin: {}\n", "trainin is not a known key"),
    ("name: x\ntraining: {epochs: ten}\n", "training.epochs must be an integer, got 'ten'"),
    ("name: x\ntraining: {lrr: 0.1}\n", "training.lrr is not a known key"),
    ("name: x\nschedulers: [Cosine]\n", "schedulers.Cosine: unknown scheduler 'Cosine'"),
    (
        "name: x\nschedulers: {StepLR: {gama: [0.1, 0.5]}}\n",
        "schedulers.StepLR.gama: StepLR has no argument 'gama'",
    ),
    (
        "name: x\nschedulers: {StepLR: {gamma: [0.5, 0.1]}}\n",
        "schedulers.StepLR.gamma: low <= high must hold",
    ),
    ("name: x\ntraining: {lr: {low: 0.1, high: 0.01}}\n", "training.lr: low <= high must hold"),
    ("name: x\ntraining: {lr: {low: 0.1}}\n", "training.lr.high is required"),
    ("name: x\ntraining: {lr: {low: 0.1, hi: 2}}\n", "training.lr.hi is not a known key"),
    ("name: x\ntraining: {lr: [0.1, x]}\n", "training.lr[1] must be a number, got 'x'"),
    ("name: x\ntraining: {lr: 0}\n", "training.lr must be > 0"),
    ("name: x\ntraining: {lr: -0.1}\n", "training.lr must be > 0"),
    ("name: x\ntask: {dataset: mnist}\n", "task: unknown dataset 'mnist'"),
    ("name: x\ntask: {csv: missing.csv, target: y}\n", "task: data file not found"),
    ("name: x\noptuna: {sampler: bayes}\n", "optuna.sampler must be one of tpe, random"),
    ("name: x\noptuna: {pruner: asha}\n", "optuna.pruner must be one of none, median"),
    ("name: x\nobjective: {metric: f1}\n", "objective.metric must be one of val_accuracy, val_loss"),
    ("- a list\n", "a study definition is a YAML mapping"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_definition_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "results"
    assert main(["study", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize(
    ("flag", "uri", "message"),
    [
        # psycopg2 is not installed here; were it installed, nothing listens on the port
        (
            "--storage",
            "postgresql+psycopg2://user:secret@127.0.0.1:{port}/db",
            "storage postgresql+psycopg2://user:***@",
        ),
        (
            "--storage",
            "sqlite:///{tmp}/no/such/folder/optuna.db",
            "cannot connect (unable to open database file)",
        ),
        ("--tracking-uri", "http://user:secret@127.0.0.1:{port}", "does not answer"),
        (
            "--tracking-uri",
            "postgresql://user:secret@127.0.0.1:{port}/mlflow",
            "tracking store postgresql://user:***@",
        ),
    ],
)
def test_stores_given_on_the_command_line_are_checked_before_anything_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, uri: str, message: str
) -> None:
    """A storage without its driver, a database that cannot be opened, a tracking server that is down: one
    line, exit status 2, at once (MLflow's client would retry a server that is down for minutes), nothing
    created, and no password printed."""
    out = tmp_path / "results"
    given = uri.format(port=free_port(), tmp=tmp_path)
    started = time.monotonic()
    assert main(["study", str(SMOKE), "--output", str(out), flag, given]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("when", ["answering", "asked"])
def test_a_study_stopped_by_its_writer_leaves_no_trial_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The MLflow writer fails (here: it cannot create the trials' runs, and says so in its answer or when
    asked): the study stops with its error, and the trials it had asked are failed with the reason, none
    left RUNNING."""
    from concurrent.futures import Future

    from bench import study as study_module
    from bench.tracking import AsyncTracker

    def broken(self: AsyncTracker, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(RuntimeError("the writer is down"))
        if when == "asked":
            future.result()
        return future

    monkeypatch.setattr(AsyncTracker, "start_trials", broken)
    cfg = config.load(SMOKE)
    loc = Locations.resolve(cfg, output=str(tmp_path / "out"))
    with pytest.raises(RuntimeError, match="the writer is down"):
        study_module.run_study(cfg, loc)
    trials = optuna.load_study(study_name=cfg.name, storage=open_storage(loc.storage)).trials
    assert trials and all(t.state == optuna.trial.TrialState.FAIL for t in trials), [t.state for t in trials]
    assert {t.user_attrs["failure"] for t in trials} == {
        "the study stopped: RuntimeError: the writer is down"
    }


def test_missing_study_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["study", str(tmp_path / "nope.yaml")]) == 2
    assert "study file not found" in capsys.readouterr().err


def test_shipped_studies_are_valid() -> None:
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        cfg = config.load(path)
        assert cfg.name == path.stem
    default = config.load(ROOT / "studies" / "breast_cancer.yaml")
    assert set(default.schedulers) == set(schedules.SCHEDULES)
    assert config.load(ROOT / "studies" / "digits.yaml").task.dataset == "digits"


def test_report_every_stores_fewer_intermediate_values(tmp_path: Path) -> None:
    import optuna

    study = write_study(tmp_path, optuna__report_every=3, optuna__n_trials=2, training__epochs=7)
    assert main(["study", str(study), "--output", str(tmp_path)]) == 0
    storage = open_storage(str(tmp_path / "optuna.journal"))
    for trial in optuna.load_study(study_name="smoke", storage=storage).trials:
        assert sorted(trial.intermediate_values) == [2, 5, 6]  # every third epoch, and the last


def test_each_trial_schedule_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study builds a trial's schedule when it starts the trial (bad arguments fail that trial alone)
    and the population trains on that one: not built a second time."""
    from bench import population

    calls: list[str] = []
    real = population.proxy_schedule

    def counting(cfg: Any, steps_per_epoch: int) -> Any:
        calls.append(cfg.scheduler)
        return real(cfg, steps_per_epoch)

    monkeypatch.setattr(population, "proxy_schedule", counting)  # the study looks it up when it trains
    path = write_study(tmp_path, optuna__n_trials=4, training__epochs=2)
    assert main(["study", str(path), "--output", str(tmp_path)]) == 0
    assert len(calls) == 4


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


def test_the_command_pauses_the_garbage_collector_for_start_up_alone(tmp_path: Path) -> None:
    """`lrbench study` runs start-up (the imports) without the collector, and its trials with it, what
    start-up loaded frozen; a study that stops before its trials gives it back too. Run in a child: the
    command's path, and a freeze that should not reach the test process."""
    study = write_study(tmp_path, optuna__n_trials=1, training__epochs=2)
    code = f"""
import gc, json
import bench.study
from bench.entry import _main
seen = []
run = bench.study._run
def spy(*args, **kwargs):
    seen.append([gc.isenabled(), gc.get_freeze_count() > 0])
    return run(*args, **kwargs)
bench.study._run = spy
ok = _main(["study", {str(study)!r}, "--output", {str(tmp_path / "out")!r}], command=True)
after_ok = gc.isenabled()
bad = _main(["study", {str(tmp_path / "missing.yaml")!r}], command=True)
print(json.dumps([seen, ok, after_ok, bad, gc.isenabled()]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    seen, ok, after_ok, bad, after_bad = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == [[True, True]] and ok == 0 and after_ok
    assert bad == 2 and after_bad


def test_journal_file_skips_fsync_for_reports_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-epoch reports are written without an fsync, every other write with Optuna's own; the file is
    Optuna's format: its own backend reads back the same trials."""
    import os

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    path = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="j", storage=open_storage(str(path)))
    trial = study.ask()
    trial.set_user_attr("worker", "me")
    before = len(synced)
    for epoch in range(5):
        trial.report(1.0 / (epoch + 1), epoch)
    assert len(synced) == before  # reports alone: no fsync
    study.tell(trial, 0.2)
    assert len(synced) == before + 1  # the tell: fsynced, and everything before it with it
    other = optuna.load_study(study_name="j", storage=JournalStorage(JournalFileBackend(str(path))))
    (got,) = other.trials
    assert got.intermediate_values == {e: 1.0 / (e + 1) for e in range(5)}
    assert got.value == 0.2 and got.user_attrs == {"worker": "me"}


def test_journal_file_holds_reports_until_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports wait in memory for the process's next other write (then go first, in order), or for
    FLUSH_AFTER; the trial's own pruning check sees them at once."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from bench.study import JournalFile

    path = tmp_path / "optuna.journal"
    study = optuna.create_study(
        study_name="j", storage=open_storage(str(path)), pruner=optuna.pruners.ThresholdPruner(upper=1.0)
    )

    def seen() -> list[optuna.trial.FrozenTrial]:  # what another process reads, with Optuna's own backend
        return optuna.load_study(study_name="j", storage=JournalStorage(JournalFileBackend(str(path)))).trials

    first, second = study.ask(), study.ask()
    size = path.stat().st_size
    first.report(0.5, 0)
    second.report(2.0, 0)
    assert second.should_prune() and not first.should_prune()  # decided on the values held in memory
    assert path.stat().st_size == size and all(t.intermediate_values == {} for t in seen())
    first.report(0.25, 1)
    study.tell(first, 0.25)  # the next write: the held reports go first, then the tell
    by_number = {t.number: t for t in seen()}
    assert by_number[0].intermediate_values == {0: 0.5, 1: 0.25} and by_number[0].value == 0.25
    assert by_number[1].intermediate_values == {0: 2.0}
    assert study.trials[0].intermediate_values == {0: 0.5, 1: 0.25}  # this process reads them back too

    second.report(1.5, 1)
    monkeypatch.setattr(JournalFile, "FLUSH_AFTER", 0.0)  # held long enough: the next report writes them
    second.report(1.25, 2)
    assert {t.number: t for t in seen()}[1].intermediate_values == {0: 2.0, 1: 1.5, 2: 1.25}


def test_journal_file_flush_writes_what_it_holds(tmp_path: Path) -> None:
    from bench.study import JournalFile

    path = tmp_path / "optuna.journal"
    journal = JournalFile(str(path))
    journal.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}])
    report = {"op_code": 7, "worker_id": "w", "trial_id": 0, "step": 0, "intermediate_value": 1.0}
    journal.append_logs([report])
    assert [log["op_code"] for log in JournalFile(str(path)).read_logs(0)] == [0]
    journal.flush()  # also at exit (atexit)
    assert [log.get("intermediate_value") for log in JournalFile(str(path)).read_logs(0)] == [None, 1.0]


def test_journal_file_writes_held_reports_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    script = (
        "import sys, optuna; from bench.study import open_storage; "
        "s = optuna.create_study(study_name='x', storage=open_storage(sys.argv[1])); "
        "s.ask().report(0.5, 0)"  # held, and no other write follows
    )
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, check=True)
    assert path.read_text().count('"intermediate_value":0.5') == 1


def test_a_study_stopped_by_an_error_leaves_its_reports_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lrbench command exits without running exit handlers: a study that stops on an error writes the
    reports its journal still holds before it ends."""
    from bench import study as study_module

    cfg = config.load(SMOKE)
    loc = Locations.resolve(cfg, output=str(tmp_path / "out"))
    real = study_module._Round.epoch
    reported: list[int] = []

    def epoch(self: Any, i: int, metrics: Any) -> bool:
        if len(reported) == 5:
            raise SystemExit("stopped")
        reported.append(i)
        return real(self, i, metrics)

    monkeypatch.setattr(study_module._Round, "epoch", epoch)
    with pytest.raises(SystemExit):
        study_module.run_study(cfg, loc)
    assert Path(loc.storage).read_text().count('"intermediate_value"') == 5


def test_journal_file_keeps_held_reports_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.storages.journal import JournalFileBackend

    from bench.study import JournalFile

    path = tmp_path / "optuna.journal"
    journal = JournalFile(str(path))
    journal.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}])
    report = {"op_code": 7, "worker_id": "w", "trial_id": 0, "step": 0, "intermediate_value": 1.0}
    journal.append_logs([report])  # held
    real = JournalFileBackend.append_logs

    def fail(self: Any, logs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(JournalFileBackend, "append_logs", fail)
    with pytest.raises(OSError):
        journal.append_logs([{"op_code": 9, "worker_id": "w", "trial_id": 0, "key": "a", "value": 1}])
    monkeypatch.setattr(JournalFileBackend, "append_logs", real)
    journal.append_logs([{"op_code": 9, "worker_id": "w", "trial_id": 0, "key": "b", "value": 2}])
    logs = list(JournalFile(str(path)).read_logs(0))
    assert [(log["op_code"], log.get("key")) for log in logs] == [(0, None), (7, None), (9, "b")]


def test_journal_file_reads_the_file_again_only_when_it_grew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna reads the journal back after each write and before each read of a trial: when the file has
    not grown since the last read, a stat answers; a trial another process adds is seen at once."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="j", storage=open_storage(str(path)))
    study.tell(study.ask(), 1.0)
    reads: list[int] = []
    real = JournalFileBackend.read_logs
    monkeypatch.setattr(JournalFileBackend, "read_logs", lambda self, n: reads.append(n) or real(self, n))
    for _ in range(3):
        assert len(study.get_trials(deepcopy=False)) == 1
    assert reads == []
    other = optuna.load_study(study_name="j", storage=JournalStorage(JournalFileBackend(str(path))))
    other.tell(other.ask(), 2.0)
    reads.clear()
    assert [t.value for t in study.get_trials(deepcopy=False)] == [1.0, 2.0]
    assert reads


def test_of_trials_asked_at_once_by_two_workers_those_past_the_total_are_surplus(tmp_path: Path) -> None:
    """Workers that ask at the same moment each find places free: the order in which the storage numbered
    the asks decides which trials are past the total, the same for both workers whatever the timing; a
    trial of a worker that died holds no place."""
    from bench.study import _surplus

    storage = open_storage(str(tmp_path / "optuna.journal"))
    a = optuna.create_study(study_name="s", storage=storage)
    b = optuna.load_study(study_name="s", storage=storage)
    for _ in range(2):
        a.tell(a.ask(), 1.0)  # trials 0 and 1
    script = "from bench.study import worker_id; print(worker_id())"
    dead = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    b.ask().set_user_attr("worker", dead.stdout.strip())  # trial 2, RUNNING in a process that has ended
    t3, t4, t5, t6 = a.ask(), b.ask(), a.ask(), b.ask()  # a and b ask in turns
    assert (_surplus(a, [t3, t5], 5), _surplus(b, [t4, t6], 5)) == (set(), {6})
    assert (_surplus(a, [t3, t5], 4), _surplus(b, [t4, t6], 4)) == ({5}, {6})
    assert _surplus(a, [], 4) == set()


def test_a_trial_asked_past_the_total_is_not_trained_and_reports_leave_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker asks the study's last trial just before this one asks it too: this worker's trial is
    failed as surplus at once, with no training and no MLflow run, and is not counted as a failure; the
    leaderboard leaves it out."""
    from bench import study as study_module

    cfg = config.load(write_study(tmp_path, training__population_size=1))
    loc = Locations.resolve(cfg, output=str(tmp_path / "out"))
    real = study_module._ask

    def ask(cfg: Any, study: optuna.Study, k: int) -> list[optuna.Trial]:
        if len(study.trials) == 2:  # the last place: another worker takes it first
            optuna.load_study(study_name=cfg.name, storage=open_storage(loc.storage)).ask()
        return real(cfg, study, k)

    monkeypatch.setattr(study_module, "_ask", ask)
    told: list[int] = []
    outcome = study_module.run_study(cfg, loc, n_trials=3, on_trial=lambda t: told.append(t.number))
    assert (outcome.ran, told) == (2, [0, 1])
    trials = optuna.load_study(study_name=cfg.name, storage=open_storage(loc.storage)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "RUNNING", "FAIL"]
    assert "surplus" in trials[3].user_attrs and not trials[3].intermediate_values
    assert "mlflow_run_id" not in trials[3].user_attrs
    runs = [r for r in _mlflow_runs(loc.root) if r.info.run_name.startswith("trial-")]
    assert sorted(r.data.tags["trial_number"] for r in runs) == ["0", "1"]
    assert [r["number"] for r in load_trials(cfg, loc).records] == [0, 1, 2]


def _trained(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that are not surplus (asked for the last places by two workers at the same moment), after
    checking that those are failed, untrained."""
    surplus = [t for t in trials if "surplus" in t.user_attrs]
    assert all(t.state.name == "FAIL" and not t.intermediate_values for t in surplus)
    return [t for t in trials if t not in surplus]


def _two_workers(argv: list[str]) -> None:
    """Two processes of ``argv`` at once, both ending well."""
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=pipe, stderr=pipe, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err


def test_two_workers_at_once_share_the_journal(tmp_path: Path) -> None:
    """Two `lrbench study` processes run one study at the same time, each holding its reports and reading
    the other's writes: together they reach the total, and every trial has each epoch's report, the last
    and the best matching its stored result (read back with Optuna's own backend)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out = tmp_path / "out"
    argv = [*LRBENCH, "study", str(SMOKE), "--output", str(out), "--n-trials", "40"]
    _two_workers(argv)
    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    trials = optuna.load_study(study_name="smoke", storage=storage).trials
    trials = _trained(trials)
    assert len(trials) == 40 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    runs = {r.info.run_id: r for r in _mlflow_runs(out)}
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


def test_two_workers_start_together_on_an_empty_postgresql_database(
    postgres_database: str, tmp_path: Path
) -> None:
    """The scale-out storage: two workers start one study at once on a new PostgreSQL database (both create
    Optuna's tables: PostgreSQL refused one of two creations at once before lrbench tried again), reach the
    total together and write every trial's run; `lrbench export` reads the study back from the database."""
    out = tmp_path / "out"
    argv = [*LRBENCH, "study", str(SMOKE), "--output", str(out), "--storage", postgres_database]
    _two_workers([*argv, "--n-trials", "20"])
    trials = optuna.load_study(study_name="smoke", storage=postgres_database).trials
    trials = _trained(trials)
    assert len(trials) == 20 and {t.state.name for t in trials} == {"COMPLETE"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert all(sorted(t.intermediate_values) == [0, 1, 2, 3] for t in trials)
    runs = {r.info.run_id: r for r in _mlflow_runs(out)}
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    assert all(runs[t.user_attrs["mlflow_run_id"]].info.status == "FINISHED" for t in trials)
    assert len([r for r in runs.values() if r.data.tags.get("lrbench.role") == "study"]) == 1
    export = lrbench("export", SMOKE, "--output", out, "--storage", postgres_database)
    assert export.returncode == 0, export.stderr
    board = pd.read_csv(out / "smoke" / "leaderboard.csv")
    assert sorted(board["number"]) == sorted(t.number for t in trials)


def test_a_storage_whose_tables_another_worker_is_creating_is_opened_on_a_later_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database refused this worker's creation of a table another worker created at the same moment:
    the storage is opened on a later try; a failure that every try meets is raised."""
    import sqlalchemy.exc

    from bench import study as study_module

    tries: list[str] = []

    def storage(url: str) -> str:
        tries.append(url)
        if len(tries) < 3 or url == "always":
            raise sqlalchemy.exc.IntegrityError("CREATE TYPE studydirection", {}, Exception("duplicate key"))
        return "opened"

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    assert study_module._rdb_storage("postgresql://db") == "opened" and len(tries) == 3
    tries.clear()
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        study_module._rdb_storage("always", attempts=4)
    assert len(tries) == 4


def test_two_workers_on_a_tracking_server_write_every_trial(mlflow_server: str, tmp_path: Path) -> None:
    """Two `lrbench study` processes on one study with a tracking server, each writer keeping several
    requests in flight: every trial has one run, closed with its state and its curves, and nothing is left
    RUNNING."""
    study = write_study(tmp_path, name="two-workers")
    out = tmp_path / "out"
    argv = [*LRBENCH, "study", str(study), "--output", str(out), "--n-trials", "40"]
    argv += ["--tracking-uri", mlflow_server]
    _two_workers(argv)
    cfg = config.load(study)
    records = load_trials(cfg, Locations.resolve(cfg, str(out), None, mlflow_server)).records
    assert len(records) == 40 and {r["state"] for r in records} == {"COMPLETE"}
    assert len({r["user_attrs"]["worker"] for r in records}) == 2
    exp = rest(mlflow_server, "experiments/get-by-name?experiment_name=two-workers")["experiment"]
    body = {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
    runs = {r["info"]["run_id"]: r for r in rest(mlflow_server, "runs/search", body)["runs"]}
    assert not [r for r in runs.values() if r["info"]["status"] == "RUNNING"]
    for record in records:
        run = runs[record["user_attrs"]["mlflow_run_id"]]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert run["info"]["status"] == "FINISHED" and tags["state"] == "COMPLETE"
        assert tags["trial_number"] == str(record["number"])
        assert {"lr", "val/loss", "val/accuracy", "train/loss"} <= {m["key"] for m in run["data"]["metrics"]}
    trial_runs = [r for r in runs.values() if r["info"]["run_name"].startswith("trial-")]
    assert len(trial_runs) == 40  # one run a trial, none left over
    tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs.values()]
    parents = [r["info"]["run_id"] for r, t in zip(runs.values(), tags, strict=True) if t.get("lrbench.role")]
    assert len(parents) == 1  # the workers share one parent
    assert {t.get("mlflow.parentRunId") for t in tags if not t.get("lrbench.role")} == set(parents)


def test_ui_prints_the_address_of_the_study_runs_once_the_server_answers(
    smoke_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address is printed when the server answers on it, not while it starts (10 s and more here). A
    one-request HTTP server stands in for MLflow's."""
    import subprocess as sp

    port = free_port()
    one_request = (
        "import http.server as h, sys; "
        "h.HTTPServer(('127.0.0.1', int(sys.argv[1])), h.BaseHTTPRequestHandler).handle_request()"
    )
    started: list[list[str]] = []
    real_popen = sp.Popen

    def popen(cmd: list[str], **kwargs: Any) -> Any:
        if cmd[1:2] != ["server"]:  # not the UI's (MLflow runs git, say)
            return real_popen(cmd, **kwargs)
        started.append(cmd)
        time.sleep(1)  # still starting: the command waits for it
        return real_popen([sys.executable, "-c", one_request, str(port)], **kwargs)

    monkeypatch.setattr(sp, "Popen", popen)
    args = ["ui", "--study", str(SMOKE), "--output", str(smoke_run), "--port", str(port)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}/#/experiments/1?workflowType=machine_learning" in out
    cmd = started[0]
    assert cmd[1:3] == ["server", "--backend-store-uri"] and cmd[3] == f"sqlite:///{smoke_run / 'mlflow.db'}"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--workers") + 1] == "1"


def test_ui_says_when_the_server_stops_before_answering_or_the_port_is_taken(
    smoke_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess as sp

    real_popen = sp.Popen

    def popen(cmd: list[str], **kwargs: Any) -> Any:
        if cmd[1:2] != ["server"]:
            return real_popen(cmd, **kwargs)
        return real_popen([sys.executable, "-c", "raise SystemExit(3)"], **kwargs)  # as MLflow's failing

    monkeypatch.setattr(sp, "Popen", popen)
    args = ["ui", "--study", str(SMOKE), "--output", str(smoke_run), "--port", str(free_port())]
    assert main(args) == 3  # the server's own status; its error is its own stderr
    assert "http://" not in capsys.readouterr().out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args[-1] = str(taken.getsockname()[1])
        assert main(args) == 2
    assert f"port {args[-1]} is in use on 127.0.0.1; choose another with --port" in capsys.readouterr().err


def test_ui_serves_the_study_and_stops_with_everything_it_started(smoke_run: Path) -> None:
    """The real MLflow server: the address answers once printed, and a SIGTERM to lrbench alone (not to
    its process group, as a terminal's Ctrl-C would) stops the server and its uvicorn workers too."""
    port = free_port()
    command = ["ui", "--study", str(SMOKE), "--output", str(smoke_run), "--port", str(port)]
    ui = subprocess.Popen(
        [sys.executable, "-m", "bench", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert ui.stdout is not None
        lines = iter(ui.stdout.readline, "")  # the server's own stdout comes through too
        line = next((line for line in lines if line.startswith("MLflow UI on")), "")
        assert line.startswith(f"MLflow UI on http://127.0.0.1:{port}/#/experiments/1"), line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200
        ui.terminate()
        assert ui.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port)
    finally:
        if ui.poll() is None:  # a failed check: stopped the same way, so that no server outlives the test
            ui.terminate()
            ui.wait(timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_integer_arguments_stay_integers_in_the_leaderboard(smoke_run: Path) -> None:
    as_text = pd.read_csv(smoke_run / "smoke" / "leaderboard.csv", dtype=str)
    int_cols = [c for c in as_text.columns if c.endswith(("warmup_iters", "step_size"))]
    assert int_cols
    for col in int_cols:
        written = as_text[col].dropna()
        assert len(written) and written.str.fullmatch(r"\d+").all(), (col, list(written))


def test_epochs_stay_integers_beside_a_trial_that_failed_before_it_ran(tmp_path: Path) -> None:
    from bench import report

    result = {"epochs_run": 50, "test_accuracy": 0.96, "lr": 0.01}
    params = {"scheduler": "StepLR"}
    records = [
        {"number": 0, "state": "COMPLETE", "value": 0.05, "params": params, "user_attrs": {"result": result}},
        {"number": 1, "state": "FAIL", "value": None, "params": params, "user_attrs": {}},
    ]
    board, table = report.export(records, "minimize", "val_loss", tmp_path)
    assert pd.read_csv(tmp_path / "leaderboard.csv", dtype=str)["epochs_run"].tolist()[0] == "50"
    printed = report.terminal_table(board, table, "val_loss").splitlines()
    assert printed[2].split()[-1] == "50", printed
