"""The torch.func population engine, side by side with what it stands beside (``make perf``, and alone as
``python -m perf func``):

  (f) the reference task's MLP batched by torch.func, against the stacked-MLP engine at the same K (the
      (d) rows' trials: every family, each member its own seed, 50 epochs);
  (g) the worked example's CNN (examples/digits_cnn, 8x8 digits, batch 64, 12 epochs): the population
      engine at several K against the reference trainer, one trial at a time.

Each row runs in a process of its own; the ratios are of medians measured in the same run.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.train.population import Batching

from perf.training import BATCH, EPOCHS, ROOT_DIR, _peak_mb, _task, in_child

CNN_EPOCHS, CNN_BATCH = 12, 64


def row_mlp(device: str, k: int, batching: Batching) -> dict[str, Any]:
    """K members of the reference task's MLP over every family, batched as ``batching`` says."""
    from bench.schedules import SCHEDULES
    from bench.train import TrainConfig
    from bench.train.population import train_population

    task = _task(device)
    families = sorted(SCHEDULES)
    cfgs = [
        TrainConfig(scheduler=families[i % len(families)], lr=1e-3, epochs=EPOCHS, batch_size=BATCH, seed=i)
        for i in range(k)
    ]
    train_population(task, [dataclasses.replace(c, epochs=1) for c in cfgs[:2]], batching=batching)  # warm
    start = time.perf_counter()
    train_population(task, cfgs, batching=batching)
    return {"seconds_per_trial": (time.perf_counter() - start) / k, "peak_mb": _peak_mb(), "trials": k}


def _cnn(device: str) -> tuple[Any, Any]:
    from bench import usercode
    from bench.data import DataConfig, load_task
    from bench.model import ModelConfig
    from bench.train import TrainConfig, resolve_device

    usercode.add_folder(ROOT_DIR / "examples" / "digits_cnn")
    task = load_task(DataConfig(python="cnn:load_digits"), resolve_device(device))
    cfg = TrainConfig(
        scheduler="CosineAnnealingLR",
        optimizer="adam",
        lr=3e-3,
        epochs=CNN_EPOCHS,
        batch_size=CNN_BATCH,
        model=ModelConfig(python="cnn:build", args={"channels": 8, "hidden": 32}),
    )
    return task, cfg


def row_cnn_reference(device: str, n: int) -> dict[str, Any]:
    from bench.train import train

    task, cfg = _cnn(device)
    train(task, dataclasses.replace(cfg, epochs=1, seed=99))  # warm-up
    times = [train(task, dataclasses.replace(cfg, seed=seed)).seconds for seed in range(n)]
    return {"seconds_per_trial": statistics.median(times), "peak_mb": _peak_mb(), "trials": n}


def row_cnn_population(device: str, k: int) -> dict[str, Any]:
    from bench.schedules import SCHEDULES
    from bench.train.population import train_population

    task, cfg = _cnn(device)
    families = sorted(SCHEDULES)
    cfgs = [dataclasses.replace(cfg, scheduler=families[i % len(families)], seed=i) for i in range(k)]
    train_population(task, [dataclasses.replace(cfgs[0], epochs=1)])  # warm-up
    start = time.perf_counter()
    train_population(task, cfgs)
    return {"seconds_per_trial": (time.perf_counter() - start) / k, "peak_mb": _peak_mb(), "trials": k}


def func_benchmark(device: str, ks: list[int], cnn_ks: list[int]) -> str:
    def run(label: str, fn: Any, *args: Any) -> dict[str, Any]:
        print(f"  running {label} ...", file=sys.stderr, flush=True)
        return in_child(fn, *args)

    head = f"{'row':<44} {'s/trial':>9} {'peak RSS':>9} {'ratio':>28}"
    lines = [head, "-" * len(head)]
    for k in ks:
        stacked = run(f"(f) stacked MLP K={k}", row_mlp, device, k, "stacked")
        func = run(f"(f) torch.func MLP K={k}", row_mlp, device, k, "func")
        ratio = func["seconds_per_trial"] / stacked["seconds_per_trial"]
        lines.append(
            f"{f'(f) stacked-MLP population K={k}':<44} {stacked['seconds_per_trial']:9.4f} "
            f"{stacked['peak_mb']:6.0f} MB"
        )
        lines.append(
            f"{f'(f) torch.func population K={k}, same MLP':<44} {func['seconds_per_trial']:9.4f} "
            f"{func['peak_mb']:6.0f} MB {f'{ratio:.2f}x the stacked time':>28}"
        )
    ref = run("(g) CNN reference trainer", row_cnn_reference, device, 3)
    lines.append(
        f"{'(g) CNN, reference trainer':<44} {ref['seconds_per_trial']:9.4f} {ref['peak_mb']:6.0f} MB"
    )
    for k in cnn_ks:
        pop = run(f"(g) CNN population K={k}", row_cnn_population, device, k)
        speed = ref["seconds_per_trial"] / pop["seconds_per_trial"]
        lines.append(
            f"{f'(g) CNN, torch.func population K={k}':<44} {pop['seconds_per_trial']:9.4f} "
            f"{pop['peak_mb']:6.0f} MB {f'{speed:.2f}x the reference speed':>28}"
        )
    import torch

    lines.append(
        f"\nMLP: {EPOCHS} epochs, batch {BATCH}; CNN: {CNN_EPOCHS} epochs, batch {CNN_BATCH}; "
        f"device {device}, torch threads {torch.get_num_threads()}"
    )
    return "\n".join(lines)
