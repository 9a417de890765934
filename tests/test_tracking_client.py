"""The study's view of a tracking store: workers that open a new store together, the runs a dead process
left RUNNING, and the parent run workers share."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.tracking.client import Tracker, now_ms
from bench.tracking.names import ORPHAN_TAG


@pytest.mark.slow
def test_workers_that_start_together_share_a_new_local_store(tmp_path: Path) -> None:
    """Two workers of one study starting at once on a new embedded store: one creates MLflow's tables and
    the experiment, the other finds them (without the lock, one of them failed creating the tables)."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    code = (
        f"from bench.tracking.client import Tracker; t = Tracker({uri!r}, 'together'); "
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


def test_runs_are_made_to_agree_with_their_trials(tmp_path: Path) -> None:
    """A worker opening a study makes the runs agree with its snapshot of the study's trials: a run a dead
    process left RUNNING is closed as its trial ended; a run of a trial that died (FAIL) is KILLED, also one
    MLflow had finished; a run that is not its trial's, or of a trial the storage no longer has, is KILLED
    and tagged as an orphan. A live worker's run is left alone (its trial RUNNING, or asked since the
    snapshot: a number unknown and a run made less than a minute before), and so are the runs of another
    study of the same name (another storage) that shares the experiment, and those of another Optuna study
    of the same study (a family's own, numbered from 0 too)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    other = Tracker(uri, "orphans")  # the same study name in another output dir: its trial 0 is running
    other.open_parent("orphans", None, {}, "theirs")
    [theirs] = other.start_trials([("orphans", 0, "StepLR")])
    tracker = Tracker(uri, "orphans")
    tracker.open_parent("orphans", None, {}, "ours")
    ids = tracker.start_trials([("orphans", n, "StepLR") for n in range(6)])
    [family_run] = tracker.start_trials([("orphans/StepLR", 0, "StepLR")])
    tracker.close_run(ids[5], "COMPLETE")  # its writes made, then the process died before its tell
    snapshot = {
        "0": ("FAIL", None, "worker process died (killed?)"),  # died before its tell
        "1": ("COMPLETE", ids[1], None),  # told; its writes not yet made
        "2": ("RUNNING", ids[2], None),  # a live worker's
        # "3": asked by a live worker after the snapshot was taken
        "4": ("COMPLETE", "another-run", None),
        "5": ("FAIL", ids[5], "worker process died (killed?)"),
    }
    assert tracker.close_orphans("ours", "orphans", snapshot, now_ms()) == 4
    assert tracker.client.get_run(family_run).info.status == "RUNNING"
    runs = {n: tracker.client.get_run(run_id) for n, run_id in enumerate(ids)}
    statuses = ["KILLED", "FINISHED", "RUNNING", "RUNNING", "KILLED", "KILLED"]
    assert [runs[n].info.status for n in range(6)] == statuses
    assert runs[0].data.tags["failure"] == "worker process died (killed?)"
    assert runs[1].data.tags["state"] == "COMPLETE"
    assert runs[4].data.tags[ORPHAN_TAG] == "trial 4 is run another-run"
    assert runs[5].data.tags["state"] == "KILLED"
    assert tracker.client.get_run(theirs).info.status == "RUNNING"
    assert tracker.client.get_run(str(tracker.parent_id)).info.status == "RUNNING"  # not a trial run
    # Two minutes on, the run of trial 3, which the storage still has not, is an orphan (a journal restored
    # from an older copy): KILLED and tagged, as the others are not twice.
    assert tracker.close_orphans("ours", "orphans", snapshot, now_ms() + 120_000) == 1
    run = tracker.client.get_run(ids[3])
    assert (run.info.status, run.data.tags[ORPHAN_TAG]) == ("KILLED", "the study's storage has no trial 3")
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
