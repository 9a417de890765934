"""MLflow tracking: the only module that imports mlflow.

One experiment per study, one parent run per study, one nested child run per trial. A trial's metrics,
params and tags go out in a few ``log_batch`` calls when it ends (at most 1000 metrics a call), never one
call per point. Every run is closed with its trial's real state, and runs a killed process left RUNNING
are closed by the next process that opens the study (:meth:`Tracker.close_orphans`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import TrackingServerDown, UserError

if TYPE_CHECKING:
    from bench.config import Locations, StudyConfig
    from bench.engine import TrialResult

# mlflow is imported where a Tracker is made: the study process then never pays for importing it (about
# two seconds here), only the writer process does. This module stays the only one that imports mlflow.
PARENT_RUN_TAG = "mlflow.parentRunId"  # mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID
STUDY_UID_TAG = "lrbench.study_uid"  # one study's runs, apart from another's of the same name
ROLE_TAG = "lrbench.role"  # "study" on a study's parent run
Point = tuple[str, float, int]  # (metric key, value, step)


def _quiet() -> None:
    """MLflow announces database creation and migrations at INFO; a study's output is about trials. Called
    after mlflow is imported (its import sets its loggers' levels)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


# Optuna's trial state -> MLflow's run status.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}
MAX_METRICS, MAX_PARAMS = 1000, 100  # per log_batch call
MAX_PARAM_CHARS = 6000


def compact_curve(values: Sequence[float], rel_tol: float = 1e-12) -> list[tuple[int, float]]:
    """The (step, value) points that linear interpolation needs to give back every value.

    A point is dropped when it is collinear with both neighbours (equal steps before and after it). Between
    two kept points every dropped point then has the same step, so the stretch is one straight line: flat
    stretches and linear ramps cost two points, curved stretches keep every point.
    """
    n = len(values)
    kept = [(i, values[i]) for i in (0,) if n]
    for i in range(1, n - 1):
        before, after = values[i] - values[i - 1], values[i + 1] - values[i]
        scale = max(abs(values[i - 1]), abs(values[i]), abs(values[i + 1]))
        if abs(after - before) > rel_tol * scale:
            kept.append((i, values[i]))
    if n > 1:
        kept.append((n - 1, values[-1]))
    return kept


def expand_curve(points: Iterable[tuple[int, float]]) -> list[float]:
    """Linear interpolation of compact points back to one value per step (the inverse of compact_curve)."""
    pts = sorted(points)
    out: list[float] = []
    for (s0, v0), (s1, v1) in itertools.pairwise(pts):
        out.extend(v0 + (v1 - v0) * (k - s0) / (s1 - s0) for k in range(s0, s1))
    if pts:
        out.append(pts[-1][1])
    return out


def _local_artifact_root(tracking_uri: str) -> str | None:
    """For a local SQLite store, artifacts go beside the database (not into the working directory)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None  # a tracking server decides (it proxies artifacts by default)


_TUNED: set[str] = set()  # the SQLite tracking databases whose connections get _on_connect's settings
_OPEN: set[Any] = set()  # the pool entries of those connections, for release_sqlite


def _tune_sqlite(tracking_uri: str) -> None:
    """A local SQLite tracking store is written in WAL mode with ``synchronous=NORMAL``: a commit appends to
    the write-ahead log without waiting for the disk. A study's writer commits several times per trial
    (MLflow's ``log_batch`` commits params, metrics and tags separately); measured here this takes a
    quarter off its work, and the default study about a second. A killed process loses nothing committed
    (the kernel has the data); only a machine crash can lose the last commits, as with the study's
    journal. Readers (``lrbench ui``) do not wait for the writer. :func:`release_sqlite` folds the log
    back into the database file when a Tracker closes. Connections to any other database (an Optuna
    SQLite storage in the same process, PostgreSQL) are left as they are."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)
    _TUNED.add(os.path.realpath(tracking_uri.removeprefix("sqlite:///")))


def _on_connect(dbapi_connection: Any, pool_entry: Any) -> None:
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    files = dbapi_connection.execute("PRAGMA database_list").fetchall()
    main_file = next((row[2] for row in files if row[1] == "main"), "")
    if main_file and os.path.realpath(main_file) in _TUNED:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        _OPEN.add(pool_entry)


@contextlib.contextmanager
def _one_at_a_time(tracking_uri: str) -> Iterator[None]:
    """Workers on this machine open a local SQLite store one at a time (a lock on its folder, nothing left
    behind): two that start together on a new store would both create MLflow's tables, and one fails. A
    tracking server creates its tables once."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and the lock with it


def _new_store_from_template(tracking_uri: str) -> None:
    """A new embedded store starts as a copy of an empty one that this MLflow version made once per machine
    (in the cache of :mod:`bench.data`): MLflow creates a store's tables by running its schema migrations
    one by one, 1.1 s here on every new store, and a study's first results wait for its runs. The template
    has no Default experiment: MLflow adds it on opening the copy, with the copy's own artifact folder.
    Without a cache folder, MLflow creates the tables as ever."""
    import shutil
    import sqlite3
    import tempfile

    import mlflow

    from bench.data import cache_dir

    path = Path(tracking_uri.removeprefix("sqlite:///"))
    folder = cache_dir()
    if not tracking_uri.startswith("sqlite:///") or path.exists() or folder is None:
        return
    template = folder / f"mlflow-{mlflow.__version__}-empty.db"
    try:
        if not template.is_file():
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                db = Path(tmp) / "empty.db"
                store = SqlAlchemyStore(f"sqlite:///{db}", str(Path(tmp) / "artifacts"))
                store.engine.dispose()
                with contextlib.closing(sqlite3.connect(db)) as con, con:
                    con.execute("DELETE FROM experiments WHERE experiment_id = 0")
                os.replace(db, template)  # whole or not at all, for other processes
        tmp_copy = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # made as MLflow would make the file
        try:
            shutil.copyfile(template, tmp_copy)
            os.replace(tmp_copy, path)
        finally:
            Path(tmp_copy).unlink(missing_ok=True)
    except (OSError, sqlite3.Error):
        return  # MLflow creates the tables itself


def release_sqlite() -> None:
    """Close this process's connections to the tuned SQLite stores (none may be in use): the last one to
    close writes the write-ahead log into the database file and removes it, so a finished study leaves one
    self-contained ``mlflow.db``. The pool reconnects if the store is used again."""
    while _OPEN:
        _OPEN.pop().close()  # sqlalchemy's ConnectionPoolEntry.close: the DBAPI connection only


def _now_ms() -> int:
    return int(time.time() * 1000)


def experiment_id(tracking_uri: str, name: str) -> str | None:
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
    return None if found is None else found.experiment_id


def is_tracking_server(uri: str) -> bool:
    """An MLflow tracking server (http or https), as opposed to a store MLflow opens itself."""
    return uri.split(":", 1)[0] in ("http", "https")


class Tracker:
    """One study's view of an MLflow tracking store.

    A tracking server answers each request after a round trip, and ``mlflow server``'s default (uvicorn
    with several workers) adds about 40 ms to every request on a kept-alive connection on Linux: its
    sockets leave Nagle's algorithm on, and the response body waits for the client's delayed ACK (uvicorn
    issue 3149). One request at a time, a trial's run and writes took about 230 ms here. So against a
    server, runs are created and finished trials written by up to ``REQUESTS`` requests at once
    (:meth:`start_trials`, :meth:`write_behind`): the default study runs 2x as fast as with one at a time
    here (``python -m bench.perf server``, the server sharing the two cores), and more is to be had where
    the round trip is longer. ``LRBENCH_TRACKING_REQUESTS`` sets how many (1: one at a time). A database
    store is written one request at a time (SQLite takes one writer anyway, and its work holds the GIL)."""

    # Within MLflow's HTTP connection pool (MLFLOW_HTTP_POOL_MAXSIZE, 10 by default).
    REQUESTS = 8

    def __init__(self, tracking_uri: str, experiment: str):
        # MLflow prints each run's address when a run against a server ends, after reading the run back
        # (one more request): a study prints its own progress, and `lrbench ui` gives the address.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow import MlflowClient

        _quiet()
        server = is_tracking_server(tracking_uri)
        if server:
            _announce_retries(tracking_uri)  # before the first request: a server may be down from the start
        _tune_sqlite(tracking_uri)
        with _one_at_a_time(tracking_uri):
            _new_store_from_template(tracking_uri)
            self.client = MlflowClient(tracking_uri=tracking_uri)  # creates a new store's tables
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                self.experiment_id = self._create_experiment(experiment, tracking_uri)
            else:
                self.experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(self.experiment_id)
        self.parent_id: str | None = None
        self.uid = ""  # the study's (open_parent)
        self.requests = 1
        self._threads: ThreadPoolExecutor | None = None  # the requests in flight, against a server
        if server:
            self.requests = _requests_setting(self.REQUESTS)
            self._threads = ThreadPoolExecutor(self.requests, thread_name_prefix="lrbench-mlflow")
        self._behind: list[Future[None]] = []  # writes in flight (write_behind)
        self.uri = tracking_uri
        self.down: str | None = None  # why the tracking server is taken to be down (see bench.tracking._call)

    def _create_experiment(self, name: str, tracking_uri: str) -> str:
        """The experiment, created here unless another worker of the study creates it first."""
        from mlflow.exceptions import MlflowException

        try:
            return str(
                self.client.create_experiment(name, artifact_location=_local_artifact_root(tracking_uri))
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def close(self) -> None:
        """Done with the store (see :func:`release_sqlite`), every write made; a later call opens it again."""
        self.wait_behind()
        release_sqlite()

    # --- writes in flight (a tracking server) ------------------------------------------------------------

    def write_behind(self, write: Callable[[], None]) -> bool:
        """Against a tracking server, ``write`` is made by one of up to ``REQUESTS`` requests at once, and
        this returns True as soon as it has a place (after raising the first error of the writes before it);
        for a database store it returns False and the caller writes. Writes made this way must not depend
        on each other's order: :meth:`wait_behind` is the barrier."""
        if self._threads is None:
            return False
        self._collect(block=len(self._behind) >= self.requests)
        self._behind.append(self._threads.submit(write))
        return True

    def wait_behind(self) -> None:
        """Every write in flight is made; the first that failed is raised (the others are waited for)."""
        while self._behind:
            self._collect(block=True)

    def _collect(self, block: bool) -> None:
        if block and self._behind:
            wait(self._behind, return_when=FIRST_COMPLETED)
        done = [f for f in self._behind if f.done()]
        self._behind = [f for f in self._behind if not f.done()]
        errors = [e for f in done if (e := f.exception()) is not None]
        if errors:
            wait(self._behind)  # none is left half-done behind the error
            self._behind = []
            raise errors[0]

    def _each(self, request: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``request`` made for each item, the answers in order: against a tracking server, by up to
        ``REQUESTS`` requests at once."""
        if self._threads is None or len(items) < 2:
            return [request(item) for item in items]
        return list(self._threads.map(request, items))

    # --- the parent run ----------------------------------------------------------------------------------

    def open_parent(
        self,
        study: str,
        existing_run_id: str | None,
        params: Mapping[str, Any],
        uid: str,
        find: float | None = None,
    ) -> str:
        """Reopen the study's parent run (a resumed study keeps one parent) or create it. ``uid`` tells the
        study apart from others of the same name (in other storages) that share its experiment: the parent
        and every trial run carry it (``STUDY_UID_TAG``). Given ``find`` (seconds) and no run id, the parent
        another worker made is looked for by its uid, until it appears or for that long, before one is
        made: workers that start a study together share its parent."""
        self.uid = uid
        if existing_run_id is None and find is not None:
            existing_run_id = self._find_parent(uid, find)
        if existing_run_id is not None:
            try:
                self.client.update_run(existing_run_id, status="RUNNING")
                self.client.set_tag(existing_run_id, STUDY_UID_TAG, uid)
                self.parent_id = existing_run_id
                return existing_run_id
            except Exception:  # the run was deleted from the store: start a new parent
                pass
        tags = {"study": study, ROLE_TAG: "study", STUDY_UID_TAG: uid}
        run = self.client.create_run(self.experiment_id, run_name=f"study {study}", tags=tags)
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=_params(params))
        return self.parent_id

    def _find_parent(self, uid: str, seconds: float) -> str | None:
        """The study's first parent run (by its uid), looked for every 0.2 s for at most ``seconds``."""
        query = f"tags.`{ROLE_TAG}` = 'study' and tags.`{STUDY_UID_TAG}` = '{uid}'"
        deadline = time.monotonic() + seconds
        while True:
            found = self.client.search_runs(
                [self.experiment_id], filter_string=query, max_results=1, order_by=["attributes.start_time"]
            )
            if found:
                return str(found[0].info.run_id)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def close_parent(self, status: str) -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status=status)

    def log_parent_artifacts(self, paths: Iterable[Path], text: Mapping[str, str] = {}) -> None:
        assert self.parent_id is not None
        for path in paths:
            if path.exists():
                self.client.log_artifact(self.parent_id, str(path))
        for name, content in text.items():
            self.client.log_text(self.parent_id, content, name)

    # --- trial runs --------------------------------------------------------------------------------------

    def start_trial(self, study: str, number: int, scheduler: str) -> str:
        """Create the trial's child run at trial start, so a killed process leaves a run we can close."""
        assert self.parent_id is not None
        tags = {
            PARENT_RUN_TAG: self.parent_id,
            STUDY_UID_TAG: self.uid,
            "scheduler": scheduler,
            "study": study,
            "trial_number": str(number),
            "state": "RUNNING",
        }
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{number:04d} {scheduler}", tags=tags
        )
        return run.info.run_id

    def start_trials(self, study: str, trials: Sequence[tuple[int, str]]) -> list[str]:
        """The trials' runs, in order; against a tracking server, created by several requests at once."""
        return self._each(lambda t: self.start_trial(study, *t), trials)

    def finish_trial(
        self,
        run_id: str,
        state: str,
        params: Mapping[str, Any],
        points: Sequence[Point] = (),
        failure: str | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Write the trial's params, curves and final metrics (:func:`metric_points`) in batches, then
        close the run. ``timestamp`` (ms) is the points' own, else now."""
        from mlflow.entities import Metric

        ts = _now_ms() if timestamp is None else timestamp
        metrics = [Metric(key, value, ts, step) for key, value, step in points]
        tags = _tags(state, failure)
        param_list = _params(params)
        first = True
        while first or metrics or param_list:
            self.client.log_batch(
                run_id,
                metrics=metrics[:MAX_METRICS],
                params=param_list[:MAX_PARAMS],
                tags=tags if first else [],
            )
            metrics, param_list, first = metrics[MAX_METRICS:], param_list[MAX_PARAMS:], False
        self.client.set_terminated(run_id, status=RUN_STATUS[state])

    def close_run(self, run_id: str, state: str, failure: str | None = None) -> None:
        """Close a run without results (a trial killed or failed before it could log)."""
        self.client.log_batch(run_id, tags=_tags(state, failure))
        self.client.set_terminated(run_id, status=RUN_STATUS[state])

    def close_orphans(self, uid: str, trials: Mapping[str, tuple[str, str | None, str | None]]) -> int:
        """Close trial runs of the study ``uid`` left RUNNING by a process that died (runs of another study
        of the same name, which shares the experiment, are left alone). ``trials`` maps each trial number to
        its Optuna state, MLflow run id and failure, as the study's storage had them when this process
        opened it. A trial is stored before its run is created, so a run whose trial is not in ``trials``
        belongs to a worker that asked the trial since: it is left alone, as is one whose trial is still
        RUNNING (a live worker's) or is owned by another run. A run whose trial died (FAIL) is KILLED; one
        whose trial finished keeps its state."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{STUDY_UID_TAG}` = '{uid}'",
            max_results=5000,
        )
        closed = 0
        for run in runs:
            run_id = run.info.run_id
            known = trials.get(run.data.tags.get("trial_number", ""))
            if known is None:  # a run of a trial asked since, or the study's parent run (no trial number)
                continue
            state, owner_run, failure = known
            if state == "RUNNING" or (owner_run is not None and owner_run != run_id):
                continue
            self.close_run(run_id, "KILLED" if state == "FAIL" else state, failure)
            closed += 1
        return closed

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def summary_figure(self, runs: Mapping[str, str], key: str, metric: str, path: Path) -> list[str]:
        """The study's summary figure from the runs' own curves (label -> run id): `lr` and `key`. Drawn
        where the tracking store is open; a study's writer process has imported matplotlib while idle.
        Returns the labels of runs without curves yet (:func:`bench.report.summary_figure`)."""
        from bench.report import summary_figure

        wanted = [(run_id, k) for run_id in runs.values() for k in ("lr", key)]
        got = dict(zip(wanted, self._each(lambda rk: self.history(*rk), wanted), strict=True))
        curves = {label: (got[run_id, "lr"], got[run_id, key]) for label, run_id in runs.items()}
        return summary_figure(curves, metric, path)


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _params(params: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, _param(v)) for k, v in params.items()]


def _tags(state: str, failure: str | None) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag("state", state)] + ([RunTag("failure", failure[:5000])] if failure else [])


def metric_points(result: TrialResult) -> list[Point]:
    """DESIGN.md's names: lr per optimizer step (compact), per-epoch curves, final test metrics."""
    out: list[Point] = [("lr", float(v), step) for step, v in compact_curve(result.lrs)]
    for key, values in (
        ("train/loss", result.train_loss),
        ("val/loss", result.val_loss),
        ("val/accuracy", result.val_accuracy),
    ):
        out += [(key, float(v), epoch) for epoch, v in enumerate(values)]
    if not math.isnan(result.test_accuracy):
        out += [("test/loss", result.test_loss, 0), ("test/accuracy", result.test_accuracy, 0)]
    return out


# --- tracking off the training thread ------------------------------------------------------------------

_WORKER: Tracker | None = None
_PRESTARTED: Any = None  # a writer process started before the study process imported torch


def _init_worker() -> None:
    gc.disable()  # while importing (see bench.entry.end_startup): resumed, with the imports frozen, below
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the study's to handle; the writer finishes
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    # The imports are the writer's start-up cost: paid here, while the study process imports torch. MLflow
    # imports its database store only when a client first opens one (about a second here, for an existing
    # database as much as for a new one); the embedded default and a PostgreSQL store both use it.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    # What the writer imported lives as long as it does: out of the collector's way (as in
    # bench.entry.end_startup; here 2,300 unreachable objects are frozen with it, a collection 0.27 s).
    gc.freeze()
    gc.enable()


def _warm_figure_imports() -> None:
    """The writer waits for work most of a study: the summary figure's imports are paid then, not at the
    end (about a second here)."""
    import bench.plots
    import bench.report  # noqa: F401

    gc.freeze()  # as in _init_worker (a collection here found nothing unreachable)


def _close_worker() -> None:
    if _WORKER is not None:
        _WORKER.close()


def _connect(tracking_uri: str, experiment: str) -> None:
    global _WORKER
    _WORKER = Tracker(tracking_uri, experiment)


def _writer_pool() -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),  # no fork of a process with torch threads
        initializer=_init_worker,
    )
    pool.submit(int)  # starts the process now (the pool starts it at the first task)
    return pool


def prestart_writer() -> None:
    """Start the writer process before this process imports torch: on two cores, its import of mlflow
    (seconds) then runs beside the study's imports instead of after them. :class:`AsyncTracker` takes it
    up; :func:`discard_prestarted_writer` stops one that no study took."""
    global _PRESTARTED
    if _PRESTARTED is None:
        _PRESTARTED = _writer_pool()


def discard_prestarted_writer() -> None:
    global _PRESTARTED
    pool, _PRESTARTED = _PRESTARTED, None
    if pool is not None:
        _stop_writer(pool)  # it holds nothing yet: no need to wait for its imports to finish


def _stop_writer(pool: Any) -> None:
    """Stop the writer process at once, without its interpreter's teardown of the thousands of modules
    mlflow imports (about a second here). Only for a writer with nothing left to write."""
    for proc in list(getattr(pool, "_processes", {}).values()):  # the executor's own process handles
        proc.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _exit_with_parent(parent: int) -> None:
    """A study killed outright (kill -9) cannot stop its writer: the writer stops itself. What it had not
    written is in the spool, for the next run to replay."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _requests_setting(default: int) -> int:
    text = os.environ.get("LRBENCH_TRACKING_REQUESTS", "")
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"LRBENCH_TRACKING_REQUESTS must be a whole number of at least 1, got {text!r}")
    return int(text)


def _no_answer(exc: BaseException) -> str | None:
    """Where ``exc`` is MLflow giving up on a tracking server that does not answer (no connection, or no
    response in time, after its retries), the innermost reason; else None."""
    import requests

    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if not any(isinstance(e, (requests.ConnectionError, requests.Timeout)) for e in chain):
        return None
    # The system's own error where there is one (urllib3 keeps some in its exceptions' arguments).
    found = [e for link in chain for e in (link, *link.args) if isinstance(e, OSError) and e.errno]
    return str(found[-1] if found else chain[-1]) or type(chain[-1]).__name__


def stopped_answering(tracking_uri: str, exc: BaseException) -> str | None:
    """Where ``exc`` is MLflow giving up on the tracking server ``tracking_uri`` (:func:`_no_answer`), what
    to tell the user; else None."""
    from bench.config import shown

    reason = _no_answer(exc)
    if reason is None:
        return None
    return f"the tracking server {shown(tracking_uri)} stopped answering ({reason})"


class _RetryNotice(logging.Handler):
    """While MLflow retries requests to a tracking server that does not answer (for minutes, by default),
    the study prints nothing: one line says so, at most once a minute."""

    def __init__(self, tracking_uri: str):
        from mlflow.environment_variables import (
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
            MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        )

        super().__init__(logging.WARNING)
        self.uri = tracking_uri
        self.last = -math.inf
        # urllib3's waits between MLflow's retries: none before the first, then doubling, at most 120 s.
        factor, retries = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(), MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
        self.seconds = sum(min(factor * 2 ** (n - 1), 120) for n in range(2, retries + 1))

    def emit(self, record: logging.LogRecord) -> None:
        from bench.config import shown

        now = time.monotonic()
        if not record.getMessage().startswith("Retrying") or now - self.last < 60:
            return
        self.last = now
        print(
            f"lrbench: the tracking server {shown(self.uri)} does not answer; MLflow retries each request "
            f"for about {self.seconds:.0f} s (MLFLOW_HTTP_REQUEST_MAX_RETRIES, "
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR) before lrbench gives up",
            file=sys.stderr,
            flush=True,
        )


def _announce_retries(tracking_uri: str) -> None:
    logger = logging.getLogger("urllib3.connectionpool")  # where urllib3 tells of each retry
    if not any(isinstance(h, _RetryNotice) for h in logger.handlers):
        logger.addHandler(_RetryNotice(tracking_uri))


def _call(method: str, args: tuple[Any, ...], spooled: str | None) -> Any:
    """A Tracker method, in the writer. A trial's final write goes behind (:meth:`Tracker.write_behind`)
    where the store allows it; any other call waits for the writes in flight first, so that calls keep
    their order against them (a parent run closes after its trials' runs, a figure reads what is written).

    A tracking server that stopped answering (MLflow gave up after its retries) raises
    :class:`TrackingServerDown`, and so does every call after it at once, rather than each retrying for
    minutes: the study stops, and what it had not written stays in its spool for the next run."""
    worker = _WORKER
    assert worker is not None

    def write() -> Any:
        if worker.down is not None:
            raise TrackingServerDown(worker.down)
        try:
            out = getattr(worker, method)(*args)
        except Exception as exc:
            down = stopped_answering(worker.uri, exc)  # only a request to a server fails this way
            if down is None:
                raise
            worker.down = down
            raise TrackingServerDown(down) from None
        if spooled:
            Path(spooled).unlink(missing_ok=True)  # written: the spooled copy is no longer needed
        return out

    if method == "finish_trial" and worker.write_behind(write):
        return None
    if method != "start_trials":  # a run's creation waits for nothing written before it
        worker.wait_behind()
    return write()


def start_tracker(cfg: StudyConfig, loc: Locations) -> AsyncTracker:
    """A study's MLflow writer process. Started as soon as the study's definition is read, it opens the
    tracking store while the study process imports and loads the rest."""
    return AsyncTracker(loc.tracking_uri, cfg.name, loc.root / "spool" / cfg.name)


class AsyncTracker:
    """A :class:`Tracker` in a separate process, so that MLflow's database work overlaps training (threads
    would not: that work holds the GIL). ``call`` waits for the answer; ``submit`` does not.

    A trial's final write is first spooled to a file under ``spool_dir`` and the file is removed once MLflow
    has it: a process killed before its writer caught up loses nothing, and the next run of the study
    replays the spool (:meth:`replay_spool`).

    Creating trials' runs goes first: finished trials' writes (and the figure's imports) wait in this
    process while the writer has runs to create, and then go to it a few at a time (:meth:`pump`). The
    study waits for a trial's run before it tells the trial, and tells every trial that ended before it
    asks new ones; behind a queue of other trials' writes, a run would keep it waiting."""

    # Deferred writes in the writer's queue at once: a run asked for waits behind at most these.
    IN_FLIGHT = 2

    def __init__(self, tracking_uri: str, experiment: str, spool_dir: Path):
        global _PRESTARTED
        self.spool = spool_dir
        self._pool, _PRESTARTED = _PRESTARTED or _writer_pool(), None
        self._pending: list[Any] = []
        self._batches = 0
        self._starts: list[Any] = []  # futures of runs being created
        self._deferred: list[tuple[Any, tuple[Any, ...]]] = []  # (fn, args) waiting for no run creation
        self._deferring: list[Any] = []  # futures of deferred writes handed to the writer
        self._submit(_connect, tracking_uri, experiment)

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
            fn, args = self._deferred.pop(0)
            self._deferring.append(self._submit(fn, *args))

    def _defer(self, fn: Any, *args: Any) -> None:
        self._deferred.append((fn, args))
        self.pump()

    def _submit_deferred(self) -> None:
        """Everything deferred, now (before a write that must come after them, and at the end)."""
        deferred, self._deferred = self._deferred, []
        for fn, args in deferred:
            self._submit(fn, *args)

    def submit(self, method: str, *args: Any, spooled: Path | None = None) -> Any:
        """Run a Tracker method in the writer; returns its future."""
        return self._submit(_call, method, args, str(spooled) if spooled else None)

    def _submit(self, fn: Any, *args: Any) -> Any:
        # Writes that are done leave the list, and a failed one is raised now rather than at the end.
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            f.result()
        future = self._pool.submit(fn, *args)
        self._pending.append(future)
        return future

    def call(self, method: str, *args: Any) -> Any:
        """Run a Tracker method in the writer and wait for its answer, after every write asked for before
        it, deferred ones too (what it reads, a summary figure's curves, is written)."""
        self._submit_deferred()
        return self.submit(method, *args).result()

    def open_parent(
        self,
        study: str,
        existing_run_id: str | None,
        params: Mapping[str, Any],
        uid: str,
        find: float | None = None,
    ) -> Any:
        """Submitted, not waited for: returns the future of the parent run's id. The writer keeps the id
        (and ``uid``) for the trial runs it creates after it."""
        return self.submit("open_parent", study, existing_run_id, params, uid, find)

    def start_trials(self, study: str, trials: Sequence[tuple[int, str]]) -> Any:
        """Submitted, not waited for: returns the future of the trials' run ids.

        After the second group of runs (early in a study: the first trials to end make room for it), the
        writer imports what the end-of-study figure needs (0.6 s here), so that the figure does not wait for
        it at the end; runs asked for meanwhile wait, training never does. Any earlier, the first runs
        would wait for it, and with them the first trials' results."""
        future = self.submit("start_trials", study, trials)
        self._starts.append(future)
        self._batches += 1
        if self._batches == 2:
            self._defer(_warm_figure_imports)
        return future

    def finish_trial(
        self,
        run_id: str,
        state: str,
        params: Mapping[str, Any],
        result: TrialResult | None,
        failure: str | None = None,
    ) -> None:
        import pickle

        points = metric_points(result) if result is not None else []
        # The points' timestamp is fixed here and spooled with them: replaying writes that MLflow had
        # committed before a kill (its spool file not yet removed) adds nothing, as MLflow drops the exact
        # duplicates of points it has.
        record = (run_id, state, dict(params), points, failure, _now_ms())
        self.spool.mkdir(parents=True, exist_ok=True)
        path = self.spool / f"{run_id}.pkl"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(record))
        tmp.replace(path)
        self._defer(_call, "finish_trial", record, str(path))

    def spooled(self) -> list[Path]:
        """The trials' final writes kept in the spool: not yet in MLflow (or not known to be)."""
        return sorted(self.spool.glob("*.pkl")) if self.spool.is_dir() else []

    def replay_spool(self) -> int:
        """Send what a killed process had spooled but not written (in the background: the writer takes
        calls in order, so these land before anything submitted later); returns how many trials."""
        import pickle

        done = 0
        for path in self.spooled():
            record = pickle.loads(path.read_bytes())  # (run_id, state, params, points, failure, timestamp)
            self.submit("finish_trial", *record, spooled=path)
            done += 1
        return done

    def __getattr__(self, method: str) -> Any:
        """Any other Tracker method, run in the writer process; the caller waits for its answer."""
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self.call(method, *args)

    def close_parent(self, status: str) -> None:
        """Submitted after every trial's writes (the writer takes calls in order); not waited for."""
        self._submit_deferred()
        self.submit("close_parent", status)

    def flush(self) -> None:
        """Wait for every write, deferred ones too; the first error is raised."""
        self._submit_deferred()
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """Every write made, then the writer stopped. Interrupted while it waits (a second Ctrl-C: a study's
        first one stops its trials, then it waits here), the writer is stopped at once: what it had not
        written is in the spool, and the runs it would have closed are closed by the study's next run, as
        after a process killed outright."""
        try:
            self.flush()
        except KeyboardInterrupt:
            _stop_writer(self._pool)
            raise
        except BaseException:
            self._pool.shutdown(wait=True)
            raise
        self._submit(_close_worker).result()
        _stop_writer(self._pool)  # everything is written and committed
