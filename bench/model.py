"""The model a trial trains: the MLP of the reference task (30-64-32-1, ReLU), generalised (hidden sizes,
activation, dropout), or the user's own module, built by a function named as an import path; an output size
taken from the task (one logit for two classes, one per class otherwise, one output for a regression); its
loss and its score (accuracy, or a regression's RMSE)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench import usercode
from bench.errors import UserError
from bench.lazy import LazyModule

# torch is read when a model is built or a loss computed: reading a study's definition (config) does not
# import it (see bench.lazy).
if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.nn import functional as F
else:
    torch = LazyModule("torch")
    nn = LazyModule("torch.nn")
    F = LazyModule("torch.nn.functional")

# torch.nn's activation classes by name.
ACTIVATIONS: dict[str, str] = {"relu": "ReLU", "gelu": "GELU", "tanh": "Tanh", "silu": "SiLU"}


def activation(name: str) -> nn.Module:
    return getattr(nn, ACTIVATIONS[name])()


@dataclass(frozen=True)
class ModelConfig:
    """The built-in MLP (``hidden``, ``activation``, ``dropout``), or, where ``python`` names a function
    (``package.module:function``), the module it returns given the task's input shape, its number of
    outputs and ``args``."""

    hidden: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    dropout: float = 0.0
    python: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)

    # args is a mapping: the model is compared and hashed by its JSON (a population's members share it).
    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelConfig) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def key(self) -> str:
        """What tells two models apart, as text."""
        plain = {"hidden": list(self.hidden), "activation": self.activation, "dropout": self.dropout}
        return json.dumps(
            {**plain, "python": self.python, "args": dict(self.args)}, sort_keys=True, default=str
        )

    @property
    def label(self) -> str:
        """The model in a few words: its function, or the MLP's sizes."""
        return self.python or "MLP " + "-".join(map(str, self.hidden))


def output_size(n_classes: int) -> int:
    """Binary tasks use one logit with BCE-with-logits; more classes use cross-entropy over n logits; a
    regression task (which counts one class) has its one output."""
    return 1 if n_classes == 2 else n_classes


def check(cfg: ModelConfig, where: str = "") -> None:
    """Raise :class:`UserError` for a model that cannot be built; ``where`` prefixes the field names
    (``model.`` in a study)."""
    if cfg.python:
        usercode.check_path(cfg.python, f"{where}python")
        default = ModelConfig()
        shaped = [k for k in ("hidden", "activation", "dropout") if getattr(cfg, k) != getattr(default, k)]
        if shaped:
            raise UserError(
                f"{where}{shaped[0]}: hidden, activation and dropout shape the built-in MLP; "
                f"leave them out with {where}python (give your function args instead)"
            )
        return
    if cfg.args:
        raise UserError(f"{where}args: arguments go to a model function; name it with {where}python")
    if cfg.activation not in ACTIVATIONS:
        choices = ", ".join(ACTIVATIONS)
        raise UserError(f"{where}activation: unknown activation {cfg.activation!r}; choose one of: {choices}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserError(f"{where}dropout: 0 <= dropout < 1 must hold, but got (dropout={cfg.dropout})")
    if any(h < 1 for h in cfg.hidden):
        raise UserError(f"{where}hidden: every size must be at least 1, but got {list(cfg.hidden)}")


def parameters(n_features: int, n_classes: int, cfg: ModelConfig) -> int:
    """The number of weights and biases of the MLP :func:`build_mlp` builds (0 for a model of the user's:
    known once it is built)."""
    if cfg.python:
        return 0
    widths = [n_features, *cfg.hidden, output_size(n_classes)]
    return sum((a + 1) * b for a, b in itertools.pairwise(widths))


def build(input_shape: tuple[int, ...], n_classes: int, cfg: ModelConfig) -> nn.Module:
    """The model for a task whose rows have ``input_shape``: the user's function's module, or the MLP (on
    rows of features). The user's function is called as ``fn(input_shape, outputs, **args)``; whatever it
    raises, or a return that is no module, is a :class:`UserError`."""
    if not cfg.python:
        if len(input_shape) != 1:
            raise UserError(
                f"model: the built-in MLP takes rows of features, but the task's rows have shape "
                f"{list(input_shape)}; name a module of your own with model.python"
            )
        return build_mlp(input_shape[0], n_classes, cfg)
    fn = usercode.resolve(cfg.python, "model.python")
    outputs = output_size(n_classes)
    module = usercode.call(fn, cfg.python, "model.python", tuple(input_shape), outputs, **cfg.args)
    if not isinstance(module, nn.Module):
        raise UserError(
            f"model.python: {cfg.python} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    if not any(True for _ in module.parameters()):
        raise UserError(f"model.python: the module {cfg.python} returned has no parameters to train")
    return module


def build_mlp(n_features: int, n_classes: int, cfg: ModelConfig) -> nn.Sequential:
    check(cfg)
    layers: list[nn.Module] = []
    width = n_features
    for size in cfg.hidden:
        layers += [nn.Linear(width, size), activation(cfg.activation)]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = size
    layers.append(nn.Linear(width, output_size(n_classes)))
    return nn.Sequential(*layers)


def mean_loss(out: torch.Tensor, y: torch.Tensor, regression: bool = False) -> torch.Tensor:
    """Mean loss over the batch (a tensor: no host sync): MSE for a regression (on the standardised
    target), binary cross-entropy on one logit, cross-entropy otherwise.

    out (..., B, outputs) and targets (..., B): any leading axes are kept, so a population's
    (K, B, outputs) gives one loss per member, and a plain (B, outputs) gives a scalar.
    """
    if regression:
        per_row = F.mse_loss(out.squeeze(-1), y, reduction="none")
    elif out.shape[-1] == 1:
        z = out.squeeze(-1)
        per_row = F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none")
    else:
        flat = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        per_row = flat.view(y.shape)
    return per_row.mean(-1)


def loss_and_score(
    out: torch.Tensor, y: torch.Tensor, target_std: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mean_loss` and the task's score in float64 (for evaluation; training steps need the loss
    alone): the share of correct predictions, or given a regression target's std, the RMSE in the
    target's own units, sqrt(MSE on the standardised target) x std."""
    if target_std is not None:
        loss = mean_loss(out, y, regression=True)
        return loss, loss.to(torch.float64).sqrt() * target_std
    if out.shape[-1] == 1:
        correct = ((out.squeeze(-1) >= 0).to(y.dtype) == y).sum(-1)
    else:
        correct = (out.argmax(-1) == y).sum(-1)
    return mean_loss(out, y), correct.to(torch.float64) / y.shape[-1]
