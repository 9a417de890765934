"""A stored study as the reports read it: plain records, read back from the study's storage by
:func:`bench.search.readback.load_trials` (the reports never import Optuna)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredTrial:
    number: int
    state: str  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: Mapping[str, Any] = field(default_factory=dict)  # what the sampler drew, as Optuna stored it
    user_attrs: Mapping[str, Any] = field(default_factory=dict)  # result, mlflow_run_id, failure, worker
    intermediate: Mapping[int, float] = field(default_factory=dict)  # epoch -> the objective's value


@dataclass(frozen=True)
class StoredStudy:
    trials: list[StoredTrial]
    direction: str  # maximize or minimize
    parent_run_id: str | None  # the study's MLflow parent run
    confirm: list[StoredTrial] = field(default_factory=list)  # the confirmation runs (their "cell" attribute)
    # family -> {hyperparameter: importance}, where asked for (bench.search.importance)
    importance: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
