"""Optuna's bookkeeping per trial on each storage, and the cost of an ask of TPE on the default space."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import optuna

from bench.schedules import SCHEDULES
from bench.search.space import suggest
from bench.search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
