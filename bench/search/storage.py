"""Where a study's trials are stored: Optuna's storages, and the embedded journal file, made cheap to
report to.

A storage URL (``sqlite:///``, ``postgresql://``, ...) goes to Optuna's RDB storage; a plain path is a
journal file. The journal file is the embedded default: it costs about a tenth of SQLite per trial with
per-epoch reports (``make perf``'s storage table), and it is safe for several processes on one machine.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import random
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalFileSymlinkLock

from bench.faults import durable_write
from bench.journal import check_records, whole_records


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A URL (sqlite:///, postgresql://, ...) goes to Optuna's RDB storage; a plain path is a journal file."""
    if "://" in url:
        return _rdb_storage(url)
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = JournalFile(str(path))
    journal.repair()
    return JournalStorage(journal)


def _rdb_storage(url: str, attempts: int = 8) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage. Workers that start together on an empty database each create its tables, and
    a database may refuse one of two creations of the same table at once (PostgreSQL answers a duplicate
    key in its catalogue, not "already exists"; Optuna writes its version row and Alembic's stamp the same
    way, looking first and then writing): a worker whose creation failed tries again, a little later each
    time, and then finds the tables made.
    A failure that is no race fails every attempt and is raised (the command's check of the database has
    already said whether it can be reached)."""
    import sqlalchemy.exc

    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
            time.sleep(0.05 * attempt * (1 + random.random()))  # apart, so that the next tries do not meet
    return optuna.storages.RDBStorage(url)  # the last attempt: its failure is raised


@atexit.register
def flush_journals() -> None:
    """Write the reports every journal of this process holds (also at exit)."""
    for journal in list(_JOURNALS):
        journal.flush()


class JournalFile(BaseJournalBackend):
    """Optuna's journal file backend, with one change to when intermediate values (a trial's per-epoch
    report, the most frequent write of a study) are written: they are held in memory and written with the
    process's next other write (a tell, an attribute, a new trial), in the order they came, or with the
    first report that comes once the oldest has waited ``FLUSH_AFTER`` seconds. Every write goes through
    Optuna's own backend (its format, its lock, its fsync), through the backend interface Optuna publishes
    for journals (``BaseJournalBackend``).

    Optuna reads the file back after each write and before each read of a trial; here a stat answers when
    the file has not grown since the last read. A report and its pruning check (13 running trials, 60
    finished) cost 0.42-0.64 ms when each report was written at once (a lock, an append, a read back),
    0.19-0.25 ms so; the default study took 9.2 s against 10.2 s (medians of six alternating runs, the same
    trials). Nothing this process decides changes: a trial keeps its own reported values (its pruning check
    reads them there), and the pruners compare with finished trials (median), whose reports are written
    before their end, or with rung values kept as trial attributes (successive halving, hyperband), which
    are written at once. A killed process loses the reports it held (the last second's, or the last epoch's
    when an epoch takes longer) of its running trials, which are failed and re-run like any trial of a dead
    worker. Same file, same format, same lock: other processes read and write it with Optuna's own backend,
    and see a running trial's reports up to a second late (an epoch, when epochs take longer)."""

    FLUSH_AFTER = 1.0

    def __init__(self, path: str):
        self._path = path
        self._lock = DyingLock(path)
        self._file = JournalFileBackend(path, lock_obj=self._lock)
        self._held: list[dict[str, Any]] = []
        self._held_since = 0.0
        self._mutex = threading.Lock()
        self._read_to: tuple[int, int] | None = None  # (logs read, file size) when the last read ended
        _JOURNALS.add(self)  # flushed at exit

    def repair(self) -> None:
        """Check the file before it is read or appended to, under its lock (no writer is mid-record then).

        A last record cut short (a crash or a full disk in mid-write: Optuna writes each record whole,
        ending with a newline) would be glued to the next record appended, and the file unreadable from
        there on: it is cut off before anything is appended, its bytes kept beside the journal, with one
        line saying so. The process that wrote it died before its write returned, so nothing it did after
        depends on it. A record that is no JSON anywhere else is damage lrbench cannot mend: a UserError
        names the line, and the file is left as it is."""
        if not os.path.exists(self._path):
            return
        self._lock.acquire()
        try:
            with open(self._path, "rb+") as f:
                data = f.read()
                check_records(Path(self._path), data)
                whole = whole_records(data)
                if whole == len(data):
                    return
                torn = Path(f"{self._path}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
                torn.write_bytes(data[whole:])
                f.truncate(whole)
                f.flush()
                os.fsync(f.fileno())
        finally:
            self._lock.release()
        print(
            f"{self._path}: its last record was cut short (a crash in mid-write?); its {len(data) - whole} "
            f"bytes are kept in {torn.name} and the journal goes on without them",
            file=sys.stderr,
        )

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        # Nothing to read when the file has the size it had when the last read ended there (it only grows).
        size = os.stat(self._path).st_size
        if self._read_to == (log_number_from, size):
            return ()
        return self._read(log_number_from, size)

    def _read(self, log_number_from: int, size: int) -> Iterator[dict[str, Any]]:
        n = log_number_from
        for log in self._file.read_logs(log_number_from):
            n += 1
            yield log
        self._read_to = (n, size)  # the file had `size` bytes before these n were read: same size, none new

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with self._mutex:
            if all("intermediate_value" in log for log in logs):
                if not self._held:
                    self._held_since = time.monotonic()
                self._held += logs
                if time.monotonic() - self._held_since >= self.FLUSH_AFTER:
                    self._write_held()
                return
            self._file.append_logs(self._held + logs)
            self._held = []  # once written: a write that fails keeps them for the next
            durable_write()

    def flush(self) -> None:
        """Write the intermediate values held in memory now."""
        with self._mutex:
            self._write_held()

    def _write_held(self) -> None:
        if self._held:
            self._file.append_logs(self._held)
            self._held = []
            durable_write()


_JOURNALS: weakref.WeakSet[JournalFile] = weakref.WeakSet()  # this process's open journals


class DyingLock(JournalFileSymlinkLock):
    """Optuna's default lock for a journal file (a symbolic link beside it), taken under a kernel lock on
    the journal itself (``flock``), which dies with its process.

    A process killed while it holds Optuna's lock (in the milliseconds of a write) leaves the link behind,
    and Optuna breaks a link only once it has stood 30 s: the next run of the study would wait that long.
    Between lrbench processes the kernel lock does the locking, and it is released when its holder dies, so
    a link found while holding it is one a dead process left (or a plain Optuna process's, writing to the
    journal at the same time, which lrbench does not support): it is broken after three seconds, with
    Optuna's warning. Plain Optuna processes that write take the link alone, as before."""

    def __init__(self, path: str):
        super().__init__(path, grace_period=3)  # Optuna's least without a warning
        self._journal = path
        self._held: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._journal, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held = fd
        try:
            return super().acquire()
        except BaseException:
            self._unlock()
            raise

    def release(self) -> None:
        try:
            super().release()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
