"""The reference trainer: one MLP, one torch optimizer, one registry schedule, epoch by epoch.

torch only (no optuna, no mlflow), so it can be tested and timed alone. The study hooks in through
``on_epoch``: it receives each epoch's metrics and may ask to stop (pruning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench import schedules
from bench.data import Task
from bench.errors import UserError
from bench.lazy import LazyModule
from bench.model import ModelConfig, build_mlp, loss_and_correct, mean_loss

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")  # a study's definition is checked against OPTIMIZERS without torch

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    # SGD always with momentum: plain SGD is rarely what anyone compares schedules on.
    "sgd": lambda params, lr, momentum, weight_decay: torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay
    ),
    "adam": lambda params, lr, momentum, weight_decay: _adam(torch.optim.Adam, params, lr, weight_decay),
    "adamw": lambda params, lr, momentum, weight_decay: _adam(torch.optim.AdamW, params, lr, weight_decay),
}


def _adam(cls: type[torch.optim.Adam] | type[torch.optim.AdamW], params: Any, lr: float, wd: float) -> Any:
    """torch's Adam / AdamW; on CUDA its fused kernel. That is the fastest there, and the arithmetic the
    population engine runs: torch's default (foreach) and fused CUDA AdamW end 3 epochs of the reference
    task 1e-4 apart (relative), so a trial should not change implementation with the engine. On the CPU
    torch's default, as before (all of torch's CPU implementations agree there within 4e-7)."""
    params = list(params)
    fused = True if params and all(p.is_cuda for p in params) else None
    return cls(params, lr=lr, weight_decay=wd, fused=fused)


@dataclass(frozen=True)
class TrainConfig:
    """One trial's training settings (the schedule's arguments are resolved against its run length)."""

    scheduler: str = "constant"
    scheduler_args: Mapping[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 50
    batch_size: int = 32
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"lr > 0 must hold, but got (lr={self.lr})")
        if self.epochs < 1:
            raise UserError(f"epochs >= 1 must hold, but got (epochs={self.epochs})")
        if self.batch_size < 1:
            raise UserError(f"batch_size >= 1 must hold, but got (batch_size={self.batch_size})")
        schedules.get(self.scheduler)


@dataclass(frozen=True)
class EpochMetrics:
    """What ``on_epoch`` receives after each epoch (0-based)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float


@dataclass
class TrialResult:
    scheduler: str
    scheduler_args: dict[str, Any]
    lrs: list[float]  # the LR used at each optimizer step
    train_loss: list[float]  # per epoch
    val_loss: list[float]
    val_accuracy: list[float]
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    epochs_run: int = 0
    steps_per_epoch: int = 0
    diverged: bool = False
    diverged_step: int | None = None
    stopped_early: bool = False  # on_epoch asked to stop (e.g. pruned)
    seconds: float = 0.0
    device: str = "cpu"
    model: torch.nn.Module | None = field(default=None, repr=False)  # kept only when asked (tests)

    @property
    def best_val_accuracy(self) -> float:
        return max(self.val_accuracy, default=math.nan)

    @property
    def best_val_loss(self) -> float:
        return min(self.val_loss, default=math.nan)

    def summary(self) -> dict[str, Any]:
        """The scalar results (what ``lrbench train --json`` prints)."""
        skip = ("lrs", "train_loss", "val_loss", "val_accuracy", "model")
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        out["scheduler_args"] = dict(self.scheduler_args)
        out["val_accuracy"] = self.val_accuracy[-1] if self.val_accuracy else math.nan
        out["val_loss"] = self.val_loss[-1] if self.val_loss else math.nan
        out["best_val_accuracy"] = self.best_val_accuracy
        out["final_lr"] = self.lrs[-1] if self.lrs else math.nan
        return out


def resolve_device(requested: str | None = "auto") -> torch.device:
    """cuda, then mps, then cpu, unless a device is named."""
    if requested in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {requested!r} asked for, but torch sees no CUDA device (torch {torch.__version__})"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {requested!r} asked for, but MPS is not available")
    return device


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        loss, correct = loss_and_correct(model(x), y)
    model.train()
    return float(loss), float(correct) / len(y)


def batch_weights(n_train: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """Samples in each step's batch of an epoch (the last may be short): the weights of the epoch's mean
    training loss."""
    steps = math.ceil(n_train / batch_size)
    weights = torch.full((steps,), float(batch_size), device=device)
    weights[-1] = n_train - batch_size * (steps - 1)
    return weights


def train(
    task: Task,
    cfg: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
    keep_model: bool = False,
) -> TrialResult:
    """Train one trial. A non-finite loss ends it as diverged (with the first bad step); ``on_epoch``
    returning True ends it early (``stopped_early``). Test metrics are computed for every trial that
    did not diverge."""
    cfg.check()
    started = time.perf_counter()
    device = task.device
    family = schedules.get(cfg.scheduler)

    torch.manual_seed(cfg.seed)
    model = build_mlp(task.n_features, task.n_classes, cfg.model).to(device)
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)

    n_train = len(task.y_train)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    horizon = family.horizon(cfg.epochs, steps_per_epoch, cfg.lr)
    args = family.resolve(cfg.scheduler_args, horizon)
    scheduler = family.build(optimizer, args, horizon)

    # Batch order has its own generator, so it does not depend on how many random numbers init drew. It is
    # a CPU generator whatever the device: a seed gives the same batch order on CPU and CUDA, and the
    # population engine draws K orders without a kernel launch each.
    generator = torch.Generator().manual_seed(cfg.seed)
    # Per-step losses stay on the device and are read once per epoch: no host sync inside the loop.
    step_losses = torch.empty(steps_per_epoch, device=device)
    weights = batch_weights(n_train, cfg.batch_size, device)

    result = TrialResult(
        cfg.scheduler, args, [], [], [], [], steps_per_epoch=steps_per_epoch, device=str(device)
    )
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(n_train, generator=generator).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            # The LR this step uses, as the scheduler left it on the optimizer.
            result.lrs.append(optimizer.param_groups[0]["lr"])
            loss = mean_loss(model(task.x_train[idx]), task.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_losses[i] = loss.detach()
            if family.per_step:
                scheduler.step()

        finite = torch.isfinite(step_losses)
        if not bool(finite.all()):
            first_bad = int((~finite).nonzero()[0])
            result.diverged, result.diverged_step = True, epoch * steps_per_epoch + first_bad
            result.epochs_run = epoch + 1
            break
        train_loss = float((step_losses * weights).sum()) / n_train
        val_loss, val_acc = evaluate(model, task.x_val, task.y_val)
        result.epochs_run = epoch + 1
        if not math.isfinite(val_loss):
            # Weights blew up without the training loss noticing (yet): diverged at this epoch's last step.
            result.diverged, result.diverged_step = True, (epoch + 1) * steps_per_epoch - 1
            break
        result.train_loss.append(train_loss)
        result.val_loss.append(val_loss)
        result.val_accuracy.append(val_acc)
        if not family.per_step:
            # After the epoch's optimizer steps, as PyTorch prescribes; ReduceLROnPlateau on the val loss.
            schedules.step_scheduler(scheduler, family, val_loss)
        if on_epoch is not None and on_epoch(EpochMetrics(epoch, train_loss, val_loss, val_acc)):
            result.stopped_early = True
            break

    if not result.diverged:
        result.test_loss, result.test_accuracy = evaluate(model, task.x_test, task.y_test)
    result.seconds = time.perf_counter() - started
    if keep_model:
        result.model = model
    return result
