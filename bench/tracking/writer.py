"""The study's MLflow writer: a :class:`~bench.tracking.client.Tracker` in a process of its own, so that
MLflow's database work overlaps training (threads would not: that work holds the GIL), and the study
process never imports mlflow.

:class:`Writer` is the study's side: one method per request, each submitting one typed function of this
module to the writer process, which runs it against the process's Tracker (:func:`_request`).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence, Set
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from bench.errors import TrackingServerDown
from bench.faults import durable_write
from bench.tracking.client import RunStart, Tracker, TrialStates, now_ms
from bench.tracking.curves import metric_points
from bench.tracking.names import Curves, FamilyRecord
from bench.tracking.server import stopped_answering
from bench.tracking.spool import Spool, TrialRecord

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from bench.train import TrialResult

P = ParamSpec("P")
T = TypeVar("T")

# --- in the writer process -------------------------------------------------------------------------------

_TRACKER: Tracker | None = None


def _init() -> None:
    gc.disable()  # while importing (see bench.cli.startup): resumed, with the imports frozen, below
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the study's to handle; the writer finishes
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    # The imports are the writer's start-up cost: paid here, while the study process imports torch.
    import mlflow  # noqa: F401

    # What the writer imported lives as long as it does: out of the collector's way.
    gc.freeze()
    gc.enable()


def _exit_with_parent(parent: int) -> None:
    """A study killed outright (kill -9) cannot stop its writer: the writer stops itself. What it had not
    written is in the spool, for the next run to send."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _connect(tracking_uri: str, experiment: str) -> None:
    global _TRACKER
    _TRACKER = Tracker(tracking_uri, experiment)


def _disconnect() -> None:
    if _TRACKER is not None:
        _TRACKER.close()


def _guarded(call: Callable[[Tracker], T], spooled: str | None = None) -> T:
    """One request, in the writer. ``spooled``: the spool file to remove once it is written.

    A tracking server that stopped answering (MLflow gave up after its retries) raises
    :class:`TrackingServerDown`, and so does every request after it at once, rather than each retrying for
    minutes: the study stops, and what it had not written stays in its spool for the next run."""
    tracker = _TRACKER
    assert tracker is not None
    if tracker.down is not None:
        raise TrackingServerDown(tracker.down)
    try:
        out = call(tracker)
    except Exception as exc:
        down = stopped_answering(tracker.uri, exc)  # only a request to a server fails this way
        if down is None:
            raise
        tracker.down = down
        raise TrackingServerDown(down) from None
    if spooled:
        Path(spooled).unlink(missing_ok=True)  # written: the spooled copy is no longer needed
    durable_write()
    return out


def _request(call: Callable[[Tracker], T]) -> T:
    """A request that comes after the writes in flight (:func:`_finish_trial`), so that requests keep their
    order against them: a parent run closes after its trials' runs, a figure reads what is written."""
    assert _TRACKER is not None
    _TRACKER.inflight.wait_behind()
    return _guarded(call)


def _open_parent(
    study: str, existing: str | None, params: Mapping[str, Any], uid: str, find: float | None
) -> str:
    return _request(lambda t: t.open_parent(study, existing, params, uid, find))


def _start_trials(trials: Sequence[RunStart], stage: str) -> list[str]:
    # A run's creation waits for nothing before it.
    return _guarded(lambda t: t.start_trials(trials, stage))


def _finish_trial(record: TrialRecord, spooled: str) -> None:
    """A trial's final write: made by one of several requests at once where the store allows it
    (:meth:`InFlight.write_behind`)."""
    assert _TRACKER is not None

    def write() -> None:
        _guarded(lambda t: t.finish_trial(record), spooled)

    if not _TRACKER.inflight.write_behind(write):
        write()


def _close_run(run_id: str, state: str, failure: str | None) -> None:
    _request(lambda t: t.close_run(run_id, state, failure))


def _close_orphans(uid: str, study: str, trials: TrialStates, read_at: int) -> int:
    return _request(lambda t: t.close_orphans(uid, study, trials, read_at))


def _close_parent(status: str) -> None:
    _request(lambda t: t.close_parent(status))


def _log_parent_artifacts(
    paths: Sequence[Path],
    text: Mapping[str, str],
    metrics: Mapping[str, float],
    families: Mapping[str, FamilyRecord] | None,
) -> None:
    _request(lambda t: t.log_parent_artifacts(paths, text, metrics, families))


def _draw(runs: Mapping[str, str], keys: Sequence[str], draw: Callable[..., T], *args: Any) -> T:
    curves = _request(lambda t: t.curves(runs, keys))
    return draw(curves, *args)


def _warm(prepare: Callable[[], object]) -> None:
    """What ``prepare`` imports, paid while the writer waits for work, not when it is first needed."""
    prepare()
    gc.freeze()  # as in _init


# --- in the study process ---------------------------------------------------------------------------------


class _Process:
    """The writer process: a one-worker process pool, and its process."""

    def __init__(self) -> None:
        before = {p.pid for p in multiprocessing.active_children()}
        self.pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a process with torch threads
            initializer=_init,
        )
        self.pool.submit(int)  # starts the process now (the pool starts it at the first task)
        self.processes: list[BaseProcess] = [
            p for p in multiprocessing.active_children() if p.pid not in before
        ]

    def stop(self) -> None:
        """Stop the process at once, without its interpreter's teardown of the thousands of modules mlflow
        imports (about a second here). Only for a writer with nothing left to write."""
        for process in self.processes:
            process.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)


_PRESTARTED: _Process | None = None  # a writer process started before the study process imported torch


def prestart() -> None:
    """Start the writer process before this process imports torch: on two cores, its import of mlflow
    (seconds) then runs beside the study's imports instead of after them. A :class:`Writer` takes it up;
    :func:`discard_prestarted` stops one that no study took."""
    global _PRESTARTED
    if _PRESTARTED is None:
        _PRESTARTED = _Process()


def discard_prestarted() -> None:
    global _PRESTARTED
    process, _PRESTARTED = _PRESTARTED, None
    if process is not None:
        process.stop()  # it holds nothing yet: no need to wait for its imports to finish


class Writer:
    """A study's writer. ``submit``-like methods return futures; none waits unless it says so.

    A trial's final write is first kept in the spool (:mod:`bench.tracking.spool`): a process killed before
    its writer caught up loses nothing, and the next run of the study sends the spool
    (:meth:`replay_spool`).

    Creating trials' runs goes first: finished trials' writes (and the ``warm`` imports) wait in this
    process while the writer has runs to create, and then go to it a few at a time (:meth:`pump`). The
    study waits for a trial's run before it tells the trial, and tells every trial that ended before it
    asks new ones; behind a queue of other trials' writes, a run would keep it waiting."""

    # Deferred writes in the writer's queue at once: a run asked for waits behind at most these.
    IN_FLIGHT = 2

    def __init__(
        self, tracking_uri: str, experiment: str, spool_dir: Path, warm: Callable[[], object] | None = None
    ):
        """``warm``: a module-level function the writer runs early in the study, while it waits for work
        (the imports of what :meth:`draw` will need at the end)."""
        global _PRESTARTED
        self.spool = Spool(spool_dir)
        self._process, _PRESTARTED = _PRESTARTED or _Process(), None
        self._warm = warm
        self._pending: list[Future[Any]] = []
        self._batches = 0
        self._starts: list[Future[list[str]]] = []  # runs being created
        self._deferred: list[Callable[[], Future[Any]]] = []  # submissions waiting for no run creation
        self._deferring: list[Future[Any]] = []  # deferred submissions handed to the writer
        self._submit(_connect, tracking_uri, experiment)

    @property
    def processes(self) -> list[BaseProcess]:
        """The writer's process (for tests and for stopping it)."""
        return list(self._process.processes)

    def _submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        # Writes that are done leave the list, and a failed one is raised now rather than at the end.
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            f.result()
        future = self._process.pool.submit(fn, *args, **kwargs)
        self._pending.append(future)
        return future

    # --- ordering: runs first -----------------------------------------------------------------------------

    def pump(self) -> None:
        """Hand deferred writes to the writer while no run is being created, a few at a time; cheap when
        there is nothing to do (the study calls it every epoch)."""
        if not self._deferred:
            return
        self._starts = [f for f in self._starts if not f.done()]
        if self._starts:
            return
        self._deferring = [f for f in self._deferring if not f.done()]
        while self._deferred and len(self._deferring) < self.IN_FLIGHT:
            self._deferring.append(self._deferred.pop(0)())

    def _defer(self, submit: Callable[[], Future[Any]]) -> None:
        self._deferred.append(submit)
        self.pump()

    def _submit_deferred(self) -> None:
        """Everything deferred, now (before a request that must come after them, and at the end)."""
        deferred, self._deferred = self._deferred, []
        for submit in deferred:
            submit()

    # --- requests -----------------------------------------------------------------------------------------

    def open_parent(
        self,
        study: str,
        existing_run_id: str | None,
        params: Mapping[str, Any],
        uid: str,
        find: float | None = None,
    ) -> Future[str]:
        """The parent run's id, to come (see :meth:`Tracker.open_parent`). The writer keeps the id (and
        ``uid``) for the trial runs it creates after it."""
        return self._submit(_open_parent, study, existing_run_id, dict(params), uid, find)

    def start_trials(self, trials: Sequence[RunStart], stage: str = "search") -> Future[list[str]]:
        """The trials' run ids, to come (runs tagged with the ``stage``: search or confirm), in one request
        whichever studies the trials belong to.

        After the second group of runs (early in a study: the first trials to end make room for it), the
        writer runs ``warm``, so that what needs them at the end does not wait for them; runs
        asked for meanwhile wait, training never does. Any earlier, the first runs would wait for them, and
        with them the first trials' results."""
        future = self._submit(_start_trials, list(trials), stage)
        self._starts.append(future)
        self._batches += 1
        warm = self._warm
        if self._batches == 2 and warm is not None:
            self._defer(lambda: self._submit(_warm, warm))
        return future

    def finish_trial(
        self,
        run_id: str,
        state: str,
        params: Mapping[str, Any],
        result: TrialResult | None,
        failure: str | None = None,
    ) -> None:
        """A finished trial's writes: kept in the spool, then sent when no run is being created. The points'
        timestamp is fixed here and spooled with them (see :mod:`bench.tracking.spool`)."""
        points = metric_points(result) if result is not None else []
        record = TrialRecord(run_id, state, dict(params), points, failure, now_ms())
        path = self.spool.keep(record)
        self._defer(lambda: self._submit(_finish_trial, record, str(path)))

    def replay_spool(self, send: Set[str], drop: Set[str]) -> int:
        """Send what a killed process had spooled but not written (in the background: the writer takes
        requests in order, so these land before anything submitted later); returns how many trials.

        Only the records of the runs in ``send`` go (those of trials told finished); those of ``drop``
        (trials failed since: their process died before it told them) are removed, for their runs are
        closed as killed; any other stays for whoever knows its trial (another study's, a live worker's)."""
        sent = 0
        for path, record in self.spool.read_all():
            if record.run_id in send:
                self._submit(_finish_trial, record, str(path))
                sent += 1
            elif record.run_id in drop:
                path.unlink(missing_ok=True)
        return sent

    def close_run(self, run_id: str, state: str, failure: str | None = None) -> Future[None]:
        return self._submit(_close_run, run_id, state, failure)

    def close_orphans(self, uid: str, study: str, trials: TrialStates, read_at: int) -> Future[int]:
        return self._submit(_close_orphans, uid, study, dict(trials), read_at)

    def log_parent_artifacts(
        self,
        paths: Sequence[Path] = (),
        text: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        families: Mapping[str, FamilyRecord] | None = None,
    ) -> Future[None]:
        """Files and texts on the parent run, its summary metrics, and one run per ranked family (None:
        the family runs as they are)."""
        return self._submit(
            _log_parent_artifacts, list(paths), dict(text or {}), dict(metrics or {}), families
        )

    def close_parent(self, status: str) -> Future[None]:
        """After every trial's writes (the writer takes requests in order)."""
        self._submit_deferred()
        return self._submit(_close_parent, status)

    def draw(
        self,
        runs: Mapping[str, str],
        keys: Sequence[str],
        draw: Callable[Concatenate[Curves, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``draw(curves, *args)`` run in the writer, on the runs' curves read there (after every write
        asked for before it, deferred ones too); waits for its answer. ``draw`` must be a module-level
        function (it is sent to the writer by name)."""
        self._submit_deferred()
        return self._submit(_draw, dict(runs), list(keys), draw, *args).result()

    def flush(self) -> None:
        """Wait for every write, deferred ones too; the first error is raised."""
        self._submit_deferred()
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def stop(self) -> None:
        """Stop the writer at once, what it has not written left in the spool (its process died, or the
        study stops on a second Ctrl-C)."""
        self._process.stop()

    def close(self) -> None:
        """Every write made, then the writer stopped. Interrupted while it waits (a second Ctrl-C: a study's
        first one stops its trials, then it waits here), the writer is stopped at once: what it had not
        written is in the spool, and the runs it would have closed are closed by the study's next run, as
        after a process killed outright."""
        try:
            self.flush()
        except KeyboardInterrupt:
            self._process.stop()
            raise
        except BaseException:
            self._process.pool.shutdown(wait=True)
            raise
        self._submit(_disconnect).result()
        self._process.stop()  # everything is written and committed
