"""K copies of any module that ``torch.func`` can batch, as one population model: the members' parameters
stacked (``torch.func.stack_module_state``) into one flat (K, P) buffer, the forward pass the module's own,
called with each member's parameters (``functional_call``) under ``vmap``.

The same seam as :class:`bench.train.population.stack.StackedMLP` (``flat``, ``grad``, ``gradients``,
``evaluate``, ``member``), so the engine and the optimizer (:mod:`.optim`) are the same for both. Buffers
(a module's non-trained state) are shared by the members and never written: a module that writes its
buffers while training (batch norm in training mode) is not batched (:func:`unbatchable`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from bench.data import Task
from bench.model import ModelConfig, build, loss_and_score, mean_loss, output_size

# Batch-norm layers update their running statistics in place in training mode: vmap cannot batch that.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def build_member(task: Task, model: ModelConfig, seed: int) -> nn.Module:
    """One member's module as the reference trainer builds it for ``seed``: the CPU generator that
    ``torch.manual_seed`` seeds, then the build, then the device."""
    torch.default_generator.manual_seed(seed)
    return build(task.input_shape, task.n_classes, model).to(task.device)


def func_initial_rows(task: Task, model: ModelConfig, seeds: Sequence[int]) -> torch.Tensor:
    """The members' initial parameters, one flat row each, in the module's parameter order."""
    params, _ = stack_module_state([build_member(task, model, s) for s in seeds])
    return torch.cat([p.detach().reshape(len(seeds), -1) for p in params.values()], 1)


def unbatchable(module: nn.Module) -> str | None:
    """Why ``torch.func`` cannot batch the module, where that shows before running it (None otherwise; a
    forward that vmap refuses is found by :meth:`FuncModel.probe`)."""
    for name, sub in module.named_modules():
        if isinstance(sub, BATCH_NORMS) and sub.track_running_stats:
            return (
                f"{type(sub).__name__} {name!r} updates its running statistics in training mode, "
                "which torch.func.vmap cannot batch"
            )
    return None


class FuncModel:
    """The members' parameters (``flat``, (K, P)) and gradients (``grad``, the same layout), with each of the
    module's parameters as a (K, *shape) view into them."""

    def __init__(self, task: Task, model: ModelConfig, flat: torch.Tensor):
        self.base = build_member(task, model, 0)  # the forward pass; its own parameters are never used
        self.names = [name for name, _ in self.base.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in self.base.named_parameters()]
        self.buffers = dict(self.base.named_buffers())
        self.regression, self.target_std = task.regression, task.target_std
        self.binary = output_size(task.n_classes) == 1 and not task.regression  # BCE: labels as floats
        # Each member's own dropout mask, as each reference run draws its own.
        self._train_forward = vmap(self._forward, in_dims=(0, 0), randomness="different")
        self._eval_forward = vmap(self._forward, in_dims=(0, None))
        self.set_rows(flat)

    @property
    def k(self) -> int:
        return int(self.flat.shape[0])

    def set_rows(self, flat: torch.Tensor) -> None:
        self.flat = flat.contiguous()
        self.grad = torch.zeros_like(self.flat)
        self.views: list[torch.Tensor] = []
        offset = 0
        for shape in self.shapes:
            n = math.prod(shape)
            self.views.append(self.flat[:, offset : offset + n].view(self.k, *shape))
            offset += n

    def _forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(self.base, (params, self.buffers), (x,))
        return out

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's mean loss and score (accuracy, or RMSE) on the same rows, in eval mode."""
        self.base.eval()
        try:
            out = self._eval_forward(dict(zip(self.names, self.views, strict=True)), x)
        finally:
            self.base.train()
        return loss_and_score(out, y.expand(self.k, *y.shape), self.target_std)

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Every member's gradient of its own mean loss on its batch x (K, B, ...), targets y (K, B), into
        ``grad``; returns the losses (K,). As :meth:`StackedMLP.gradients`: each parameter's stacked view a
        leaf of its own, the gradients then written into the flat buffer with one ``cat``."""
        leaves = [v.detach().requires_grad_(True) for v in self.views]
        out = self._train_forward(dict(zip(self.names, leaves, strict=True)), x)
        loss = mean_loss(out, y, self.regression)
        grads = torch.autograd.grad(loss.sum(), leaves, allow_unused=True)
        parts = [
            (g if g is not None else torch.zeros_like(v)).reshape(self.k, -1)
            for g, v in zip(grads, leaves, strict=True)
        ]
        torch.cat(parts, 1, out=self.grad)
        return loss.detach()

    def member(self, row: int) -> list[torch.Tensor]:
        """One member's parameters, in the module's order and shapes (as ``module.parameters()``)."""
        return [v[row].detach() for v in self.views]

    def probe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step's forward and backward and one evaluation on a few rows: raises what vmap
        raises for a module it cannot batch (data-dependent control flow, in-place writes to buffers)."""
        self.gradients(x.expand(self.k, *x.shape), y.expand(self.k, *y.shape))
        self.evaluate(x, y)
        self.grad.zero_()
