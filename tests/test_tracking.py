from __future__ import annotations

import pickle
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import schedules, tracking
from bench.data import Task
from bench.engine import TrainConfig, train
from bench.tracking import AsyncTracker, Tracker, compact_curve, expand_curve, metric_points


@pytest.mark.parametrize("name", sorted(schedules.SCHEDULES))
def test_compact_lr_curve_interpolates_back_to_every_step(name: str) -> None:
    lrs, _ = schedules.preview(name, {}, lr=0.1, epochs=50, steps_per_epoch=12)
    points = compact_curve(lrs)
    assert expand_curve(points) == pytest.approx(lrs, rel=1e-12, abs=0)
    assert points[0] == (0, lrs[0]) and points[-1] == (len(lrs) - 1, lrs[-1])


def test_compaction_drops_flat_and_linear_stretches() -> None:
    assert compact_curve([1.0] * 100) == [(0, 1.0), (99, 1.0)]
    ramp = [0.1 * i for i in range(50)] + [4.9] * 50  # up to step 49, then flat
    assert [s for s, _ in compact_curve(ramp)] == [0, 49, 99]
    assert compact_curve([]) == [] and compact_curve([2.0]) == [(0, 2.0)]


def test_a_spooled_trial_is_replayed_after_a_kill(tmp_path: Path, breast_cancer: Task) -> None:
    """What a killed process had spooled but not sent reaches MLflow on the next run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sync = Tracker(uri, "spool")
    sync.open_parent("spool", None, {}, "uid")
    run_id = sync.start_trial("spool", 0, "StepLR")
    result = train(breast_cancer, TrainConfig(scheduler="StepLR", epochs=3))
    spool = tmp_path / "spool"
    spool.mkdir()
    spooled = (run_id, "COMPLETE", {"scheduler": "StepLR"}, metric_points(result), None)
    (spool / f"{run_id}.pkl").write_bytes(pickle.dumps(spooled))
    writer = AsyncTracker(uri, "spool", spool)
    try:
        assert writer.replay_spool() == 1
        procs = list(writer._pool._processes.values())
    finally:
        writer.close()
    assert procs and not any(p.is_alive() for p in procs)  # close() stops the writer once all is written
    run = sync.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
    assert expand_curve(sync.history(run_id, "lr")) == result.lrs
    assert run.data.params["scheduler"] == "StepLR"
    assert not list(spool.iterdir())


def test_replaying_a_trial_mlflow_already_has_adds_no_points(
    tmp_path: Path, breast_cancer: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study killed after MLflow committed a trial's writes but before its spool file was removed replays
    that file on the next run: the points carry the time they were spooled, so nothing is written twice."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spool = tmp_path / "spool"
    result = train(breast_cancer, TrainConfig(scheduler="StepLR", epochs=3))
    spooled: dict[str, bytes] = {}  # the spool file as written (the writer removes it once MLflow has it)
    real_replace = Path.replace

    def keep(self: Path, target: Path) -> Path:
        spooled[Path(target).name] = self.read_bytes()
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", keep)
    writer = AsyncTracker(uri, "twice", spool)
    try:
        writer.open_parent("twice", None, {}, "uid")
        run_id = writer.start_trial("twice", 0, "StepLR")
        writer.finish_trial(run_id, "COMPLETE", {"scheduler": "StepLR"}, result)
        writer.flush()
    finally:
        writer.close()
    assert not list(spool.iterdir())
    (spool / f"{run_id}.pkl").write_bytes(spooled[f"{run_id}.pkl"])  # as a kill before its removal leaves it
    again = AsyncTracker(uri, "twice", spool)
    try:
        assert again.replay_spool() == 1
    finally:
        again.close()
    sync = Tracker(uri, "twice")
    assert [m.value for m in sync.client.get_metric_history(run_id, "val/loss")] == result.val_loss
    assert expand_curve(sync.history(run_id, "lr")) == result.lrs
    assert not list(spool.iterdir())


def test_a_call_to_the_writer_comes_after_the_writes_deferred_before_it(
    tmp_path: Path, breast_cancer: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished trial's writes may wait in the study process (runs being created go first); a call that
    reads from MLflow (the summary figure's curves) sees them all the same."""
    result = train(breast_cancer, TrainConfig(scheduler="StepLR", epochs=3))
    writer = AsyncTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "order", tmp_path / "spool")
    try:
        writer.open_parent("order", None, {}, "uid")
        run_id = writer.start_trials("order", [(0, "StepLR")]).result()[0]
        monkeypatch.setattr(writer, "pump", lambda: None)  # the write stays deferred
        writer.finish_trial(run_id, "COMPLETE", {"scheduler": "StepLR"}, result)
        assert writer._deferred
        assert expand_curve(writer.history(run_id, "lr")) == result.lrs
    finally:
        writer.close()


@pytest.mark.parametrize("cache", ["off", "suite"])
def test_workers_that_start_together_share_a_new_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str
) -> None:
    """Two workers of one study starting at once on a new embedded store: one creates MLflow's tables (or
    copies the template) and the experiment, the other finds them (without the lock, one of them failed
    creating the tables)."""
    import subprocess
    import sys

    if cache == "off":
        monkeypatch.setenv("LRBENCH_CACHE", "off")

    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    code = (
        f"from bench.tracking import Tracker; t = Tracker({uri!r}, 'together'); "
        "print(t.experiment_id); t.close()"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-600:] for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1  # one experiment
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["mlflow.db"]  # no lock file left


def test_a_prestarted_writer_is_taken_up_or_stopped(tmp_path: Path) -> None:
    """`lrbench study` starts its writer before importing torch; the study's tracker takes that process up,
    and one that no study took (the command failed first) is stopped."""
    tracking.prestart_writer()
    pool = tracking._PRESTARTED
    writer = AsyncTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "pre", tmp_path / "spool")
    assert writer._pool is pool and tracking._PRESTARTED is None
    assert writer.open_parent("pre", None, {}, "uid").result()
    writer.close()
    tracking.prestart_writer()
    procs = list(tracking._PRESTARTED._processes.values())
    assert procs
    tracking.discard_prestarted_writer()
    assert tracking._PRESTARTED is None and not any(p.is_alive() for p in procs)


def test_only_runs_of_trials_known_to_have_ended_are_closed(tmp_path: Path) -> None:
    """A worker opening a study closes the runs that a dead process left RUNNING, as its snapshot of the
    study's trials says; a run of a trial asked since (by a live worker) or owned by another run is left
    alone (another worker's run was KILLED when its trial was asked just after the snapshot), and so are
    the runs of another study of the same name (another storage) that shares the experiment."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    other = Tracker(uri, "orphans")  # the same study name in another output dir: its trial 0 is running
    other.open_parent("orphans", None, {}, "theirs")
    [theirs] = other.start_trials("orphans", [(0, "StepLR")])
    tracker = Tracker(uri, "orphans")
    tracker.open_parent("orphans", None, {}, "ours")
    ids = tracker.start_trials("orphans", [(n, "StepLR") for n in range(5)])
    snapshot = {
        "0": ("FAIL", None, "worker process died (killed?)"),  # died before its tell
        "1": ("COMPLETE", ids[1], None),  # told; its writes not yet made
        "2": ("RUNNING", ids[2], None),  # a live worker's
        # "3": asked by a live worker after the snapshot was taken
        "4": ("COMPLETE", "another-run", None),
    }
    assert tracker.close_orphans("ours", snapshot) == 2
    runs = {n: tracker.client.get_run(run_id) for n, run_id in enumerate(ids)}
    assert [runs[n].info.status for n in range(5)] == ["KILLED", "FINISHED", "RUNNING", "RUNNING", "RUNNING"]
    assert runs[0].data.tags["failure"] == "worker process died (killed?)"
    assert runs[1].data.tags["state"] == "COMPLETE"
    assert tracker.client.get_run(theirs).info.status == "RUNNING"
    assert tracker.client.get_run(str(tracker.parent_id)).info.status == "RUNNING"  # not a trial run
    tracker.close()


def test_a_worker_that_joins_a_new_study_takes_the_parent_run_its_creator_makes(tmp_path: Path) -> None:
    """Told to look (``find``), a worker waits for the parent run of its study (by uid) that another
    worker makes meanwhile, and takes it; a parent of another study of the same name is not taken, and
    when none comes, the worker makes its own."""
    import threading

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    creator, joiner, other = (Tracker(uri, "shared") for _ in range(3))
    other.open_parent("shared", None, {}, "another study")
    timer = threading.Timer(1.0, creator.open_parent, ("shared", None, {}, "uid"))
    timer.start()
    found = joiner.open_parent("shared", None, {}, "uid", find=30.0)
    timer.join()
    assert found is not None and found == creator.parent_id
    late = Tracker(uri, "shared")
    assert late.open_parent("shared", None, {}, "no parent yet", find=0.5) not in (
        creator.parent_id,
        other.parent_id,
    )
    for t in (creator, joiner, other, late):
        t.close()


def test_ctrl_c_while_the_writer_is_waited_for_stops_it_at_once(tmp_path: Path) -> None:
    """Interrupted while closing (a second Ctrl-C), the tracker stops its writer rather than waiting for
    what the writer is still doing (here a minute's sleep): what it had not written is in the spool."""
    import os
    import signal
    import threading
    import time

    writer = AsyncTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "ctrl-c", tmp_path / "spool")
    writer._submit(time.sleep, 60)
    procs = list(writer._pool._processes.values())
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert time.monotonic() - start < 30
    assert procs and not any(p.is_alive() for p in procs)


def test_a_local_store_is_written_in_wal_mode_and_closed_into_one_file(tmp_path: Path) -> None:
    """The tracking database takes commits in WAL mode without waiting for the disk; other SQLite databases
    in the process keep their settings; close() leaves one self-contained file, and the store reopens."""
    import sqlite3

    import sqlalchemy

    db = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{db}", "wal")
    tracker.open_parent("wal", None, {"n_trials": 1}, "uid")
    assert tracking._OPEN
    for entry in tracking._OPEN:
        assert entry.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert Path(f"{db}-wal").exists()
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
    other.dispose()

    tracker.close()
    assert not Path(f"{db}-wal").exists() and not tracking._OPEN
    with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as frozen:  # the file alone, no log read
        assert frozen.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert tracker.start_trial("wal", 0, "StepLR")  # the pool reconnects
    tracker.close()
    assert tracker.client.get_run(tracker.parent_id).data.params == {"n_trials": "1"}
    tracker.close()


def _schema(db: Path) -> list[tuple[str, str, list[str]]]:
    """Every table's and index's definition, its lines in order (MLflow's migrations write a table's
    constraints in an order that changes from process to process)."""
    import sqlite3

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    return [
        (kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
        for kind, name, sql in rows
    ]


def test_a_new_local_store_is_a_copy_of_a_template_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first new store on a machine makes the template (MLflow's own tables, without its Default
    experiment); later ones copy it instead of running MLflow's migrations, and are the store MLflow makes."""
    import mlflow.store.db.utils

    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path / "cache"))
    first = Tracker(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", "study")
    first.close()
    assert (tmp_path / "cache" / f"mlflow-{mlflow.__version__}-empty.db").is_file()

    def no_migrations(engine: object) -> None:
        raise AssertionError("MLflow created the tables: the template was not used")

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", no_migrations)
    copied = Tracker(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}", "study")
    copied.open_parent("study", None, {}, "uid")
    run_id = copied.start_trial("study", 0, "StepLR")
    copied.close()
    monkeypatch.undo()
    monkeypatch.setenv("LRBENCH_CACHE", "off")
    made = Tracker(f"sqlite:///{tmp_path / 'c' / 'mlflow.db'}", "study")  # by MLflow, as without a cache
    made.close()
    assert _schema(tmp_path / "b" / "mlflow.db") == _schema(tmp_path / "c" / "mlflow.db")
    from mlflow import MlflowClient

    def experiments(folder: str) -> list[tuple[str, str]]:
        client = MlflowClient(f"sqlite:///{tmp_path / folder / 'mlflow.db'}")
        return sorted((e.experiment_id, e.name) for e in client.search_experiments())

    assert experiments("b") == experiments("c") == [("0", "Default"), ("1", "study")]
    assert MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}").get_run(run_id).info.run_name
    assert not list((tmp_path / "b").glob(".mlflow.db.*"))  # the copy was renamed into place


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

    assert tracking._no_answer(_failed_request(refused)) == "[Errno 111] Connection refused"
    assert tracking._no_answer(_failed_request(reset)) == "[Errno 104] reset"
    assert tracking._no_answer(_failed_request(slow)) == "read timed out"
    assert tracking._no_answer(_failed_request(lambda: 1 / 0)) is None  # an error of another kind


def test_a_tracking_server_down_from_the_start_is_told_while_mlflow_retries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that no longer answers when the tracker first asks it (after lrbench's own check): the
    notice of MLflow's retries is printed from the first request on, not only after the tracker is made."""
    import logging

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    logger = logging.getLogger("urllib3.connectionpool")
    monkeypatch.setattr(logger, "handlers", [])  # no notice left by an earlier tracker of this process
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once it is closed
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):  # MLflow's give-up
        Tracker(url, "down")
    assert f"the tracking server {url} does not answer; MLflow retries" in capsys.readouterr().err
