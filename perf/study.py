"""``lrbench study`` end to end in a fresh process, as ``make study`` runs it: the (e) rows of ``make perf``,
and the seeds benchmark."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from bench import config
from bench.search.opening import study_names
from bench.search.storage import open_storage

ROOT = Path(__file__).resolve().parent.parent


def study_row(
    out: Path,
    engine: str = "population",
    pruner: str | None = None,
    cache: str | None = None,
    seed: int | None = None,
    tracking_uri: str | None = None,
    env: dict[str, str] | None = None,
    confirm: bool = True,
) -> dict[str, Any]:
    """`lrbench study` on the default study in a fresh process; another engine, pruner or seed (the sampler's
    and the trials' base seed both) via a copy of it; ``cache``: the prepared-split cache folder it gets
    (else the user's, warm after the rows before); ``tracking_uri``: an MLflow tracking server, and
    ``env``: more environment for the study's process; ``confirm``: False, the search alone."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    study = ROOT / "studies" / "breast_cancer.yaml"
    if engine != "population" or pruner is not None or seed is not None or not confirm:
        raw = yaml.safe_load(study.read_text())
        if not confirm:
            raw.setdefault("confirm", {})["seeds"] = 0
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
    confirmed = results / "breast_cancer" / "confirm.csv"
    runs = pd.read_csv(confirmed) if confirm and confirmed.exists() else pd.DataFrame({"epochs_run": []})
    # The same run seen from inside, stage by stage: first trial started to last trial finished, from
    # Optuna's records, that is without process start-up, imports and the final leaderboards.
    cfg = config.load(study)
    storage = open_storage(str(results / "optuna.journal"))
    search = [
        t for name in study_names(cfg) for t in optuna.load_study(study_name=name, storage=storage).trials
    ]
    confirmation = (
        optuna.load_study(study_name="breast_cancer.confirm", storage=storage).trials if len(runs) else []
    )
    done = board[board["state"].isin(["COMPLETE", "PRUNED"])]
    complete = board[board["state"] == "COMPLETE"]
    return {
        # Every run trained: the search's trials and the confirmation's runs.
        "seconds_per_trial": elapsed / (len(done) + len(runs)),
        "peak_mb": usage.ru_maxrss / 1024,
        "trials": len(done),
        "confirm_runs": len(runs),
        "epochs_run": int(done["epochs_run"].sum() + runs["epochs_run"].sum()),
        "wall_s": elapsed,
        "in_loop_s": _span(search),
        "confirm_s": _span(confirmation),
        "best_val_loss": float(complete["value"].min()),
        "best_val_accuracy": float(complete["best_val_accuracy"].max()),
    }


def _span(trials: list[optuna.trial.FrozenTrial]) -> float:
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


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
                got[engine] = study_row(Path(tmp) / f"{engine}-{seed}", engine, seed=seed, confirm=False)
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
