"""The training rows of ``make perf``, each run in a process of its own (its peak memory is its own):
(a) the seed article's loop, (b) that loop in a hand-written Optuna objective with MLflow logging, (c) the
reference trainer, (d) the population engine."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import optuna

EPOCHS, BATCH = 50, 32
ROOT_DIR = Path(__file__).resolve().parent.parent


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _task(device: str) -> Any:
    from bench.data import DataConfig, load_task
    from bench.train import resolve_device

    return load_task(DataConfig(dataset="breast_cancer"), resolve_device(device))


def _seed_loop_trial(
    task: Any,
    seed: int,
    on_step: Callable[..., None] | None = None,
    on_epoch: Callable[..., bool] | None = None,
) -> float:
    """The article's loop (shared seed 002), with BCE-with-logits, plus a test evaluation."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    x, y = task.x_train, task.y_train.float().view(-1, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)).to(
        x.device
    )
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
    step = 0
    for epoch in range(EPOCHS):
        model.train()
        for inputs, targets in loader:
            lr = optimizer.param_groups[0]["lr"]
            loss = criterion(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(step, lr, loss)
            step += 1
        scheduler.step()
        if on_epoch is not None:
            model.eval()
            with torch.no_grad():
                val = model(task.x_val)
                val_loss = float(criterion(val, task.y_val.float().view(-1, 1)))
                val_acc = float(((val.squeeze(1) >= 0).long() == task.y_val).float().mean())
            if on_epoch(epoch, loss.item(), val_loss, val_acc):
                break
    model.eval()
    with torch.no_grad():
        return float(((model(task.x_test).squeeze(1) >= 0).long() == task.y_test).float().mean())


def row_seed_loop(device: str, n: int) -> dict[str, Any]:
    task = _task(device)
    _seed_loop_trial(task, 99)  # warm-up (torch's lazy initialisation)
    times = []
    for seed in range(n):
        start = time.perf_counter()
        _seed_loop_trial(task, seed)
        times.append(time.perf_counter() - start)
    return {"seconds_per_trial": statistics.median(times), "peak_mb": _peak_mb(), "trials": n}


def row_hand_written_study(device: str, n: int) -> dict[str, Any]:
    """What users write by hand today: Optuna objective + mlflow.log_metric per step and per epoch."""
    import mlflow

    task = _task(device)
    _seed_loop_trial(task, 99)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        mlflow.set_experiment("hand-written")
        study = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner())
        times: list[float] = []

        def objective(trial: optuna.Trial) -> float:
            start = time.perf_counter()
            lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            with mlflow.start_run(nested=True):
                mlflow.log_params({"lr": lr, "scheduler": "StepLR", "epochs": EPOCHS, "batch_size": BATCH})
                last = {}

                def on_step(step: int, lr_now: float, loss: Any) -> None:
                    mlflow.log_metric("lr", lr_now, step=step)

                def on_epoch(epoch: int, train_loss: float, val_loss: float, val_acc: float) -> bool:
                    mlflow.log_metric("train/loss", train_loss, step=epoch)
                    mlflow.log_metric("val/loss", val_loss, step=epoch)
                    mlflow.log_metric("val/accuracy", val_acc, step=epoch)
                    last["val_loss"] = val_loss
                    trial.report(val_loss, epoch)
                    return trial.should_prune()

                acc = _seed_loop_trial(task, trial.number, on_step, on_epoch)
                mlflow.log_metric("test/accuracy", acc)
            times.append(time.perf_counter() - start)
            return last["val_loss"]

        with mlflow.start_run(run_name="study"):
            study.optimize(objective, n_trials=n)
    return {"seconds_per_trial": statistics.median(times), "peak_mb": _peak_mb(), "trials": n}


def row_reference(device: str, n: int) -> dict[str, Any]:
    from bench.train import TrainConfig, train

    task = _task(device)
    cfg = TrainConfig(
        scheduler="StepLR", scheduler_args={"step_size": 20, "gamma": 0.5}, epochs=EPOCHS, batch_size=BATCH
    )
    train(task, dataclasses.replace(cfg, seed=99))  # warm-up
    times = [train(task, dataclasses.replace(cfg, seed=seed)).seconds for seed in range(n)]
    return {"seconds_per_trial": statistics.median(times), "peak_mb": _peak_mb(), "trials": n}


def row_population(device: str, k: int) -> dict[str, Any]:
    """K members over every schedule family (mixed per-step and per-epoch), each with its own seed."""
    from bench.schedules import SCHEDULES
    from bench.train import TrainConfig, train
    from bench.train.population import train_population

    task = _task(device)
    families = sorted(SCHEDULES)
    train(task, TrainConfig(epochs=1))  # warm-up
    cfgs = [
        TrainConfig(scheduler=families[i % len(families)], lr=1e-3, epochs=EPOCHS, batch_size=BATCH, seed=i)
        for i in range(k)
    ]
    start = time.perf_counter()
    train_population(task, cfgs)
    elapsed = time.perf_counter() - start
    return {"seconds_per_trial": elapsed / k, "peak_mb": _peak_mb(), "trials": k}


def row_baseline(device: str) -> dict[str, Any]:
    """The memory of a process that has imported torch and loaded the task, for reference."""
    _task(device)
    return {"peak_mb": _peak_mb()}


def matmul_flops(device: str) -> float:
    import torch

    from bench.train import resolve_device

    dev = resolve_device(device)
    n = 2048
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    times = []
    for _ in range(7):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times[2:])


def task_flops() -> float:
    """Analytic FLOPs of one reference trial: 3x the forward for training samples, 1x for evaluations."""
    widths = [30, 64, 32, 1]
    macs = sum(a * b for a, b in itertools.pairwise(widths))
    n_train, n_val, n_test = 341, 114, 114
    return EPOCHS * (n_train * 3 * 2 * macs + n_val * 2 * macs) + n_test * 2 * macs


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()
