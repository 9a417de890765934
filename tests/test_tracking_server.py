"""A real tracking server (``mlflow server`` on 127.0.0.1): requests several at once, a server that stops
answering, the smoke study and two workers against it."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from bench import config, schedules
from bench.cli.commands import parse_value
from bench.config import Locations
from bench.search import load_trials
from bench.tracking import server as server_module
from bench.tracking import writer
from bench.tracking.client import Tracker
from bench.tracking.curves import expand_curve
from bench.tracking.inflight import REQUESTS
from bench.tracking.local_server import free_port, running
from bench.tracking.server import no_answer
from bench.tracking.spool import TrialRecord

from helpers import LRBENCH, ROOT, SMOKE, lrbench, records, rest, two_workers, write_study

pytestmark = pytest.mark.slow


def test_a_worker_that_loses_the_race_for_the_experiment_takes_the_winners(mlflow_server: str) -> None:
    """Two workers on a tracking server that both found no experiment: the second one's create fails (the
    name is taken), and it uses the experiment the first created."""
    first = Tracker(mlflow_server, "raced")
    second = Tracker(mlflow_server, "raced")
    assert second._create_experiment("raced") == first.experiment_id


def test_writes_to_a_tracking_server_go_several_at_once_in_order_with_their_errors(
    mlflow_server: str, tmp_path: Path
) -> None:
    """Against a server, the writer makes up to REQUESTS writes at once (each waits at a barrier that opens
    only when all of them are in flight). Any other request waits for them first; a failed write is raised
    by the next request and keeps its spooled copy. The writer process's own request functions, run here
    against a Tracker of this process."""
    from mlflow.exceptions import MlflowException

    server = Tracker(mlflow_server, "behind")
    assert server.inflight.requests == REQUESTS > 1
    barrier = threading.Barrier(server.inflight.requests, timeout=30)

    def meet() -> None:
        barrier.wait()

    for _ in range(server.inflight.requests):
        assert server.inflight.write_behind(meet)
    server.inflight.wait_behind()  # a BrokenBarrierError had the writes gone one at a time
    server.open_parent("behind", None, {}, "uid")
    run_ids = server.start_trials([("behind", n, "StepLR") for n in range(3)])
    assert len(set(run_ids)) == 3
    spools = [tmp_path / f"{run_id}.json" for run_id in run_ids]
    for spool in spools:
        spool.write_text("spooled")
    old, writer._TRACKER = writer._TRACKER, server
    try:
        for n, (run_id, spool) in enumerate(zip(run_ids, spools, strict=True)):
            points = [("lr", 0.1 * step + n, step) for step in range(5)]
            writer._finish_trial(TrialRecord(run_id, "COMPLETE", {}, points), str(spool))
        for n, run_id in enumerate(run_ids):  # each read waits for the writes before it
            got = writer._request(lambda t, run_id=run_id: t.history(run_id, "lr"))
            assert got == [(s, 0.1 * s + n) for s in range(5)]
        assert not any(spool.exists() for spool in spools)
        # The report's curves, read several at once, each under its own run's label.
        curves = writer._draw({f"#{n}": run_id for n, run_id in enumerate(run_ids)}, ["lr", "val/loss"], dict)
        assert curves == {
            f"#{n}": {"lr": [(s, 0.1 * s + n) for s in range(5)], "val/loss": []} for n in range(3)
        }
        gate, written = threading.Event(), []

        def gated() -> None:
            written.append(gate.wait(30))

        server.inflight.write_behind(gated)
        threading.Timer(0.5, gate.set).start()
        writer._request(lambda t: t.history(run_ids[0], "lr"))
        assert written == [True]  # the read waited for the write in flight
        lost = tmp_path / "lost.json"
        lost.write_text("spooled")
        writer._finish_trial(TrialRecord("0" * 32, "COMPLETE", {}, [("lr", 1.0, 0)]), str(lost))
        with pytest.raises(MlflowException):
            writer._request(lambda t: t.history(run_ids[0], "lr"))
        assert lost.exists()  # for the next run of the study to replay
    finally:
        writer._TRACKER = old
        server.close()
    local = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "behind")
    assert not local.inflight.write_behind(meet)  # a database store: the caller writes, one at a time
    local.close()


def _lines_into(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_a_tracking_server_that_stops_answering_stops_the_study_in_a_line_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """The server dies mid-study: the study says so while MLflow retries, and once MLflow's retries are
    spent (shortened here, to about 14 s) it stops with one line, no trial left RUNNING; run again on the
    server restarted, it writes what it had kept and goes on, and every trial that ended has its run,
    closed, with its curves."""
    study = write_study(tmp_path, optuna__n_trials=400)
    out_dir, home, port = tmp_path / "results", tmp_path / "server", free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    argv = [*LRBENCH, "study", str(study), "--output", str(out_dir), "--tracking-uri", url]
    with running(home, port, stop=signal.SIGKILL):  # the server dies
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
    notice = f"the tracking server {url} has not answered for 10 s; MLflow retries"
    assert any(notice in line for line in lines_out), lines_out
    error = [line for line in lines_out if line.startswith("lrbench: error:")]
    assert len(error) == 1 and f"the tracking server {url} stopped answering" in error[0], lines_out
    assert "Traceback" not in rest_of_it
    cfg = config.load(study)
    loc = Locations.resolve(cfg, str(out_dir), None, url)
    stopped = load_trials(cfg, loc).trials
    assert stopped and not [t for t in stopped if t.state == "RUNNING"]
    ended = len([t for t in stopped if t.state in ("COMPLETE", "PRUNED")])
    spool = out_dir / "spool" / cfg.name
    kept = len(list(spool.glob("*.json"))) if spool.is_dir() else 0
    assert (f"of {kept} trial(s) is kept under {spool}" in error[0]) == (kept > 0), error

    with running(home, port):
        again = lrbench("study", study, "--output", out_dir, "--tracking-uri", url, "--n-trials", ended + 2)
        assert again.returncode == 0, again.stderr
        assert (f"sent {kept} trial(s) to MLflow" in again.stderr) == (kept > 0), again.stderr
        ended_trials = [t for t in load_trials(cfg, loc).trials if t.state in ("COMPLETE", "PRUNED")]
        assert len(ended_trials) >= ended + 2
        for trial in ended_trials:
            run = rest(url, f"runs/get?run_id={trial.user_attrs['mlflow_run_id']}")["run"]
            assert run["info"]["status"] == "FINISHED", trial.number
            keys = {m["key"] for m in run["data"]["metrics"]}
            assert {"lr", "val/loss", "val/accuracy", "train/loss"} <= keys, (trial.number, keys)
    assert not list(spool.glob("*.json")) if spool.is_dir() else True


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
        for key in ("optimizer", "base_lr", "epochs", "batch_size", "seed", "dataset"):
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
        family_prefix = f"{params['scheduler']}."
        args = {
            k.removeprefix(family_prefix): parse_value(v)
            for k, v in params.items()
            if k.startswith(family_prefix)
        }
        family = schedules.SCHEDULES[params["scheduler"]]
        assert set(args) == set(family.args)
        steps_per_epoch = -(-341 // int(params["batch_size"]))  # 341 training rows
        expected, _ = schedules.preview(
            params["scheduler"],
            args,
            lr=float(params["base_lr"]),
            epochs=int(params["epochs"]),
            steps_per_epoch=steps_per_epoch,
            val_losses=val_loss,
        )
        # ... equals the logged lr curve at every optimizer step.
        logged = expand_curve(history("lr"))
        assert len(logged) == epochs * steps_per_epoch
        assert logged == pytest.approx(expected[: len(logged)], rel=1e-12)


def test_two_workers_on_a_tracking_server_write_every_trial(mlflow_server: str, tmp_path: Path) -> None:
    """Two `lrbench study` processes on one study with a tracking server, each writer keeping several
    requests in flight: every trial has one run, closed with its state and its curves, and nothing is left
    RUNNING."""
    study = write_study(tmp_path, name="two-workers")
    out = tmp_path / "out"
    argv = [*LRBENCH, "study", str(study), "--output", str(out), "--n-trials", "40"]
    argv += ["--tracking-uri", mlflow_server]
    two_workers(argv)
    trials = records(study, out, None, mlflow_server)
    assert len(trials) == 40 and {r.state for r in trials} == {"COMPLETE"}
    assert len({r.user_attrs["worker"] for r in trials}) == 2
    exp = rest(mlflow_server, "experiments/get-by-name?experiment_name=two-workers")["experiment"]
    body = {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
    runs = {r["info"]["run_id"]: r for r in rest(mlflow_server, "runs/search", body)["runs"]}
    assert not [r for r in runs.values() if r["info"]["status"] == "RUNNING"]
    for record in trials:
        run = runs[record.user_attrs["mlflow_run_id"]]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert run["info"]["status"] == "FINISHED" and tags["state"] == "COMPLETE"
        assert tags["trial_number"] == str(record.number)
        assert {"lr", "val/loss", "val/accuracy", "train/loss"} <= {m["key"] for m in run["data"]["metrics"]}
    trial_runs = [r for r in runs.values() if r["info"]["run_name"].startswith("trial-")]
    assert len(trial_runs) == 40  # one run a trial, none left over
    tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs.values()]
    parents = [r["info"]["run_id"] for r, t in zip(runs.values(), tags, strict=True) if t.get("lrbench.role")]
    assert len(parents) == 1  # the workers share one parent
    assert {t.get("mlflow.parentRunId") for t in tags if not t.get("lrbench.role")} == set(parents)


def _failed_request(inner: Callable[[], object]) -> BaseException:
    """What MLflow's client raises for a request that failed: its own exception, raised while handling the
    error of the request (``inner``)."""
    try:
        try:
            inner()
        except Exception:
            raise RuntimeError("API request to http://127.0.0.1/api/2.0/mlflow/runs/create failed")  # noqa: B904
    except RuntimeError as exc:
        return exc
    raise AssertionError("nothing raised")


def test_a_server_that_does_not_answer_is_told_by_the_system_error() -> None:
    import requests
    import urllib3

    def refused() -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        requests.get(f"http://127.0.0.1:{port}", timeout=5)

    def reset() -> None:
        try:
            raise urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        except urllib3.exceptions.ProtocolError as exc:
            raise requests.ConnectionError(exc)  # noqa: B904

    def slow() -> None:
        raise requests.Timeout("read timed out")

    assert no_answer(_failed_request(refused)) == "[Errno 111] Connection refused"
    assert no_answer(_failed_request(reset)) == "[Errno 104] reset"
    assert no_answer(_failed_request(slow)) == "read timed out"
    assert no_answer(_failed_request(lambda: 1 / 0)) is None  # an error of another kind


def test_a_tracking_server_down_from_the_start_is_told_while_mlflow_retries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that no longer answers when the tracker first asks it (after lrbench's own check): the
    notice that MLflow retries is printed from the first request on, once it has waited NOTICE_AFTER."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # about 2 s of retries
    monkeypatch.setattr(server_module, "NOTICE_AFTER", 0.5)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):  # MLflow's give-up
        Tracker(url, "down")
    assert f"the tracking server {url} has not answered for 0.5 s; MLflow retries" in capsys.readouterr().err
