"""The storages: the embedded journal file (reports held in memory, Optuna's format and lock) and the RDB
storage opened while another worker creates its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from bench.errors import UserError
from bench.search import open_storage
from bench.search.storage import JournalFile

from helpers import ROOT


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
        "import sys, optuna; from bench.search import open_storage; "
        "s = optuna.create_study(study_name='x', storage=open_storage(sys.argv[1])); "
        "s.ask().report(0.5, 0)"  # held, and no other write follows
    )
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, check=True)
    assert path.read_text().count('"intermediate_value":0.5') == 1


def test_journal_file_keeps_held_reports_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.storages.journal import JournalFileBackend

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


def test_a_storage_whose_tables_another_worker_is_creating_is_opened_on_a_later_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database refused this worker's creation of a table another worker created at the same moment:
    the storage is opened on a later try; a failure that every try meets is raised."""
    import sqlalchemy.exc

    from bench.search import storage as storage_module

    tries: list[str] = []

    def storage(url: str) -> str:
        tries.append(url)
        if len(tries) < 3 or url == "always":
            raise sqlalchemy.exc.IntegrityError("CREATE TYPE studydirection", {}, Exception("duplicate key"))
        return "opened"

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    assert storage_module._rdb_storage("postgresql://db") == "opened" and len(tries) == 3
    tries.clear()
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        storage_module._rdb_storage("always", attempts=4)
    assert len(tries) == 4


def _journal_of_three_trials(path: Path) -> None:
    study = optuna.create_study(study_name="j", storage=open_storage(str(path)))
    for x in range(3):
        study.tell(study.ask(), float(x))


def test_a_torn_last_record_is_cut_off_and_kept_before_anything_is_appended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash in mid-write leaves a record without its newline: without the repair, the next record is
    glued to it and the file unreadable from there on."""
    path = tmp_path / "optuna.journal"
    _journal_of_three_trials(path)
    whole = path.read_bytes()
    torn = b'{"op_code":4,"worker_id":"w","trial_id":'
    path.write_bytes(whole + torn)
    study = optuna.load_study(study_name="j", storage=open_storage(str(path)))
    err = capsys.readouterr().err
    [kept] = tmp_path.glob("optuna.journal.torn-*")
    assert kept.read_bytes() == torn and path.read_bytes() == whole
    assert err.count("\n") == 1 and f"its {len(torn)} bytes are kept in {kept.name}" in err
    study.tell(study.ask(), 3.0)  # appended after the whole records
    again = optuna.load_study(study_name="j", storage=open_storage(str(path)))
    assert [t.value for t in again.trials] == [0.0, 1.0, 2.0, 3.0]  # no finished trial lost


def test_a_record_that_is_no_json_is_named_and_the_file_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    _journal_of_three_trials(path)
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3][: len(lines[3]) // 2]  # damage inside the file, not at its end
    damaged = b"\n".join(lines)
    path.write_bytes(damaged)
    with pytest.raises(UserError, match=rf"^{path}, line 4: no journal record \(.*\); the file is left"):
        open_storage(str(path))
    assert path.read_bytes() == damaged and list(tmp_path.iterdir()) == [path]


def test_a_lock_left_by_a_killed_process_holds_the_next_one_seconds_not_thirty(tmp_path: Path) -> None:
    """Optuna's lock link, left behind by a process killed in mid-write, is broken after three seconds: the
    kernel lock taken with it died with its holder, so no live lrbench process holds the link."""
    import time

    path = tmp_path / "optuna.journal"
    _journal_of_three_trials(path)
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[2]); from bench.search.storage import DyingLock; "
        "DyingLock(sys.argv[1]).acquire(); os._exit(0)"  # dies holding both locks
    )
    subprocess.run([sys.executable, "-c", script, str(path), str(ROOT)], check=True)
    assert Path(f"{path}.lock").is_symlink()  # what the dead process left
    started = time.monotonic()
    study = optuna.load_study(study_name="j", storage=open_storage(str(path)))
    study.tell(study.ask(), 3.0)
    assert time.monotonic() - started < 10  # Optuna's own grace is 30 s
    assert not Path(f"{path}.lock").exists()
