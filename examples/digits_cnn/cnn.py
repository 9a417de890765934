"""A small convolutional network on scikit-learn's 8x8 digits images: lrbench's worked example of a model
and a task of your own (see examples/README.md).

``load_digits`` is the study's ``task.python``: it returns the images as (rows, 1, 8, 8) tensors, split
into training, validation and test rows stratified by ``split_seed``. ``build`` is its ``model.python``:
it gets the rows' shape and the number of outputs lrbench wants (one per class) and returns the module.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits as sklearn_digits
from sklearn.model_selection import train_test_split
from torch import nn

Part = tuple[torch.Tensor, torch.Tensor]


def load_digits(split_seed: int = 0, val_size: float = 0.2, test_size: float = 0.2) -> dict[str, Part]:
    """The 1797 images scaled to [0, 1] (their pixels count 0 to 16), as (rows, 1, 8, 8), and their
    labels; a stratified split from ``split_seed``."""
    bunch = sklearn_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    rows = list(range(len(y)))
    rest, test = train_test_split(rows, test_size=test_size, random_state=split_seed, stratify=y)
    train, val = train_test_split(
        rest, test_size=val_size / (1 - test_size), random_state=split_seed, stratify=y[rest]
    )
    return {part: (x[idx], y[idx]) for part, idx in (("train", train), ("val", val), ("test", test))}


def build(input_shape: tuple[int, ...], outputs: int, channels: int = 8, hidden: int = 32) -> nn.Module:
    """Two 3x3 convolutions (``channels``, then twice as many), a 2x2 max-pool, and two linear layers."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * (h // 2) * (w // 2), hidden),
        nn.ReLU(),
        nn.Linear(hidden, outputs),
    )


def build_with_batch_norm(input_shape: tuple[int, ...], outputs: int, channels: int = 8) -> nn.Module:
    """The same network with batch norm after each convolution: torch.func cannot batch its training step
    (batch norm updates its running statistics), so lrbench trains it one trial at a time."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.BatchNorm2d(2 * channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * (h // 2) * (w // 2), outputs),
    )
