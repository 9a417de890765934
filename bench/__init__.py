"""lrbench: which learning-rate schedule, with which settings, works best for my model and data?

The Python API, imported on first use (``import bench`` itself stays light)::

    import bench

    cfg = bench.load_study("studies/smoke.yaml")       # a study definition, checked
    outcome = bench.run_study(cfg)                     # run or resume it (its stores under cfg.output)
    task = bench.load_task(cfg.task)                   # the study's data, split and scaled
    result = bench.train_trial(task, bench.TrainConfig(scheduler="StepLR", scheduler_args={"gamma": 0.5}))
    sorted(bench.SCHEDULES)                            # the schedule registry
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> (module, name in it).
_API = {
    "load_study": ("bench.config", "load"),
    "StudyConfig": ("bench.config", "StudyConfig"),
    "Locations": ("bench.config", "Locations"),
    "run_study": ("bench.search", "run_study"),
    "Outcome": ("bench.search", "Outcome"),
    "load_trials": ("bench.search", "load_trials"),
    "load_task": ("bench.data", "load_task"),
    "DataConfig": ("bench.data", "DataConfig"),
    "Task": ("bench.data", "Task"),
    "ModelConfig": ("bench.model", "ModelConfig"),
    "train_trial": ("bench.train", "train"),
    "TrainConfig": ("bench.train", "TrainConfig"),
    "TrialResult": ("bench.train", "TrialResult"),
    "SCHEDULES": ("bench.schedules", "SCHEDULES"),
    "Family": ("bench.schedules", "Family"),
    "preview": ("bench.schedules", "preview"),
    "UserError": ("bench.errors", "UserError"),
}

__all__ = [
    "SCHEDULES",
    "DataConfig",
    "Family",
    "Locations",
    "ModelConfig",
    "Outcome",
    "StudyConfig",
    "Task",
    "TrainConfig",
    "TrialResult",
    "UserError",
    "load_study",
    "load_task",
    "load_trials",
    "preview",
    "run_study",
    "train_trial",
]

if TYPE_CHECKING:
    from bench.config import Locations, StudyConfig
    from bench.config import load as load_study
    from bench.data import DataConfig, Task, load_task
    from bench.errors import UserError
    from bench.model import ModelConfig
    from bench.schedules import SCHEDULES, Family, preview
    from bench.search import Outcome, load_trials, run_study
    from bench.train import TrainConfig, TrialResult
    from bench.train import train as train_trial


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later reads find it here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
