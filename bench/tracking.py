"""MLflow tracking: the only module that imports mlflow.

One experiment per study, one parent run per study, one nested child run per trial. A trial's metrics,
params and tags go out in a few ``log_batch`` calls when it ends (at most 1000 metrics a call), never one
call per point. Every run is closed with its trial's real state, and runs a killed process left RUNNING
are closed by the next process that opens the study (:meth:`Tracker.close_orphans`).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from bench.engine import TrialResult

# MLflow announces database creation and migrations at INFO; a study's output is about trials.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Optuna's trial state -> MLflow's run status.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
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


def _now_ms() -> int:
    return int(time.time() * 1000)


def experiment_id(tracking_uri: str, name: str) -> str | None:
    found = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
    return None if found is None else found.experiment_id


class Tracker:
    """One study's view of an MLflow tracking store."""

    def __init__(self, tracking_uri: str, experiment: str):
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=_local_artifact_root(tracking_uri)
            )
        else:
            self.experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(self.experiment_id)
        self.parent_id: str | None = None

    # --- the parent run ----------------------------------------------------------------------------------

    def open_parent(self, study: str, existing_run_id: str | None, params: Mapping[str, Any]) -> str:
        """Reopen the study's parent run (a resumed study keeps one parent) or create it."""
        if existing_run_id is not None:
            try:
                self.client.update_run(existing_run_id, status="RUNNING")
                self.parent_id = existing_run_id
                return existing_run_id
            except Exception:  # the run was deleted from the store: start a new parent
                pass
        run = self.client.create_run(
            self.experiment_id, run_name=f"study {study}", tags={"study": study, "lrbench.role": "study"}
        )
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, _param(v)) for k, v in params.items()])
        return self.parent_id

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
            MLFLOW_PARENT_RUN_ID: self.parent_id,
            "scheduler": scheduler,
            "study": study,
            "trial_number": str(number),
            "state": "RUNNING",
        }
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{number:04d} {scheduler}", tags=tags
        )
        return run.info.run_id

    def finish_trial(
        self,
        run_id: str,
        state: str,
        params: Mapping[str, Any],
        result: TrialResult | None,
        failure: str | None = None,
    ) -> None:
        """Write the trial's params, curves and final metrics in batches, then close the run."""
        metrics: list[Metric] = []
        if result is not None:
            metrics = _metrics(result)
        tags = [RunTag("state", state)]
        if failure:
            tags.append(RunTag("failure", failure[:5000]))
        param_list = [Param(k, _param(v)) for k, v in params.items()]
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
        tags = [RunTag("state", state)] + ([RunTag("failure", failure[:5000])] if failure else [])
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status=RUN_STATUS[state])

    def running_trial_runs(self) -> dict[str, str]:
        """run_id -> trial_number of this experiment's child runs still RUNNING."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000
        )
        return {
            r.info.run_id: r.data.tags.get("trial_number", "")
            for r in runs
            if r.data.tags.get("lrbench.role") != "study"
        }

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _metrics(result: TrialResult) -> list[Metric]:
    """DESIGN.md's names: lr per optimizer step (compact), per-epoch curves, final test metrics."""
    ts = _now_ms()
    out = [Metric("lr", float(v), ts, step) for step, v in compact_curve(result.lrs)]
    for key, values in (
        ("train/loss", result.train_loss),
        ("val/loss", result.val_loss),
        ("val/accuracy", result.val_accuracy),
    ):
        out += [Metric(key, float(v), ts, epoch) for epoch, v in enumerate(values)]
    if not math.isnan(result.test_accuracy):
        out += [
            Metric("test/loss", result.test_loss, ts, 0),
            Metric("test/accuracy", result.test_accuracy, ts, 0),
        ]
    return out
