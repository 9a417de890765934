"""The study's MLflow writer process: the spool, the order of its requests, starting and stopping it."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bench.data import Task
from bench.errors import UserError
from bench.tracking import writer as writer_module
from bench.tracking.client import Tracker
from bench.tracking.curves import expand_curve, metric_points
from bench.tracking.spool import Spool, TrialRecord
from bench.tracking.writer import Writer
from bench.train import TrainConfig, train


def test_a_spool_record_is_versioned_json_read_back_as_written(tmp_path: Path) -> None:
    record = TrialRecord(
        "r" * 32,
        "PRUNED",
        {"scheduler": "MultiStepLR", "MultiStepLR.milestones": [2, 3], "base_lr": 0.1},
        [("lr", 0.1, 0), ("val/loss", math.inf, 1), ("val/loss", 0.5, 2)],
        "diverged: non-finite loss at step 3",
        1764750000000,
    )
    spool = Spool(tmp_path / "spool")
    path = spool.keep(record)
    assert spool.kept() == [path] and path.name == f"{'r' * 32}.json"
    raw = json.loads(path.read_text())
    assert raw["version"] == 1 and raw["points"][0] == ["lr", 0.1, 0]
    assert Spool.read(path) == record
    path.write_text(json.dumps({**raw, "version": 2}))
    with pytest.raises(ValueError, match="version 2"):
        Spool.read(path)


@pytest.mark.slow
def test_a_spooled_trial_is_replayed_after_a_kill(tmp_path: Path, breast_cancer: Task) -> None:
    """What a killed process had spooled but not sent reaches MLflow on the next run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sync = Tracker(uri, "spool")
    sync.open_parent("spool", None, {}, "uid")
    run_id = sync.start_trial("spool", 0, "StepLR")
    result = train(breast_cancer, TrainConfig(scheduler="StepLR", epochs=3))
    spool = tmp_path / "spool"
    Spool(spool).keep(TrialRecord(run_id, "COMPLETE", {"scheduler": "StepLR"}, metric_points(result)))
    writer = Writer(uri, "spool", spool)
    try:
        assert writer.replay_spool({run_id}, set()) == 1
        processes = writer.processes
    finally:
        writer.close()
    assert processes and not any(p.is_alive() for p in processes)  # close() stops the writer, all written
    run = sync.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
    assert expand_curve(sync.history(run_id, "lr")) == result.lrs
    assert run.data.params["scheduler"] == "StepLR"
    assert not list(spool.iterdir())


@pytest.mark.slow
def test_replaying_a_trial_mlflow_already_has_adds_no_points(
    tmp_path: Path, breast_cancer: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study killed after MLflow committed a trial's writes but before its spool file was removed replays
    that file on the next run: the points carry the time they were spooled, so nothing is written twice."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spool = tmp_path / "spool"
    result = train(breast_cancer, TrainConfig(scheduler="StepLR", epochs=3))
    kept: dict[str, bytes] = {}  # the spool file as written (the writer removes it once MLflow has it)
    real_keep = Spool.keep

    def keep(self: Spool, record: TrialRecord) -> Path:
        path = real_keep(self, record)
        kept[path.name] = path.read_bytes()
        return path

    monkeypatch.setattr(Spool, "keep", keep)
    writer = Writer(uri, "twice", spool)
    try:
        writer.open_parent("twice", None, {}, "uid")
        (run_id,) = writer.start_trials([("twice", 0, "StepLR")]).result()
        writer.finish_trial(run_id, "COMPLETE", {"scheduler": "StepLR"}, result)
        writer.flush()
    finally:
        writer.close()
    assert not list(spool.iterdir())
    (spool / f"{run_id}.json").write_bytes(kept[f"{run_id}.json"])  # as a kill before its removal leaves it
    again = Writer(uri, "twice", spool)
    try:
        assert again.replay_spool({run_id}, set()) == 1
    finally:
        again.close()
    sync = Tracker(uri, "twice")
    assert [m.value for m in sync.client.get_metric_history(run_id, "val/loss")] == result.val_loss
    assert expand_curve(sync.history(run_id, "lr")) == result.lrs
    assert not list(spool.iterdir())


@pytest.mark.slow
def test_a_request_to_the_writer_comes_after_the_writes_deferred_before_it(
    tmp_path: Path, breast_cancer: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished trial's writes may wait in the study process (runs being created go first); a request
    that reads from MLflow (the report's curves) sees them all the same."""
    result = train(breast_cancer, TrainConfig(scheduler="StepLR", epochs=3))
    writer = Writer(f"sqlite:///{tmp_path / 'mlflow.db'}", "order", tmp_path / "spool")
    try:
        writer.open_parent("order", None, {}, "uid")
        (run_id,) = writer.start_trials([("order", 0, "StepLR")]).result()
        monkeypatch.setattr(writer, "pump", lambda: None)  # the write stays deferred
        writer.finish_trial(run_id, "COMPLETE", {"scheduler": "StepLR"}, result)
        assert writer._deferred
        curves = writer.draw({"a": run_id}, ["lr"], dict)  # dict: the curves as the writer read them
        assert expand_curve(curves["a"]["lr"]) == result.lrs
    finally:
        writer.close()


@pytest.mark.slow
def test_a_prestarted_writer_is_taken_up_or_stopped(tmp_path: Path) -> None:
    """`lrbench study` starts its writer before importing torch; the study's writer takes that process up,
    and one that no study took (the command failed first) is stopped."""
    writer_module.prestart()
    prestarted = writer_module._PRESTARTED
    assert prestarted is not None and prestarted.processes
    writer = Writer(f"sqlite:///{tmp_path / 'mlflow.db'}", "pre", tmp_path / "spool")
    assert writer.processes == prestarted.processes and writer_module._PRESTARTED is None
    assert writer.open_parent("pre", None, {}, "uid").result()
    writer.close()
    writer_module.prestart()
    assert writer_module._PRESTARTED is not None
    processes = writer_module._PRESTARTED.processes
    writer_module.discard_prestarted()
    assert writer_module._PRESTARTED is None and processes and not any(p.is_alive() for p in processes)


def test_ctrl_c_while_the_writer_is_waited_for_stops_it_at_once(tmp_path: Path) -> None:
    """Interrupted while closing (a second Ctrl-C), the study stops its writer rather than waiting for what
    the writer is still doing (here a minute's sleep): the process is killed, and what it had not written
    is in the spool."""
    writer = Writer(f"sqlite:///{tmp_path / 'mlflow.db'}", "ctrl-c", tmp_path / "spool")
    writer._submit(time.sleep, 60)
    (process,) = writer.processes
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert not process.is_alive() and process.exitcode == -signal.SIGKILL


def test_a_spool_file_that_is_no_record_stops_in_one_line_and_stays(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.folder.mkdir()
    (spool.folder / f"{'a' * 32}.json").write_text('{"version": 7}')
    with pytest.raises(UserError, match="is no spool record this lrbench reads"):
        spool.read_all()
    assert (spool.folder / f"{'a' * 32}.json").exists()
    (spool.folder / f"{'a' * 32}.json").unlink()
    (spool.folder / f"{'b' * 32}.pkl").write_bytes(b"old")
    with pytest.raises(UserError, match="kept by an earlier lrbench"):
        spool.read_all()
