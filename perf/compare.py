"""Two source trees side by side: the default study end to end, from each tree in turn (A B A B ...), on a
fresh output folder each run, as ``make study`` runs it; medians and the per-pair ratio A/B.

    python -m perf compare OLD_TREE NEW_TREE [--runs 6]

A tree is a checkout of lrbench (``git worktree add /tmp/old COMMIT``); each runs with this environment's
Python and packages. A change's cost or gain is measured this way: the tree with it against the tree
without, in one run, on one machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = "studies/breast_cancer.yaml"


def _one(tree: Path, out: Path) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system, the study's process and the writer it reaped)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "study", STUDY, "--output", str(out)],
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(tree)),
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"lrbench study in {tree} exited with status {status}")
    return wall, usage.ru_utime + usage.ru_stime


def compare(a: Path, b: Path, runs: int) -> str:
    walls: dict[str, list[float]] = {"A": [], "B": []}
    cpus: dict[str, list[float]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        _one(a, Path(tmp) / "warm-a")  # a first run of each, not counted: caches, the template store
        _one(b, Path(tmp) / "warm-b")
        for i in range(runs):
            for label, tree in (("A", a), ("B", b)):
                print(f"  run {i + 1} of {runs}, {label} ...", file=sys.stderr, flush=True)
                wall, cpu = _one(tree, Path(tmp) / f"{label}-{i}")
                walls[label].append(wall)
                cpus[label].append(cpu)
    ratios = [x / y for x, y in zip(walls["A"], walls["B"], strict=True)]
    cpu_ratios = [x / y for x, y in zip(cpus["A"], cpus["B"], strict=True)]
    lines = [
        f"The default study end to end ({STUDY}, a fresh output folder a run), {runs} runs each, A B A B",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"A = {a}",
        f"B = {b}",
        "",
        f"{'':>4} {'wall, each run (s)':>64} {'median':>7} {'CPU median':>11}",
    ]
    for label in ("A", "B"):
        runs_text = " ".join(f"{w:.2f}" for w in walls[label])
        lines.append(
            f"{label:>4} {runs_text:>64} {statistics.median(walls[label]):>7.2f} "
            f"{statistics.median(cpus[label]):>11.2f}"
        )
    for what, r in (("wall", ratios), ("CPU", cpu_ratios)):
        lines.append(
            f"A/B per pair, {what}: median {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})"
        )
    return "\n".join(lines)
