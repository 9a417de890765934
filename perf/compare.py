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


def _one(tree: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench", "study", STUDY, "--output", str(out)],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(tree)),
    )
    return time.perf_counter() - start


def compare(a: Path, b: Path, runs: int) -> str:
    walls: dict[str, list[float]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        _one(a, Path(tmp) / "warm-a")  # a first run of each, not counted: caches, the template store
        _one(b, Path(tmp) / "warm-b")
        for i in range(runs):
            for label, tree in (("A", a), ("B", b)):
                print(f"  run {i + 1} of {runs}, {label} ...", file=sys.stderr, flush=True)
                walls[label].append(_one(tree, Path(tmp) / f"{label}-{i}"))
    ratios = [x / y for x, y in zip(walls["A"], walls["B"], strict=True)]
    lines = [
        f"The default study end to end ({STUDY}, a fresh output folder a run), {runs} runs each, A B A B",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"A = {a}",
        f"B = {b}",
        "",
        f"{'':>4} {'runs (s)':>48} {'median':>8}",
    ]
    for label in ("A", "B"):
        runs_text = " ".join(f"{w:.2f}" for w in walls[label])
        lines.append(f"{label:>4} {runs_text:>48} {statistics.median(walls[label]):>8.2f}")
    lines.append(
        f"A/B per pair: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
    )
    return "\n".join(lines)
