"""K copies of the MLP as one batched model: every member's parameters in one row of a flat buffer, every
layer one batched matmul over the population.

Each member's loss depends on its own weights only, so one backward pass gives every member its own
gradient (:meth:`StackedMLP.gradients`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from bench.data import Task
from bench.model import ModelConfig, activation, build_mlp, loss_and_score, mean_loss, output_size


def initial_rows(task: Task, model: ModelConfig, seeds: Sequence[int]) -> torch.Tensor:
    """The members' initial parameters, one flat row each (layer by layer: weight as (in, out), then bias),
    on the task's device. Each is the reference trainer's initialisation for its seed: the CPU generator
    that ``torch.manual_seed`` seeds, then the same module build (``torch.manual_seed`` itself would also
    queue a seeding of every other backend: 0.6 ms a member)."""
    rows = []
    for seed in seeds:
        torch.default_generator.manual_seed(seed)
        mlp = build_mlp(task.n_features, task.n_classes, model)
        linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
        parts = [t for m in linears for t in (m.weight.detach().t(), m.bias.detach().unsqueeze(0))]
        rows.append(torch.cat([t.reshape(-1) for t in parts]))
    return torch.stack(rows).to(task.device)


def layer_shapes(task: Task, model: ModelConfig) -> list[tuple[int, int]]:
    """Each layer's weight shape (in, out); its bias is (1, out)."""
    widths = [task.n_features, *model.hidden, output_size(task.n_classes)]
    return list(itertools.pairwise(widths))


class StackedMLP:
    """The members' parameters (``flat``, (K, P)) and gradients (``grad``, the same layout), with each
    layer's weights and biases as views into them."""

    def __init__(self, task: Task, model: ModelConfig, flat: torch.Tensor):
        self.shapes = [s for w in layer_shapes(task, model) for s in (w, (1, w[1]))]
        self.activation = activation(model.activation)
        self.dropout = model.dropout
        self.regression, self.target_std = task.regression, task.target_std
        self.binary = output_size(task.n_classes) == 1 and not task.regression  # BCE: labels as floats
        self.set_rows(flat)

    @property
    def k(self) -> int:
        return int(self.flat.shape[0])

    def set_rows(self, flat: torch.Tensor) -> None:
        """New parameters (compacted, or with members appended); the gradient buffer follows. Each layer's
        weights (K, in, out) and biases (K, 1, out) are views of the flat (K, P) buffer."""
        self.flat = flat.contiguous()
        self.grad = torch.zeros_like(self.flat)
        views: list[torch.Tensor] = []
        offset = 0
        for shape in self.shapes:
            n = math.prod(shape)
            views.append(self.flat[:, offset : offset + n].view(self.k, *shape))
            offset += n
        self.weights, self.biases = views[0::2], views[1::2]

    @staticmethod
    def _layer(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # One output (binary tasks): a batched matrix-vector product is a slow case of the batched matmul
        # (forward and backward measured 2.2x faster at K=256 as a product and a sum).
        return torch.mul(h, w.mT).sum(-1, keepdim=True) + b if w.shape[-1] == 1 else torch.baddbmm(b, h, w)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, features) -> logits (K, B, outputs), for evaluation (no dropout)."""
        h = x
        last = len(self.weights) - 1
        for j, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = self._layer(h, w, b)
            if j < last:
                h = self.activation(h)
        return h

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's mean loss and score (accuracy, or RMSE) on the same rows."""
        out = self.forward(x.expand(self.k, *x.shape))
        return loss_and_score(out, y.expand(self.k, *y.shape), self.target_std)

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step's forward and backward pass: every member's gradient of its own mean loss on
        its batch x (K, B, features), targets y (K, B), written into ``grad``; returns the losses (K,).

        Autograd, with each layer's stacked weights and biases as leaves of their own (views of the flat
        buffer, detached), their gradients then written into the flat gradient buffer with one ``cat``.
        Leaves that are views of one flat leaf would make autograd's backward build a zero-filled copy of
        the whole buffer for every layer (the slices' backward): 2.2x the step at K=64 here."""
        params = [
            t.detach().requires_grad_(True)
            for pair in zip(self.weights, self.biases, strict=True)
            for t in pair
        ]
        weights, biases = params[0::2], params[1::2]
        h = x
        last = len(weights) - 1
        for j, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = self._layer(h, w, b)
            if j < last:
                h = self.activation(h)
                if self.dropout > 0:  # the reference trainer's nn.Dropout
                    h = F.dropout(h, self.dropout, training=True)
        loss = mean_loss(h, y, self.regression)
        grads = torch.autograd.grad(loss.sum(), params)
        torch.cat([g.reshape(self.k, -1) for g in grads], 1, out=self.grad)
        return loss.detach()

    def member(self, row: int) -> list[torch.Tensor]:
        """One member's weights in nn.Linear layout: [W1 (out, in), b1, W2, ...]."""
        out: list[torch.Tensor] = []
        for w, b in zip(self.weights, self.biases, strict=True):
            out += [w[row].detach().t(), b[row].detach().squeeze(0)]
        return out
