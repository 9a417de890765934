"""How stable the report's per-family importance is: fANOVA with 16 trees (lrbench's) against Optuna's
default 64, and 64 trees under another forest seed, on the default study's stored trials (run `make study`
first).

    python -m perf importance
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from bench.search import importance
from bench.search.storage import open_storage

Importances = dict[str, dict[str, float]]


def _run(trials: list[optuna.trial.FrozenTrial], trees: int, seed: int) -> tuple[Importances, float]:
    start = time.perf_counter()
    found = importance.by_family(trials, optuna.study.StudyDirection.MINIMIZE, n_trees=trees, seed=seed)
    return found, time.perf_counter() - start


def importance_table(journal: Path) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(str(journal))
    trials = [
        t
        for s in optuna.get_all_study_summaries(storage)
        if "/" in s.study_name
        for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
    ]
    _run(trials, 16, 0)  # imports scikit-learn: not any row's time
    base, base_s = _run(trials, 64, 0)
    rows = [f"{'forest':<26} {'s':>6} {'same order as 64/seed 0':>24} {'same top argument':>18}"]
    for label, trees, seed in (
        ("64 trees, seed 0", 64, 0),
        ("64 trees, seed 1", 64, 1),
        ("64 trees, seed 2", 64, 2),
        ("16 trees, seed 0 (lrbench)", 16, 0),
    ):
        got, seconds = (base, base_s) if (trees, seed) == (64, 0) else _run(trials, trees, seed)
        order = sum(list(got[f]) == list(base[f]) for f in base)
        top = sum(next(iter(got[f])) == next(iter(base[f])) for f in base)
        rows.append(f"{label:<26} {seconds:>6.2f} {order:>20} of {len(base)} {top:>14} of {len(base)}")
    return "\n".join(rows)
