"""The names lrbench gives what it records in MLflow (DESIGN.md's "names that cross module boundaries"),
and MLflow's own limits on a request."""

from __future__ import annotations

# Metrics: ``lr`` by optimizer step; the rest by epoch, or once (test). The task's score is named by the
# task: ``val/accuracy``, ``val/rmse`` (:func:`score_key`).
LR = "lr"
TRAIN_LOSS, VAL_LOSS = "train/loss", "val/loss"
TEST_LOSS = "test/loss"


# Tags.
PARENT_RUN_TAG = "mlflow.parentRunId"  # mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID
STUDY_UID_TAG = "lrbench.study_uid"  # one study's runs, apart from another's of the same name
ROLE_TAG = "lrbench.role"  # "study" on a study's parent run, "family" on a ranked family's run
STAGE_TAG = "lrbench.stage"  # a trial run's stage: "search" or "confirm"
STATE_TAG, FAILURE_TAG = "state", "failure"
ORPHAN_TAG = "lrbench.orphan"  # on a trial run that is no trial's run (why): never counted

# A ranked family's run (bench.tracking.families): its summary metrics, and its chosen configuration as
# params.
FamilyRecord = tuple[dict[str, float], dict[str, str]]

# Optuna's trial state (and KILLED: a trial its process did not finish) -> MLflow's run status.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}

MAX_METRICS, MAX_PARAMS = 1000, 100  # per log_batch call
MAX_PARAM_CHARS = 6000
MAX_TAG_CHARS = 5000


# Curves read back from MLflow: label -> metric key -> (step, value) points.
Curves = dict[str, dict[str, list[tuple[int, float]]]]


def score_key(part: str, score: str) -> str:
    """The MLflow metric of a score (``accuracy``, ``rmse``) on ``part`` (``val`` by epoch, ``test`` once)."""
    return f"{part}/{score}"


def test_metric(objective_metric: str) -> str:
    """The test metric that ranks a study whose objective (on validation) is ``objective_metric``
    (``val_loss`` -> ``test_loss``, ``val_rmse`` -> ``test_rmse``)."""
    return f"test_{objective_metric.removeprefix('val_')}"


def val_metric_key(objective_metric: str) -> str:
    """The MLflow metric of a study's objective (``val_accuracy`` -> ``val/accuracy``)."""
    return f"val/{objective_metric.removeprefix('val_')}"
