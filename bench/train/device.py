"""The device a study or a trial trains on."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bench.errors import UserError
from bench.lazy import LazyModule

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")

# The devices lrbench trains on (torch.device takes more, such as meta and xpu, that the engines do not).
DEVICE_FORM = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def resolve_device(requested: str | None = "auto") -> torch.device:
    """cuda, then mps, then cpu, unless a device is named."""
    if requested is not None and not DEVICE_FORM.fullmatch(requested):
        raise UserError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
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
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(
            f"device {requested!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {requested!r} asked for, but MPS is not available")
    return device
