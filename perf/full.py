"""``make perf``: every row side by side in one run, as one table of medians and ratios."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perf.func import func_benchmark
from perf.study import study_row
from perf.training import (
    EPOCHS,
    in_child,
    matmul_flops,
    row_baseline,
    row_hand_written_study,
    row_population,
    row_reference,
    row_seed_loop,
    task_flops,
)

E_REPEATS = 3


def full_benchmark(device: str, ks: list[int], out_dir: Path, func_ks: list[int], cnn_ks: list[int]) -> str:
    rows: list[tuple[str, dict[str, Any]]] = []

    def add(label: str, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        print(f"  running {label} ...", file=sys.stderr, flush=True)
        rows.append((label, in_child(fn, *args)))

    add("(a) seed-style loop", row_seed_loop, device, 5)
    add("(b) hand-written Optuna + MLflow", row_hand_written_study, device, 5)
    add("(c) reference trainer", row_reference, device, 5)
    for k in ks:
        add(f"(d) population K={k}", row_population, device, k)
    with tempfile.TemporaryDirectory() as tmp:
        # The population study runs three times (the median run is its row): one run of a study is one
        # sample of a noisy machine. The same study without pruning is the like-for-like comparison with (b),
        # whose measured trials all run every epoch. The reference engine's run is there for the best value.
        # The reference engine's run is the search alone: it trains one run at a time, and the confirmation's
        # 510 runs would take it many minutes.
        variants = (
            ("(e) lrbench study, population engine", "population", None, E_REPEATS, True),
            ("(e) same, pruner none (all 50 epochs)", "population", "none", E_REPEATS, True),
            ("(e) search alone, reference engine", "reference", None, 1, False),
        )
        for label, engine, pruner, repeats, confirm in variants:
            print(f"  running {label} ...", file=sys.stderr, flush=True)
            runs = [
                study_row(Path(tmp) / f"{engine}-{pruner}-{i}", engine, pruner, confirm=confirm)
                for i in range(repeats)
            ]
            runs.sort(key=lambda r: r["wall_s"])
            median = dict(runs[len(runs) // 2], walls=[r["wall_s"] for r in runs])
            rows.append((label, median))
        # The rows above find the task's split cached (the rows before prepared it), as every run on a
        # machine after its first: this run pays for preparing it, as a machine's first run does.
        print("  running (e) with a cold data cache ...", file=sys.stderr, flush=True)
        cold = study_row(Path(tmp) / "cold", cache=str(Path(tmp) / "empty-cache"))
    baseline = in_child(row_baseline, device)["peak_mb"]
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
        f"(e) as make study runs it ran {pop_e['epochs_run']} of {_runs(pop_e) * EPOCHS} epochs of its "
        f"{_runs(pop_e)} runs (its median pruner stopped the rest); (b)'s {rows[1][1]['trials']} measured "
        "trials ran all theirs",
    ]
    for label, r in (("(e) population", pop_e), ("(e) pruner none", flat_e)):
        lines.append(
            f"{label}, wall of its {len(r['walls'])} runs: "
            + ", ".join(f"{w:.1f} s" for w in r["walls"])
            + f" (the median run is its row: {b / (max(r['walls']) / _runs(r)):.1f}x to "
            f"{b / (min(r['walls']) / _runs(r)):.1f}x (b) over the runs)"
        )
    lines.append(
        f"(e) population, its median run stage by stage (first run started to last ended, from Optuna's "
        f"records): search {pop_e['in_loop_s']:.1f} s for {pop_e['trials']} trials, confirmation "
        f"{pop_e['confirm_s']:.1f} s for {pop_e['confirm_runs']} runs, of {pop_e['wall_s']:.1f} s in all "
        "(s/trial counts every run trained, the search's and the confirmation's)"
    )
    lines += [
        f"(e) pruner none, its search from its first trial's start to its last trial's end (no start-up, "
        f"no confirmation, no final report, as (b) is counted): {flat_e['in_loop_s']:.1f} s for "
        f"{flat_e['trials']} trials, {b / (flat_e['in_loop_s'] / flat_e['trials']):.1f}x (b)",
        f"(e) population with a cold data cache (its split prepared, as on a machine's first run): "
        f"{cold['wall_s']:.1f} s, {b / cold['seconds_per_trial']:.1f}x (b)",
        f"default study's search, {pop_e['trials']} trials each: best val_loss {pop_e['best_val_loss']:.4f} "
        f"(population) vs {ref_e['best_val_loss']:.4f} (reference); "
        f"best val accuracy {pop_e['best_val_accuracy']:.4f} vs {ref_e['best_val_accuracy']:.4f}; "
        f"search {pop_e['in_loop_s']:.1f} s vs {ref_e['in_loop_s']:.1f} s",
    ]
    lines += ["", func_benchmark(device, func_ks, cnn_ks)]
    table = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "perf.txt").write_text(table + "\n")
    (out_dir / "perf.json").write_text(json.dumps({label: r for label, r in rows}, indent=2))
    return table


def _runs(row: dict[str, Any]) -> int:
    """The runs an (e) row trained: its search's trials and its confirmation's runs."""
    return int(row["trials"]) + int(row.get("confirm_runs", 0))
