"""One study's view of an MLflow tracking store, through MLflow's own client.

One experiment per study, one parent run per study, one nested child run per trial. A trial's metrics,
params and tags go out in a few ``log_batch`` calls when it ends (at most 1000 metrics a call), never one
call per point. Every run is closed with its trial's real state, and runs a killed process left RUNNING
are closed by the next process that opens the study (:meth:`Tracker.close_orphans`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from bench.tracking import store
from bench.tracking.families import replace_family_runs
from bench.tracking.inflight import InFlight
from bench.tracking.names import (
    FAILURE_TAG,
    MAX_METRICS,
    MAX_PARAM_CHARS,
    MAX_PARAMS,
    MAX_TAG_CHARS,
    ORPHAN_TAG,
    PARENT_RUN_TAG,
    ROLE_TAG,
    RUN_STATUS,
    STAGE_TAG,
    STATE_TAG,
    STUDY_UID_TAG,
    Curves,
    FamilyRecord,
)
from bench.tracking.server import RequestWatch
from bench.tracking.spool import TrialRecord
from bench.uris import is_tracking_server

if TYPE_CHECKING:
    from mlflow.entities import Param, RunTag

P = ParamSpec("P")
T = TypeVar("T")
# What a worker opening a study knows of each trial: number -> (Optuna state, MLflow run id, failure).
TrialStates = Mapping[str, tuple[str, str | None, str | None]]


# A trial run to create: its Optuna study's name (a family's own, or the confirmation's: each numbers its
# trials from 0), the trial's number and its schedule family.
RunStart = tuple[str, int, str]
# A trial run whose trial number the study's storage has not is taken for an orphan only this long after it
# was made (bench.search.workers.reclaim): until then it may be a live worker's, on a clock that runs late.
ORPHAN_AFTER_MS = 60_000


def _watched(method: Callable[Concatenate[Tracker, P], T]) -> Callable[Concatenate[Tracker, P], T]:
    """A Tracker method whose requests are watched (:class:`RequestWatch`) against a tracking server."""

    @functools.wraps(method)
    def run(self: Tracker, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._waiting():
            return method(self, *args, **kwargs)

    return run


def quiet() -> None:
    """MLflow announces database creation and migrations at INFO; a study's output is about trials. Called
    after mlflow is imported (its import sets its loggers' levels)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    """A study's experiment on a tracking store (a local database, PostgreSQL, or a tracking server)."""

    def __init__(self, tracking_uri: str, experiment: str):
        # MLflow prints each run's address when a run against a server ends, after reading the run back
        # (one more request): a study prints its own progress, and `lrbench ui` gives the address.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow import MlflowClient

        quiet()
        self.uri = tracking_uri
        server = is_tracking_server(tracking_uri)
        self._watch = RequestWatch(tracking_uri) if server else None  # from the first request on
        self.down: str | None = (
            None  # why the tracking server is taken to be down (see bench.tracking.writer)
        )
        with store.one_at_a_time(tracking_uri), self._waiting():
            store.prepare(tracking_uri)
            self.client = MlflowClient(tracking_uri=tracking_uri)  # creates a new store's tables
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                self.experiment_id = self._create_experiment(experiment)
            else:
                self.experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(self.experiment_id)
        self.parent_id: str | None = None
        self.uid = ""  # the study's (open_parent)
        self.inflight = InFlight(server)

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        with self._watch.waiting() if self._watch is not None else contextlib.nullcontext():
            yield

    def _create_experiment(self, name: str) -> str:
        """The experiment, created here unless another worker of the study creates it first."""
        from mlflow.exceptions import MlflowException

        try:
            return str(
                self.client.create_experiment(name, artifact_location=store.local_artifact_root(self.uri))
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def close(self) -> None:
        """Done with the store, every write made (see :func:`bench.tracking.store.release`); a later call
        opens it again."""
        self.inflight.wait_behind()
        store.release()

    # --- the parent run ----------------------------------------------------------------------------------

    @_watched
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

    @_watched
    def close_parent(self, status: str) -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status=status)

    def attach(self, parent_run_id: str) -> None:
        """Write to a study's existing parent run (``lrbench export``), its uid read from the run."""
        self.parent_id = parent_run_id
        self.uid = self.client.get_run(parent_run_id).data.tags.get(STUDY_UID_TAG, "")

    @_watched
    def log_parent_artifacts(
        self,
        paths: Iterable[Path],
        text: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        families: Mapping[str, FamilyRecord] | None = None,
    ) -> None:
        """Files and texts as the parent run's artifacts, its summary metrics (latest values win), and one
        run per ranked family under it (bench.tracking.families; those of an earlier ranking replaced)."""
        from mlflow.entities import Metric

        assert self.parent_id is not None
        if metrics:
            ts = now_ms()
            self.client.log_batch(self.parent_id, metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()])
        for path in paths:
            if path.exists():
                self.client.log_artifact(self.parent_id, str(path))
        for name, content in (text or {}).items():
            self.client.log_text(self.parent_id, content, name)
        if families is not None:
            replace_family_runs(self.client, self.experiment_id, self.parent_id, self.uid, families)

    # --- trial runs --------------------------------------------------------------------------------------

    def start_trial(self, study: str, number: int, scheduler: str, stage: str = "search") -> str:
        """Create the trial's child run at trial start, so a killed process leaves a run we can close."""
        assert self.parent_id is not None
        tags = {
            PARENT_RUN_TAG: self.parent_id,
            STUDY_UID_TAG: self.uid,
            "scheduler": scheduler,
            "study": study,
            "trial_number": str(number),
            STAGE_TAG: stage,
            STATE_TAG: "RUNNING",
        }
        name = f"trial-{number:04d} {scheduler}" if stage == "search" else f"{stage}-{number:04d} {scheduler}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return str(run.info.run_id)

    @_watched
    def start_trials(self, trials: Sequence[RunStart], stage: str = "search") -> list[str]:
        """The trials' runs, in order; against a tracking server, created by several requests at once."""
        return self.inflight.each(lambda t: self.start_trial(*t, stage), trials)

    @_watched
    def finish_trial(self, record: TrialRecord) -> None:
        """Write the trial's params, curves and final metrics in batches, then close its run."""
        from mlflow.entities import Metric

        ts = record.timestamp or now_ms()
        metrics = [Metric(key, value, ts, step) for key, value, step in record.points]
        tags = _tags(record.state, record.failure)
        param_list = _params(record.params)
        first = True
        while first or metrics or param_list:
            self.client.log_batch(
                record.run_id,
                metrics=metrics[:MAX_METRICS],
                params=param_list[:MAX_PARAMS],
                tags=tags if first else [],
            )
            metrics, param_list, first = metrics[MAX_METRICS:], param_list[MAX_PARAMS:], False
        self.client.set_terminated(record.run_id, status=RUN_STATUS[record.state])

    @_watched
    def close_run(self, run_id: str, state: str, failure: str | None = None) -> None:
        """Close a run without results (a trial killed or failed before it could log)."""
        self.client.log_batch(run_id, tags=_tags(state, failure))
        self.client.set_terminated(run_id, status=RUN_STATUS[state])

    @_watched
    def close_orphans(self, uid: str, study: str, trials: TrialStates, read_at: int) -> int:
        """Make the trial runs of the study ``uid`` agree with its trials, as the study's storage had them
        when this process read them (``trials``: each trial number's Optuna state, MLflow run id and
        failure; ``read_at``: when, in ms). Only runs of the Optuna study named ``study`` are matched (each
        of the study's Optuna studies, a family's or the confirmation's, numbers its trials from 0); runs
        of another study of the same name, which shares the experiment, are left alone.

        A run still RUNNING whose trial finished is closed with the trial's state; one whose trial died
        (FAIL), RUNNING or not, is KILLED: its process died before it told the trial. A run that is not its
        trial's (the trial names another run) or whose trial the storage no longer has (a journal restored
        from an older copy) is KILLED and tagged ``lrbench.orphan``, and never counted. A trial is stored
        before its run is created: a run of a trial number not read may be a live worker's trial asked
        since, and is only taken for an orphan once it was created a minute before the read (clocks of
        several hosts disagree). A RUNNING trial's run is a live worker's, and left alone."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{STUDY_UID_TAG}` = '{uid}' and tags.study = '{study}'",
            max_results=50000,
        )
        closed = 0
        for run in runs:
            run_id, status = run.info.run_id, run.info.status
            tags = run.data.tags
            if ORPHAN_TAG in tags or "trial_number" not in tags:  # marked already; the parent run
                continue
            known = trials.get(tags["trial_number"])
            if known is None:
                if run.info.start_time < read_at - ORPHAN_AFTER_MS:
                    self._mark_orphan(run_id, f"the study's storage has no trial {tags['trial_number']}")
                    closed += 1
                continue
            state, owner_run, failure = known
            if state in ("RUNNING", "WAITING"):
                continue
            if owner_run is not None and owner_run != run_id:
                self._mark_orphan(run_id, f"trial {tags['trial_number']} is run {owner_run}")
            elif state == "FAIL" and status not in ("KILLED", "FAILED"):
                self.close_run(run_id, "KILLED", failure)
            elif state != "FAIL" and status == "RUNNING":
                self.close_run(run_id, state, failure)
            else:
                continue
            closed += 1
        return closed

    def _mark_orphan(self, run_id: str, why: str) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(ORPHAN_TAG, why[:MAX_TAG_CHARS])])
        self.client.set_terminated(run_id, status="KILLED")

    # --- reading back ------------------------------------------------------------------------------------

    @_watched
    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    @_watched
    def curves(self, runs: Mapping[str, str], keys: Sequence[str]) -> Curves:
        """The runs' curves (label -> run id), ``keys`` of each; against a server, several read at once."""
        wanted = [(run_id, key) for run_id in runs.values() for key in keys]
        got = dict(zip(wanted, self.inflight.each(lambda rk: self.history(*rk), wanted), strict=True))
        return {label: {key: got[run_id, key] for key in keys} for label, run_id in runs.items()}


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _params(params: Mapping[str, Any]) -> list[Param]:
    from mlflow.entities import Param

    return [Param(k, _param(v)) for k, v in params.items()]


def _tags(state: str, failure: str | None) -> list[RunTag]:
    from mlflow.entities import RunTag

    return [RunTag(STATE_TAG, state)] + ([RunTag(FAILURE_TAG, failure[:MAX_TAG_CHARS])] if failure else [])


def experiment_id(tracking_uri: str, name: str) -> str | None:
    """The experiment's id on a store, where it exists."""
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
    return None if found is None else str(found.experiment_id)
