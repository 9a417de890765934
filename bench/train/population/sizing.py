"""How many members a population trains at once, and whether a model can be a population at all."""

from __future__ import annotations

import itertools
import os

import torch

from bench.data import Task
from bench.model import ModelConfig, output_size
from bench.train.population.func import FuncModel, build_member, func_initial_rows, unbatchable


def auto_population_size(task: Task, model: ModelConfig, batch_size: int, cap: int | None = None) -> int:
    """How many members to train at once: what fits in a quarter of the device's free memory, capped
    (128 on CPU, where larger populations stop paying: ``make perf``'s (d) rows; 4096 on CUDA)."""
    device = task.device
    n_params, per_row = _footprint(task, model)
    activations = (batch_size * 3 + len(task.y_val) + len(task.y_test)) * per_row
    epoch_copy = len(task.y_train) * task.n_features  # each member's epoch of rows in its own order
    per_member = 4 * (4 * n_params + 2 * activations + epoch_copy)  # float32: weights, grad, 2 Adam states
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        default_cap = 4096
    else:
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 2**20
        free = pages * os.sysconf("SC_PAGE_SIZE")
        default_cap = 128
    return max(1, min(cap or default_cap, int(free * 0.25) // per_member))


def _footprint(task: Task, model: ModelConfig) -> tuple[int, int]:
    """A member's parameters, and the values its forward pass makes per row: the MLP's from its widths; a
    module of the user's counted on two rows (its input and every innermost submodule's output)."""
    if not model.python:
        widths = [task.n_features, *model.hidden, output_size(task.n_classes)]
        return sum(a * b + b for a, b in itertools.pairwise(widths)), sum(widths)
    module = build_member(task, model, 0)
    rows = task.x_train[:2]
    made = [rows.numel()]

    def count(_: torch.nn.Module, __: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            made.append(out.numel())

    leaves = [m for m in module.modules() if not list(m.children())]  # where the values are made
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            module.eval()(rows)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(p.numel() for p in module.parameters()), -(-sum(made) // len(rows))


def fallback_line(task: Task, model: ModelConfig) -> str | None:
    """The line that says why the population engine cannot train ``model`` and each run trains alone (the
    reference engine); None where it can (:func:`why_not_batched`)."""
    why = why_not_batched(task, model)
    return (
        None
        if why is None
        else f"model {model.label}: {why}; training one trial at a time (engine: reference)"
    )


def why_not_batched(task: Task, model: ModelConfig) -> str | None:
    """None where the population engine can train the model; else why not, in a few words. The built-in
    MLP always can; a module of the user's where torch.func batches its training step and evaluation (tried
    on two members and a few rows)."""
    if not model.python:
        return None
    module = build_member(task, model, 0).train()
    frozen = [name for name, p in module.named_parameters() if not p.requires_grad]
    if frozen:
        return f"its parameter {frozen[0]!r} is frozen (requires_grad=False); a population trains them all"
    reason = unbatchable(module)
    if reason is not None:
        return reason
    rows = min(4, len(task.y_train))
    try:
        FuncModel(task, model, func_initial_rows(task, model, [0, 1])).probe(
            task.x_train[:rows], task.y_train[:rows]
        )
    except Exception as exc:  # whatever vmap refuses, said in one line
        text = " ".join(str(exc).split())
        return f"torch.func cannot batch its training step ({type(exc).__name__}: {text[:300]})"
    return None
