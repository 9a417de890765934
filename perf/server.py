"""The default study against an ``mlflow server`` on this machine: one request at a time against several."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from bench.tracking.inflight import REQUESTS
from bench.tracking.local_server import running
from perf.study import study_row


def server_benchmark(rounds: int, out_dir: Path) -> str:
    """The default study end to end against an `mlflow server` on this machine, the study's writer making
    one request at a time against the default of several at once (LRBENCH_TRACKING_REQUESTS), in
    alternating order, ``rounds`` runs each; and on the embedded SQLite store, once, beside them."""
    settings = [1, REQUESTS]
    walls: dict[int, list[float]] = {n: [] for n in settings}
    trials = 0
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp) / "server", settle=15) as url:
        for r in range(rounds):
            for n in settings if r % 2 == 0 else settings[::-1]:
                print(f"  round {r + 1}, {n} request(s) at once ...", file=sys.stderr, flush=True)
                out = Path(tmp) / f"{n}-{r}"
                row = study_row(out, tracking_uri=url, env={"LRBENCH_TRACKING_REQUESTS": str(n)})
                walls[n].append(row["wall_s"])
                trials = row["trials"]
        print("  the embedded SQLite store ...", file=sys.stderr, flush=True)
        local = study_row(Path(tmp) / "sqlite")["wall_s"]
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
