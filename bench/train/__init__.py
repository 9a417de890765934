"""Training: torch only (no optuna, no mlflow), so that it can be tested and timed alone.

:mod:`bench.train.reference` is the plain PyTorch loop, one trial at a time: the ground truth.
:mod:`bench.train.population` trains many trials at once as one batched model and is checked against it.
"""

from bench.train.device import resolve_device
from bench.train.optimizers import OPTIMIZERS
from bench.train.reference import batch_weights, evaluate, train
from bench.train.trial import EpochMetrics, TrainConfig, TrialResult

__all__ = [
    "OPTIMIZERS",
    "EpochMetrics",
    "TrainConfig",
    "TrialResult",
    "batch_weights",
    "evaluate",
    "resolve_device",
    "train",
]
