"""The optimizers a trial can train with, by name: torch's own."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bench.lazy import LazyModule

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")  # a study's definition is checked against OPTIMIZERS without torch

Params = Iterable["torch.Tensor"]
OptimizerFactory = Callable[
    [Params, float, float, float], "torch.optim.Optimizer"
]  # params, lr, momentum, wd


def _sgd(params: Params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    # SGD always with momentum: plain SGD is rarely what anyone compares schedules on.
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _adam(params: Params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return _adam_kind(torch.optim.Adam, params, lr, weight_decay)


def _adamw(params: Params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return _adam_kind(torch.optim.AdamW, params, lr, weight_decay)


def _adam_kind(
    cls: type[torch.optim.Adam] | type[torch.optim.AdamW], params: Params, lr: float, wd: float
) -> torch.optim.Optimizer:
    """torch's Adam / AdamW; on CUDA its fused kernel. That is the fastest there, and the arithmetic the
    population engine runs: torch's default (foreach) and fused CUDA AdamW end 3 epochs of the reference
    task 1e-4 apart (relative), so a trial should not change implementation with the engine. On the CPU
    torch's default (all of torch's CPU implementations agree there within 4e-7)."""
    params = list(params)
    fused = True if params and all(p.is_cuda for p in params) else None
    return cls(params, lr=lr, weight_decay=wd, fused=fused)


OPTIMIZERS: dict[str, OptimizerFactory] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}
