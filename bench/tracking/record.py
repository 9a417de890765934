"""One trial run read back whole from a tracking store: its params, tags, every point of every metric, and
its study's definition (the parent run's ``study.yaml``), for ``lrbench replay`` and ``lrbench snippet``.

Reading never writes: the store is opened with MLflow's client as it is (no tuning, no experiment made).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import UserError
from bench.tracking.names import PARENT_RUN_TAG, STAGE_TAG, STATE_TAG
from bench.uris import shown

if TYPE_CHECKING:
    from mlflow import MlflowClient

STUDY_FILE = "study.yaml"  # the parent run's artifact: the study's definition (bench.search.run)


@dataclass(frozen=True)
class RunRecord:
    """A trial run as MLflow has it. ``curves``: metric key -> its (step, value) points, by step."""

    run_id: str
    status: str  # MLflow's: FINISHED, FAILED, KILLED, RUNNING
    params: dict[str, str]
    tags: dict[str, str]
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    study_yaml: str = ""  # the parent run's study.yaml

    @property
    def stage(self) -> str:
        return self.tags.get(STAGE_TAG, "")

    @property
    def state(self) -> str:
        """The trial's state (COMPLETE, PRUNED, FAIL), as lrbench tagged it."""
        return self.tags.get(STATE_TAG, "")

    def values(self, key: str) -> list[float]:
        """A per-epoch (or single) metric's values, in step order."""
        return [v for _, v in self.curves.get(key, [])]


def read_run(tracking_uri: str, run_id: str) -> RunRecord:
    """The trial run ``run_id`` (its exact id) on the store: every metric's history and its parent's study
    definition. A run that is not there, or that is no trial run of an lrbench study, is a
    :class:`UserError`."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from bench.tracking.client import quiet

    quiet()  # MLflow's INFO lines (a store's migrations) are no replay's
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no bar
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise UserError(f"no run {run_id!r} on the tracking store {shown(tracking_uri)}") from None
        raise
    tags, params = dict(run.data.tags), dict(run.data.params)
    parent = tags.get(PARENT_RUN_TAG)
    if STAGE_TAG not in tags or not parent or "scheduler" not in params:
        name = run.info.run_name or run_id
        raise UserError(
            f"run {run_id} ({name}) is no trial run of an lrbench study (a trial's run is tagged "
            f"{STAGE_TAG} and sits under its study's run); give a search or confirmation run's id"
        )
    curves = {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in sorted(run.data.metrics)
    }
    return RunRecord(run_id, run.info.status, params, tags, curves, _study_yaml(client, parent))


def _study_yaml(client: MlflowClient, parent: str) -> str:
    """The parent run's ``study.yaml``, or "" where it has none (a study that stopped before logging it)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="lrbench-record-") as folder:
        try:
            path = client.download_artifacts(parent, STUDY_FILE, folder)
        except (MlflowException, OSError):
            return ""
        return Path(path).read_text(encoding="utf-8")
