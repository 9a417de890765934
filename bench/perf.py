"""Benchmarks, measured side by side in one run and printed as tables of medians and ratios.

    python -m bench.perf            # everything (make perf): training and end-to-end study throughput
    python -m bench.perf storage    # Optuna bookkeeping per trial: journal file vs SQLite vs in memory
    python -m bench.perf seeds      # best results of the default study, each engine on seeds 0-5 (5 min)
    python -m bench.perf server     # the default study against an `mlflow server` here, 1 vs 8 requests

All rows use the reference task (breast-cancer MLP 30-64-32-1, batch 32, 50 epochs) on one device:

  (a) the seed article's loop: DataLoader, per-batch steps, StepLR, no tracking;
  (b) that loop inside a hand-written Optuna objective that logs ``lr`` every step and the epoch metrics
      with plain ``mlflow.log_metric`` calls (MLflow on SQLite, Optuna in memory);
  (c) lrbench's reference trainer;
  (d) the population engine at several K (training only);
  (e) ``lrbench study studies/breast_cancer.yaml`` end to end in a fresh process, exactly as ``make study``
      runs it (sampling, training, full MLflow logging, leaderboards), three times with the population
      engine (the median run is the row) and once with the reference engine (the same study, for the
      best-value comparison).

Every row runs in a process of its own, so that its peak resident memory (RSS) is its own. The FLOP rate is
the analytic count of the reference task's arithmetic over the measured time, against a large matmul timed
in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import optuna

from bench.study import open_storage, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parent.parent
EPOCHS, BATCH = 50, 32
E_REPEATS = 3


# --- the storage benchmark -----------------------------------------------------------------------------


def _trial_bookkeeping(storage: optuna.storages.BaseStorage | str, n: int, epochs: int) -> list[float]:
    study = optuna.create_study(
        storage=storage,
        study_name="perf",
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
    )
    times = []
    for _ in range(n):
        start = time.perf_counter()
        trial = study.ask()
        family = trial.suggest_categorical("scheduler", ["StepLR", "OneCycleLR", "CosineAnnealingLR"])
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_float(f"{family}.x", 0.1, 0.9)
        trial.set_user_attr("worker", "host:1:1")
        trial.set_user_attr("mlflow_run_id", "0" * 32)
        pruned = False
        for epoch in range(epochs):
            trial.report(1.0 / (epoch + 1), epoch)
            if trial.should_prune():
                pruned = True
                break
        trial.set_user_attr("result", {"test_accuracy": 0.5, "test_loss": 0.5, "epochs_run": epochs})
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 0.1)
        times.append(time.perf_counter() - start)
    return times


def storage_benchmark(n: int = 60, epochs: int = 50) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kinds: dict[str, optuna.storages.BaseStorage | str] = {
            "journal file (default)": open_storage(str(Path(tmp) / "optuna.journal")),
            "sqlite": f"sqlite:///{Path(tmp) / 'optuna.db'}",
            "in memory": optuna.storages.InMemoryStorage(),
        }
        for name, storage in kinds.items():
            times = _trial_bookkeeping(storage, n, epochs)[5:]  # the first few include table creation
            rows.append((name, statistics.median(times) * 1000))
    base = rows[0][1]
    lines = [f"Optuna bookkeeping per trial ({n} trials, {epochs} reports each), median ms", ""]
    lines += [f"{name:<24} {ms:8.1f} ms  {ms / base:5.1f}x the journal" for name, ms in rows]
    return "\n".join(lines)


def sampler_benchmark(n: int = 100) -> str:
    """Milliseconds per ask of TPE on the default study's conditional space (family, LR, the family's
    arguments), independent (Optuna's default) against multivariate, over the last 20 of n asks."""
    from bench.schedules import SCHEDULES

    lines = [f"TPE ask on the default study's search space, median ms over asks {n - 20}-{n}", ""]
    for multivariate in (False, True):
        study = optuna.create_study(
            sampler=optuna.samplers.TPESampler(
                seed=0, multivariate=multivariate, group=multivariate, constant_liar=True
            )
        )
        times = []
        for i in range(n):
            start = time.perf_counter()
            trial = study.ask()
            family = SCHEDULES[trial.suggest_categorical("scheduler", sorted(SCHEDULES))]
            trial.suggest_float("lr", 1e-4, 3e-2, log=True)
            for arg, rng in family.space(family.horizon(50, 11, 1e-3)).items():
                suggest(trial, f"{family.name}.{arg}", rng)
            times.append(time.perf_counter() - start)
            study.tell(trial, float(i % 7))
        label = "multivariate (group)" if multivariate else "independent (default)"
        lines.append(f"{label:<24} {statistics.median(times[-20:]) * 1000:8.1f} ms")
    return "\n".join(lines)


# --- training rows (each in its own process) -------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _task(device: str) -> Any:
    from bench.data import DataConfig, load_task
    from bench.engine import resolve_device

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
    from bench.engine import TrainConfig, train

    task = _task(device)
    cfg = TrainConfig(
        scheduler="StepLR", scheduler_args={"step_size": 20, "gamma": 0.5}, epochs=EPOCHS, batch_size=BATCH
    )
    train(task, dataclasses.replace(cfg, seed=99))  # warm-up
    times = [train(task, dataclasses.replace(cfg, seed=seed)).seconds for seed in range(n)]
    return {"seconds_per_trial": statistics.median(times), "peak_mb": _peak_mb(), "trials": n}


def row_population(device: str, k: int) -> dict[str, Any]:
    """K members over every schedule family (mixed per-step and per-epoch), each with its own seed."""
    from bench.engine import TrainConfig, train
    from bench.population import train_population
    from bench.schedules import SCHEDULES

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

    from bench.engine import resolve_device

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


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _study_row(
    out: Path,
    engine: str = "population",
    pruner: str | None = None,
    cache: str | None = None,
    seed: int | None = None,
    tracking_uri: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`lrbench study` on the default study in a fresh process; another engine, pruner or seed (the sampler's
    and the trials' base seed both) via a copy of it; ``cache``: the prepared-split cache folder it gets
    (else the user's, warm after the rows before); ``tracking_uri``: an MLflow tracking server, and
    ``env``: more environment for the study's process."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    study = ROOT / "studies" / "breast_cancer.yaml"
    if engine != "population" or pruner is not None or seed is not None:
        raw = yaml.safe_load(study.read_text())
        raw.setdefault("training", {})["engine"] = engine
        if pruner is not None:
            raw.setdefault("optuna", {})["pruner"] = pruner
        if seed is not None:
            raw["training"]["seed"] = seed
            raw.setdefault("optuna", {})["seed"] = seed
        study = out / f"breast_cancer-{engine}-{pruner}-{seed}.yaml"
        study.write_text(yaml.safe_dump(raw))
    results = out / "results"
    start = time.perf_counter()
    argv = [sys.executable, "-m", "bench", "study", str(study), "--output", str(results)]
    env = dict(os.environ, **(env or {}), **({"LRBENCH_CACHE": cache} if cache else {}))
    proc = subprocess.Popen(
        argv + (["--tracking-uri", tracking_uri] if tracking_uri else []),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"lrbench study ({engine}, pruner {pruner}) exited with status {status}")
    import pandas as pd

    board = pd.read_csv(results / "breast_cancer" / "leaderboard.csv")
    # The same run seen from inside: first trial started to last trial finished, from Optuna's records,
    # that is without process start-up, imports and the final leaderboards.
    trials = optuna.load_study(
        study_name="breast_cancer", storage=open_storage(str(results / "optuna.journal"))
    )
    starts = [t.datetime_start for t in trials.trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials.trials if t.datetime_complete]
    in_loop = (max(ends) - min(starts)).total_seconds()
    done = board[board["state"].isin(["COMPLETE", "PRUNED"])]
    complete = board[board["state"] == "COMPLETE"]
    return {
        "seconds_per_trial": elapsed / len(done),
        "peak_mb": usage.ru_maxrss / 1024,
        "trials": len(done),
        "epochs_run": int(done["epochs_run"].sum()),
        "wall_s": elapsed,
        "in_loop_s": in_loop,
        "best_val_loss": float(complete["value"].min()),
        "best_val_accuracy": float(complete["best_val_accuracy"].max()),
    }


# The seeds benchmark's columns: key, width, decimals.
FIELDS = (("best_val_accuracy", 10, 4), ("best_val_loss", 8, 4), ("wall_s", 6, 1))


def seeds_benchmark(n: int, out_dir: Path) -> str:
    """The default study with each engine on seeds 0..n-1 (each seed the sampler's and the trials' base
    seed): the best validation accuracy and objective each finds, seed by seed, and their medians."""
    rows: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(n):
            got: dict[str, dict[str, Any]] = {}
            for engine in ("population", "reference"):
                print(f"  seed {seed}, {engine} engine ...", file=sys.stderr, flush=True)
                got[engine] = _study_row(Path(tmp) / f"{engine}-{seed}", engine, seed=seed)
            rows.append((seed, got["population"], got["reference"]))

    def line(label: str, pop: dict[str, float], ref: dict[str, float]) -> str:
        acc, loss, wall = (f"{pop[key]:>{w}.{d}f} {ref[key]:>{w}.{d}f}" for key, w, d in FIELDS)
        return f"{label:>4}  {acc}  {loss}  {wall}"

    head = f"{'seed':>4}  {'best val accuracy':>21}  {'best val_loss':>17}  {'wall (s)':>13}"
    trials = rows[0][1]["trials"]
    lines = [f"The default study ({trials} trials), each engine on {n} seeds: population | reference", ""]
    lines += [head, "-" * len(head)] + [line(str(seed), pop, ref) for seed, pop, ref in rows]
    pops, refs = [r[1] for r in rows], [r[2] for r in rows]
    medians = [
        {key: statistics.median(r[key] for r in side) for key, _, _ in FIELDS} for side in (pops, refs)
    ]
    lines.append(line("med", *medians))
    lines += ["", "best values over COMPLETE trials; the objective is the final validation loss"]
    text = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "seeds.txt").write_text(text + "\n")
    return text


def full_benchmark(device: str, ks: list[int], out_dir: Path) -> str:
    rows: list[tuple[str, dict[str, Any]]] = []

    def add(label: str, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        print(f"  running {label} ...", file=sys.stderr, flush=True)
        rows.append((label, _in_child(fn, *args)))

    add("(a) seed-style loop", row_seed_loop, device, 5)
    add("(b) hand-written Optuna + MLflow", row_hand_written_study, device, 5)
    add("(c) reference trainer", row_reference, device, 5)
    for k in ks:
        add(f"(d) population K={k}", row_population, device, k)
    with tempfile.TemporaryDirectory() as tmp:
        # The population study runs three times (the median run is its row): one run of a study is one
        # sample of a noisy machine. The same study without pruning is the like-for-like comparison with (b),
        # whose measured trials all run every epoch. The reference engine's run is there for the best value.
        variants = (
            ("(e) lrbench study, population engine", "population", None, E_REPEATS),
            ("(e) same, pruner none (all 50 epochs)", "population", "none", E_REPEATS),
            ("(e) lrbench study, reference engine", "reference", None, 1),
        )
        for label, engine, pruner, repeats in variants:
            print(f"  running {label} ...", file=sys.stderr, flush=True)
            runs = [_study_row(Path(tmp) / f"{engine}-{pruner}-{i}", engine, pruner) for i in range(repeats)]
            runs.sort(key=lambda r: r["wall_s"])
            median = dict(runs[len(runs) // 2], walls=[r["wall_s"] for r in runs])
            rows.append((label, median))
        # The rows above find the task's split cached (the rows before prepared it), as every run on a
        # machine after its first: this run pays for preparing it, as a machine's first run does.
        print("  running (e) with a cold data cache ...", file=sys.stderr, flush=True)
        cold = _study_row(Path(tmp) / "cold", cache=str(Path(tmp) / "empty-cache"))
    baseline = _in_child(row_baseline, device)["peak_mb"]
    peak = matmul_flops(device)
    flops = task_flops()

    a = rows[0][1]["seconds_per_trial"]
    b = rows[1][1]["seconds_per_trial"]
    header = (
        f"{'row':<40} {'trials/s':>9} {'s/trial':>9} {'x (a)':>7} {'x (b)':>7} {'GFLOP/s':>8} {'peak RSS':>9}"
    )
    lines = [header, "-" * len(header)]
    for label, r in rows:
        s = r["seconds_per_trial"]
        lines.append(
            f"{label:<40} {1 / s:9.2f} {s:9.4f} {a / s:7.1f} {b / s:7.1f} {flops / s / 1e9:8.2f} "
            f"{r['peak_mb']:7.0f} MB"
        )
    best_d = max(
        (r for label, r in rows if label.startswith("(d)")), key=lambda r: 1 / r["seconds_per_trial"]
    )
    pop_e, flat_e, ref_e = rows[-3][1], rows[-2][1], rows[-1][1]
    lines += [
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, device {device}; torch threads "
        f"{__import__('torch').get_num_threads()}",
        f"a process that has only imported torch and loaded the task peaks at {baseline:.0f} MB RSS",
        f"large matmul (2048^2, float32) on this device: {peak / 1e9:.1f} GFLOP/s; "
        f"best population row reaches {flops / best_d['seconds_per_trial'] / peak:.1%} of it",
        f"targets: (d) best / (a) = {a / best_d['seconds_per_trial']:.1f}x (target 30x); "
        f"(e) population / (b) = {b / pop_e['seconds_per_trial']:.1f}x as make study runs it, "
        f"{b / flat_e['seconds_per_trial']:.1f}x with every trial's 50 epochs run like (b)'s (target 50x)",
        f"(e) as make study runs it ran {pop_e['epochs_run']} of {pop_e['trials'] * EPOCHS} trial epochs "
        f"(its median pruner stopped the rest); (b)'s {rows[1][1]['trials']} measured trials ran all theirs",
    ]
    for label, r in (("(e) population", pop_e), ("(e) pruner none", flat_e)):
        lines.append(
            f"{label}, wall of its {len(r['walls'])} runs: "
            + ", ".join(f"{w:.1f} s" for w in r["walls"])
            + f" (the median run is its row: {b / (max(r['walls']) / r['trials']):.1f}x to "
            f"{b / (min(r['walls']) / r['trials']):.1f}x (b) over the runs)"
        )
    lines += [
        f"(e) pruner none from its first trial's start to its last trial's end (no start-up, no final "
        f"report, as (b) is counted): {flat_e['in_loop_s']:.1f} s of {flat_e['wall_s']:.1f} s, "
        f"{b / (flat_e['in_loop_s'] / flat_e['trials']):.1f}x (b)",
        f"(e) population with a cold data cache (its split prepared, as on a machine's first run): "
        f"{cold['wall_s']:.1f} s, {b / cold['seconds_per_trial']:.1f}x (b)",
        f"default study, {pop_e['trials']} trials each: best val_loss {pop_e['best_val_loss']:.4f} "
        f"(population) vs {ref_e['best_val_loss']:.4f} (reference); "
        f"best val accuracy {pop_e['best_val_accuracy']:.4f} vs {ref_e['best_val_accuracy']:.4f}; "
        f"wall {pop_e['wall_s']:.1f} s vs {ref_e['wall_s']:.1f} s",
    ]
    table = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "perf.txt").write_text(table + "\n")
    (out_dir / "perf.json").write_text(json.dumps({label: r for label, r in rows}, indent=2))
    return table


# --- the tracking-server benchmark ----------------------------------------------------------------------


@contextlib.contextmanager
def mlflow_server(
    home: Path, port: int | None = None, stop: int = signal.SIGTERM, settle: float = 0.0
) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (a free port unless given), as MLflow starts it by default (uvicorn, 4
    workers), with a SQLite store in home; yields its URL once it answers and ``settle`` seconds more (its
    background job workers start for some seconds after it answers). Stopped by the signal ``stop`` to its
    whole process group, and killed if it has not stopped in 30 s. The tests use it too."""
    import socket
    import urllib.request

    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"]
    argv += ["--artifacts-destination", str(home / "artifacts")]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not start in 120 s")
        time.sleep(settle)
        yield url
    finally:
        os.killpg(proc.pid, stop)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def server_benchmark(rounds: int, out_dir: Path) -> str:
    """The default study end to end against an `mlflow server` on this machine, the study's writer making
    one request at a time against the default of several at once (LRBENCH_TRACKING_REQUESTS), in
    alternating order, ``rounds`` runs each; and on the embedded SQLite store, once, beside them."""
    from bench.tracking import Tracker

    settings = [1, Tracker.REQUESTS]
    walls: dict[int, list[float]] = {n: [] for n in settings}
    trials = 0
    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp) / "server", settle=15) as url:
        for r in range(rounds):
            for n in settings if r % 2 == 0 else settings[::-1]:
                print(f"  round {r + 1}, {n} request(s) at once ...", file=sys.stderr, flush=True)
                out = Path(tmp) / f"{n}-{r}"
                row = _study_row(out, tracking_uri=url, env={"LRBENCH_TRACKING_REQUESTS": str(n)})
                walls[n].append(row["wall_s"])
                trials = row["trials"]
        print("  the embedded SQLite store ...", file=sys.stderr, flush=True)
        local = _study_row(Path(tmp) / "sqlite")["wall_s"]
    med = {n: statistics.median(w) for n, w in walls.items()}
    lines = [
        f"The default study ({trials} trials) end to end, against `mlflow server` on this machine",
        "(127.0.0.1; MLflow's defaults: uvicorn with 4 workers, a SQLite store) and on the embedded store",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        f"{'tracking':<34} {'runs (s)':>20} {'median (s)':>11} {'trials/s':>9}",
    ]
    for n in settings:
        runs = " ".join(f"{w:.1f}" for w in walls[n])
        label = f"server, {n} request{'s' if n > 1 else ''} at once"
        lines.append(f"{label:<34} {runs:>20} {med[n]:>11.1f} {trials / med[n]:>9.1f}")
    lines.append(f"{'embedded SQLite':<34} {local:>20.1f} {local:>11.1f} {trials / local:>9.1f}")
    lines += ["", f"{settings[1]} at once / 1 at once: {med[1] / med[settings[1]]:.2f}x the trials a second"]
    text = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "server.txt").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("all", "storage", "seeds", "server"), default="all")
    parser.add_argument("--rounds", type=int, default=3, help="server benchmark: runs per setting")
    parser.add_argument("--trials", type=int, default=60, help="storage benchmark: trials per storage")
    parser.add_argument("--seeds", type=int, default=6, help="seeds benchmark: study seeds per engine")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--k", type=int, nargs="+", help="population sizes (default 1 16 64 128 256; to 4096 on CUDA)"
    )
    parser.add_argument("--output", default=str(ROOT / "results" / "perf"))
    args = parser.parse_args(argv)
    if args.what == "storage":
        print(storage_benchmark(args.trials))
        print()
        print(sampler_benchmark())
        return 0
    if args.what == "server":
        print(server_benchmark(args.rounds, Path(args.output)))
        print(f"\nwrote {args.output}/server.txt", file=sys.stderr)
        return 0
    if args.what == "seeds":
        print(seeds_benchmark(args.seeds, Path(args.output)))
        print(f"\nwrote {args.output}/seeds.txt", file=sys.stderr)
        return 0
    import torch

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    ks = args.k or ([1, 16, 64, 256, 1024, 4096] if cuda else [1, 16, 64, 128, 256])
    print(full_benchmark(args.device, ks, Path(args.output)))
    print(f"\nwrote {args.output}/perf.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
