"""``python -m perf replay``: how many of a study's finished runs ``lrbench replay`` reproduces exactly.

Runs the study into a temporary folder (the default study unless another is given), then replays every
finished search and confirmation run in this process (``lrbench replay RUN_ID``: exit 0 when its
``val/loss`` curve is identical) and counts, by engine and stage, with the largest difference of the rest.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from perf.training import ROOT_DIR

DEFAULT = ROOT_DIR / "studies" / "breast_cancer.yaml"


def replay_table(study: Path = DEFAULT, limit: int = 0) -> str:
    from mlflow import MlflowClient

    from bench import config
    from bench.cli.parser import run

    cfg = config.load(study)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print(f"  running lrbench study {study} ...", file=sys.stderr, flush=True)
        argv = [sys.executable, "-m", "bench", "study", str(study), "--output", str(out)]
        subprocess.run(argv, check=True, capture_output=True)
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        experiment = client.get_experiment_by_name(cfg.name)
        assert experiment is not None
        runs = [
            r
            for r in client.search_runs([experiment.experiment_id], max_results=50000)
            if r.data.tags.get("lrbench.stage") and r.info.status == "FINISHED"
        ]
        runs = runs[:limit] if limit else runs
        print(f"  replaying {len(runs)} runs ...", file=sys.stderr, flush=True)
        counts: Counter[tuple[str, str, bool]] = Counter()
        worst = 0.0
        for r in runs:
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = run(["replay", r.info.run_id, "--study", str(study), "--output", str(out)])
            key = (r.data.params.get("engine", "?"), r.data.tags["lrbench.stage"], code == 0)
            counts[key] += 1
            found = re.search(r"relative ([0-9.e+-]+)\)", err.getvalue())
            if code != 0 and found:
                worst = max(worst, float(found.group(1)))
    lines = [f"{'engine':<12} {'stage':<8} {'identical':>10} {'differ':>7}"]
    for engine, stage in sorted({(e, s) for e, s, _ in counts}):
        lines.append(
            f"{engine:<12} {stage:<8} {counts[engine, stage, True]:>10} {counts[engine, stage, False]:>7}"
        )
    lines.append(f"the runs that differ: val/loss at most {worst:.2g} apart (relative)")
    return "\n".join(lines)
