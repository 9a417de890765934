"""Benchmarks, printed as tables of medians measured side by side in one run.

    python -m bench.perf storage     # Optuna bookkeeping per trial: journal file vs SQLite vs in memory

The storage benchmark drives each storage the way a study does (ask, the family and its arguments,
50 per-epoch reports with a pruning check, the result attributes, tell), without training, so the
numbers are the bookkeeping alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from bench.study import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trial_bookkeeping(storage: optuna.storages.BaseStorage | str, n: int, epochs: int) -> list[float]:
    study = optuna.create_study(
        storage=storage,
        study_name="perf",
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, constant_liar=True),
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
        for key in ("test_accuracy", "test_loss", "epochs_run", "seconds", "best_val_loss", "final_val_loss"):
            trial.set_user_attr(key, 0.5)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("storage",))
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args(argv)
    print(storage_benchmark(args.trials))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
