from __future__ import annotations

import math
import statistics

import pytest
import torch

from bench.data import Task
from bench.errors import UserError
from bench.model import ModelConfig, build_mlp
from bench.train import OPTIMIZERS, EpochMetrics, TrainConfig, resolve_device, train

REFERENCE = dict(
    scheduler="StepLR",
    scheduler_args={"step_size": 20, "gamma": 0.5},
    optimizer="adam",
    lr=1e-3,
    epochs=50,
    batch_size=32,
)


@pytest.mark.slow
def test_reference_experiment_reaches_the_article_accuracy(breast_cancer: Task) -> None:
    """Seed 002: Adam 1e-3, StepLR(20, 0.5), batch 32, 50 epochs; the article reports about 0.956."""
    accuracies = [train(breast_cancer, TrainConfig(**REFERENCE, seed=s)).test_score for s in range(5)]
    assert statistics.mean(accuracies) >= 0.94, accuracies


def test_reference_mlp_shape() -> None:
    mlp = build_mlp(30, 2, ModelConfig())
    shapes = [tuple(p.shape) for p in mlp.parameters()]
    assert shapes == [(64, 30), (64,), (32, 64), (32,), (1, 32), (1,)]
    assert build_mlp(64, 10, ModelConfig(hidden=(16,), dropout=0.1))[-1].out_features == 10


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_same_seed_gives_identical_metrics(breast_cancer: Task, optimizer: str) -> None:
    cfg = TrainConfig(scheduler="OneCycleLR", optimizer=optimizer, lr=0.01, epochs=5, seed=3)
    a, b = train(breast_cancer, cfg), train(breast_cancer, cfg)
    assert a.lrs == b.lrs and a.val_loss == b.val_loss and a.train_loss == b.train_loss
    assert a.test_loss == b.test_loss and a.test_score == b.test_score
    c = train(
        breast_cancer, TrainConfig(scheduler="OneCycleLR", optimizer=optimizer, lr=0.01, epochs=5, seed=4)
    )
    assert c.val_loss != a.val_loss


def test_huge_lr_diverges_with_the_step(breast_cancer: Task) -> None:
    result = train(breast_cancer, TrainConfig(optimizer="sgd", lr=1e4, epochs=20))
    assert result.diverged and result.diverged_step is not None
    assert 0 <= result.diverged_step < result.epochs_run * result.steps_per_epoch
    assert result.epochs_run < 20
    assert math.isnan(result.test_score)


def test_records_every_step_and_epoch(breast_cancer: Task) -> None:
    result = train(breast_cancer, TrainConfig(scheduler="StepLR", scheduler_args={"step_size": 2}, epochs=4))
    assert len(result.lrs) == 4 * result.steps_per_epoch
    assert len(result.train_loss) == len(result.val_loss) == len(result.val_score) == 4
    assert 0 <= result.test_score <= 1 and result.test_loss > 0
    assert result.train_loss[-1] < result.train_loss[0]


def test_on_epoch_sees_each_epoch_and_can_stop(breast_cancer: Task) -> None:
    seen: list[EpochMetrics] = []

    def hook(m: EpochMetrics) -> bool:
        seen.append(m)
        return m.epoch == 2

    result = train(breast_cancer, TrainConfig(epochs=10), on_epoch=hook)
    assert [m.epoch for m in seen] == [0, 1, 2]
    assert result.stopped_early and result.epochs_run == 3
    assert seen[-1].val_loss == result.val_loss[-1]
    assert not math.isnan(result.test_score)


def test_multiclass_training(tiny_task: Task) -> None:
    result = train(tiny_task, TrainConfig(scheduler="CosineAnnealingLR", lr=0.01, epochs=20))
    assert result.best_val_score > 1 / tiny_task.n_classes + 0.1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose one of: sgd, adam, adamw"),
        ({"lr": 0.0}, "lr > 0 must hold, but got (lr=0.0)"),
        ({"epochs": 0}, "epochs >= 1 must hold"),
        ({"scheduler": "cosine"}, "unknown scheduler 'cosine'"),
    ],
)
def test_bad_train_config(breast_cancer: Task, changes: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        train(breast_cancer, TrainConfig(**changes))
    assert message in str(info.value)


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")
