"""Modules and tasks of a "user's own" for the tests: named by import path (``usermodels:...``)."""

from __future__ import annotations

import math

import torch
from torch import nn


def dropout_mlp(input_shape: tuple[int, ...], outputs: int, p: float = 0.5) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.Dropout(p), nn.Linear(16, outputs)
    )


class Branchy(nn.Module):
    """Data-dependent control flow: a branch on a value of the input, which vmap cannot batch."""

    def __init__(self, features: int, outputs: int):
        super().__init__()
        self.linear = nn.Linear(features, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.sum() > 0:
            return self.linear(x)
        return -self.linear(x)


def branchy(input_shape: tuple[int, ...], outputs: int) -> nn.Module:
    return Branchy(math.prod(input_shape), outputs)


def frozen_first_layer(input_shape: tuple[int, ...], outputs: int) -> nn.Module:
    """A first layer left as initialised (a frozen backbone's stand-in)."""
    model = dropout_mlp(input_shape, outputs, 0.0)
    model[1].weight.requires_grad_(False)
    return model
