"""A suite's own files, from what its tasks wrote: suite.csv (one row per family: aggregate IQM, mean rank,
probability of improvement over constant, the areas of its performance profiles), profiles.csv (the
curves), ranks.csv (task x family), suite.html, and the terminal's answer.

Each task's confirm.csv and families.csv are its study's published results (bench.cli.study.publish): the
suite reads them rather than the stores, so that it needs no MLflow and no Optuna, and sees exactly what
each task's own report shows. A task that has no confirmed ranking yet is left out, and said to be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.analysis.suite import METRICS, SuiteTables, TaskScores, suite_tables
from bench.config import Locations
from bench.config.suite import SuiteConfig, SuiteTask
from bench.report.leaderboard import write_csv
from bench.report.ranking import BASELINE
from bench.tracking.names import test_metric

NOT_YET = "no confirmed ranking yet"


@dataclass(frozen=True)
class TaskResult:
    task: SuiteTask
    folder: Path
    scores: TaskScores | None  # None: not in the aggregates (``why``)
    families: pd.DataFrame | None  # the task's families.csv
    why: str = NOT_YET

    @property
    def pending(self) -> bool:
        """Not in the aggregates only until the task ends: running the suite again can change it."""
        return self.scores is None and self.why == NOT_YET


@dataclass(frozen=True)
class SuiteOutput:
    files: list[Path]  # suite.html last
    text: str  # the terminal's table and answer

    @property
    def report(self) -> Path:
        return self.files[-1]


def read_task(task: SuiteTask, loc: Locations) -> TaskResult:
    """A task's confirmed test scores (the chosen configuration of each family, on the paired seeds) and
    each family's time to target, from its published files."""
    folder = loc.results_dir(task.study)
    metric = test_metric(task.study.objective.metric)
    try:
        confirm = pd.read_csv(folder / "confirm.csv")
        families = pd.read_csv(folder / "families.csv")
    except (OSError, pd.errors.EmptyDataError):
        return TaskResult(task, folder, None, None)
    chosen = confirm[confirm["chosen"].astype(bool) & (confirm["state"] == "COMPLETE")]
    confirmed = families[families["status"] == "confirmed"]
    if chosen.empty or confirmed.empty or metric not in chosen.columns:
        return TaskResult(task, folder, None, families)
    scores = chosen.pivot_table(index="seed_index", columns="family", values=metric, aggfunc="first")
    scores = scores[[f for f in confirmed["family"] if f in scores.columns]]
    if BASELINE not in scores.columns:  # the scores are normalised to it
        return TaskResult(task, folder, None, families, f"{BASELINE} has no confirmed runs")
    ttt = confirmed.set_index("family")["epochs_to_target"].astype("float64")
    return TaskResult(task, folder, TaskScores(task.name, metric, METRICS[metric], scores, ttt), families)


def write_suite(suite: SuiteConfig, root: Path, locs: Sequence[Locations]) -> SuiteOutput:
    from bench.report.suite_page import write_page

    results = [read_task(t, loc) for t, loc in zip(suite.tasks, locs, strict=True)]
    ready = [r.scores for r in results if r.scores is not None]
    files: list[Path] = []
    tables: SuiteTables | None = None
    if ready:
        tables = suite_tables(ready, baseline=BASELINE)
        for name, frame in (
            ("suite", tables.families),
            ("profiles", tables.profiles),
            ("ranks", tables.ranks.reset_index()),
        ):
            write_csv(frame, root / f"{name}.csv")
            files.append(root / f"{name}.csv")
    said = answer(suite, results, tables)
    page = root / "suite.html"
    write_page(suite, root, results, tables, said, page)
    files.append(page)
    return SuiteOutput(files, terminal(tables, said))


def answer(suite: SuiteConfig, results: Sequence[TaskResult], tables: SuiteTables | None) -> str:
    """The suite's answer in a sentence or two, and which tasks it leaves out."""
    missing = [r.task.name for r in results if r.scores is None]
    left_out = f" Not in it: {left_out_text(results)}." if missing else ""
    if tables is None:
        return f"No answer yet: no task of suite {suite.name} is ready.{left_out}"
    f = tables.families
    best = f.iloc[0]
    near = [str(r.family) for r in f.iloc[1:].itertuples() if r.iqm_ci_high >= best["iqm_ci_low"]]
    said = (
        f"Across {len(results) - len(missing)} task(s), {best['family']} has the highest IQM of normalised "
        f"test scores (on each task {BASELINE}'s mean = 0, the best family's = 1; the worst's = −1 where "
        f"{BASELINE} is best): "
        f"{_ci(best['iqm'], best['iqm_ci_low'], best['iqm_ci_high'])}"
    )
    said += (
        f"; its 95 % CI overlaps those of {', '.join(near)}."
        if near
        else "; no other family's CI reaches it."
    )
    return said + left_out


def left_out_text(results: Sequence[TaskResult]) -> str:
    """The tasks not in the aggregates, each with why: ``wine (no confirmed ranking yet), ...``."""
    return ", ".join(f"{r.task.name} ({r.why})" for r in results if r.scores is None)


def terminal(tables: SuiteTables | None, said: str) -> str:
    if tables is None:
        return said
    f = tables.families
    shown = pd.DataFrame(
        {
            "family": f["family"],
            "IQM": [_ci(r.iqm, r.iqm_ci_low, r.iqm_ci_high) for r in f.itertuples()],
            "mean rank": [_ci(r.mean_rank, r.rank_ci_low, r.rank_ci_high, ".2f") for r in f.itertuples()],
            f"P(> {BASELINE})": [_ci(r.p_improvement, r.p_ci_low, r.p_ci_high) for r in f.itertuples()],
            "profile area": f["profile_area_score"].map(lambda v: f"{v:.2f}"),
            "time area": f["profile_area_time"].map(lambda v: f"{v:.2f}"),
        }
    )
    return f"{shown.to_string(index=False)}\n\n{said}"


def _ci(v: float, lo: float, hi: float, fmt: str = ".3f") -> str:
    if pd.isna(v):
        return "–"
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"
