"""The ranking with its uncertainty, from the confirmation runs (see bench.search.confirm) and the search's
trials: ``confirm.csv`` (every run), ``families.csv`` (one row per family), ``pairwise.csv`` (every pair
of ranked families), ``budget.csv`` (expected best validation score after n trials), and the terminal's
answer. The statistics are bench.analysis's; docs/statistics.md says what each column means.

Nothing here depends on timing or run ids, so the same study with the same seeds gives the same files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.analysis import budget
from bench.analysis import stats as st
from bench.data import SCORES, better
from bench.schedules import BASELINE
from bench.stored import StoredTrial
from bench.tracking.names import test_metric

if TYPE_CHECKING:
    from bench.config import StudyConfig


@dataclass(frozen=True)
class Metric:
    """The objective (on validation) and the test metric that ranks the confirmed families, and the name of
    the task's score (``accuracy``, ``rmse``: the columns it names)."""

    objective: str  # val_loss, val_accuracy or val_rmse
    direction: str  # of the objective: minimize or maximize
    score: str = "accuracy"

    @classmethod
    def of(cls, cfg: StudyConfig, direction: str) -> Metric:
        """A study's, with the direction its storage holds."""
        return cls(cfg.objective.metric, direction, cfg.kind.score)

    @property
    def test(self) -> str:
        return test_metric(self.objective)

    @property
    def label(self) -> str:
        """The test metric for people: ``test loss``, ``test accuracy``, ``test RMSE``."""
        score = SCORES.get(self.test.removeprefix("test_"))
        return f"test {score.label if score else self.test.removeprefix('test_')}"

    @property
    def better(self) -> str:
        return better(self.direction)

    @property
    def sign(self) -> float:
        """Multiplies a value into a score where higher is better."""
        return 1.0 if self.direction == "maximize" else -1.0


@dataclass(frozen=True)
class Ranking:
    families: pd.DataFrame
    confirm: pd.DataFrame
    pairwise: pd.DataFrame
    budget: pd.DataFrame


FAMILY_COLUMNS = [
    "rank",
    "tied_for_best",
    "family",
    "status",
    "config",
    "optimizer",
    "base_lr",
    "scheduler_args",
    "seeds",
    "mean",
    "ci_low",
    "ci_high",
    "std",
    "median",
    "iqm",
    "diff_vs_best",
    "diff_ci_low",
    "diff_ci_high",
    "p_vs_best",
    "p_vs_constant",
    "p_improvement",
    "epochs_to_target",
    "reached_target",
]


def confirm_result(score: str = "accuracy") -> list[str]:
    """confirm.csv's columns read from a run's stored result."""
    return [
        "test_loss",
        f"test_{score}",
        "final_val_loss",
        "best_val_loss",
        f"final_val_{score}",
        f"best_val_{score}",
        "epochs_run",
    ]


def _curve(t: StoredTrial, sign: float) -> list[float]:
    """The run's validation curve (the objective's metric, by epoch), oriented."""
    stored = (t.user_attrs.get("result") or {}).get("val_curve")
    values = stored if stored is not None else [t.intermediate[e] for e in sorted(t.intermediate)]
    # An epoch without a finite value (a diverged run) keeps its place: epochs count from the first.
    return [sign * v if v is not None and math.isfinite(v) else -math.inf for v in values]


def confirm_table(
    runs: Sequence[StoredTrial], metric: Metric, target: float | None, seeds: int
) -> pd.DataFrame:
    """One row per family x configuration x seed (of the first ``seeds``): the first run that ended for
    each cell."""
    seen: set[tuple[str, int, int]] = set()
    rows = []
    for t in sorted(runs, key=lambda t: t.number):
        cell = t.user_attrs.get("cell")
        if cell is None or t.state not in ("COMPLETE", "PRUNED"):
            continue
        key = (str(cell["family"]), int(cell["config"]), int(cell["seed_index"]))
        if key in seen or key[2] >= seeds:
            continue
        seen.add(key)
        result = t.user_attrs.get("result") or {}
        curve = _curve(t, metric.sign)
        reached = None if target is None else budget.first_epoch_reaching(curve, metric.sign * target)
        row: dict[str, Any] = {
            "family": key[0],
            "config": key[1],
            "seed_index": key[2],
            "seed": result.get("seed"),
            "state": t.state,
            "val": t.value,
            "best_val": metric.sign * max(curve) if curve and max(curve) > -math.inf else None,
            **{k: result.get(k) for k in confirm_result(metric.score)},
            "epoch_to_target": reached,
            "failure": t.user_attrs.get("failure"),
        }
        rows.append(row)
    columns = [
        "family",
        "config",
        "seed_index",
        "seed",
        "state",
        "val",
        "best_val",
        *confirm_result(metric.score),
    ]
    frame = pd.DataFrame(rows, columns=[*columns, "epoch_to_target", "failure"])
    frame["epoch_to_target"] = frame["epoch_to_target"].astype("Int64")
    frame["epochs_run"] = frame["epochs_run"].astype("Int64")
    return frame.sort_values(["family", "config", "seed_index"]).reset_index(drop=True)


def default_target(table: pd.DataFrame, chosen: dict[str, int]) -> float | None:
    """The median best validation score of the baseline's confirmation runs (its chosen configuration's)."""
    if BASELINE not in chosen:
        return None
    mine = table[(table["family"] == BASELINE) & (table["config"] == chosen[BASELINE])]
    base = mine["best_val"].dropna()
    return float(base.median()) if not base.empty else None


def top_configs(search: Sequence[StoredTrial], metric: Metric, top_k: int) -> set[tuple[str, int]]:
    """The search trials the confirmation takes (as bench.search.confirm.choose): each family's ``top_k``
    COMPLETE trials by the objective, ties to the earlier trial."""
    by_family: dict[str, list[StoredTrial]] = {}
    for t in search:
        if t.state == "COMPLETE" and t.value is not None and math.isfinite(t.value):
            by_family.setdefault(str(t.params.get("scheduler")), []).append(t)
    return {
        (family, t.number)
        for family, trials in by_family.items()
        for t in sorted(trials, key=lambda t: (-metric.sign * float(t.value or 0.0), t.number))[:top_k]
    }


def _chosen(table: pd.DataFrame, metric: Metric, seeds: int, allowed: set[tuple[str, int]]) -> dict[str, int]:
    """Each family's configuration: the best mean validation score over seeds, among its ``allowed`` ones
    whose every seed ended with finite scores (ties: the earlier search trial)."""
    out = {}
    for family, group in table.groupby("family", sort=True):
        best: tuple[float, int] | None = None
        for config, runs in group.groupby("config", sort=True):
            if (str(family), int(config)) not in allowed:  # of an earlier choice: the search went on since
                continue
            scores = pd.to_numeric(runs[metric.test], errors="coerce")
            if len(runs) < seeds or not np.isfinite(scores).all() or runs["val"].isna().any():
                continue
            key = (-metric.sign * float(runs["val"].mean()), int(config))
            if best is None or key < best:
                best = key
        if best is not None:
            out[str(family)] = best[1]
    return out


def rank(
    search: Sequence[StoredTrial],
    runs: Sequence[StoredTrial],
    metric: Metric,
    seeds: int,
    top_k: int,
    target: float | None,
) -> Ranking:
    """Everything the ranking files hold. ``target``: the validation score for time to target (None: the
    baseline's default)."""
    table = confirm_table(runs, metric, None, seeds)
    chosen = _chosen(table, metric, seeds, top_configs(search, metric, top_k))
    target = default_target(table, chosen) if target is None else target
    if target is not None:
        table = confirm_table(runs, metric, target, seeds)
    table["chosen"] = [chosen.get(f) == c for f, c in zip(table["family"], table["config"], strict=True)]
    names = sorted(chosen)
    cols = {f: table[(table["family"] == f) & table["chosen"]].sort_values("seed_index") for f in names}
    scores = np.array([metric.sign * cols[f][metric.test].to_numpy(dtype=float) for f in names])
    families = _family_rows(search, metric, names, scores, cols, chosen, table)
    pairwise = _pairwise(names, scores, metric)
    return Ranking(families, table, pairwise, budget_table(search, metric))


def _family_rows(
    search: Sequence[StoredTrial],
    metric: Metric,
    names: list[str],
    scores: np.ndarray,
    cols: dict[str, pd.DataFrame],
    chosen: dict[str, int],
    table: pd.DataFrame,
) -> pd.DataFrame:
    ranks, tied = st.ranks(scores) if names else (np.array([]), np.array([]))
    best = int(np.argmax(scores.mean(axis=1))) if names else -1
    base = names.index(BASELINE) if BASELINE in names else None
    by_number = {(str(t.params.get("scheduler")), t.number): t for t in search}
    rows = []
    for j, family in enumerate(names):
        s = st.summarize(metric.sign * scores[j])  # in the metric's own units
        vs_best = st.paired(scores[j], scores[best])
        config = by_number[family, chosen[family]]
        result = config.user_attrs.get("result") or {}
        reached = cols[family]["epoch_to_target"].astype("float64")
        n_reached = int(reached.notna().sum())
        rows.append(
            {
                "rank": int(ranks[j]),
                "tied_for_best": bool(tied[j]),
                "family": family,
                "status": "confirmed",
                "config": chosen[family],
                "optimizer": result.get("optimizer"),
                "base_lr": result.get("lr"),
                "scheduler_args": result.get("scheduler_args"),
                "seeds": s.n,
                "mean": s.mean,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "std": s.std,
                "median": s.median,
                "iqm": s.iqm,
                "diff_vs_best": metric.sign * vs_best.diff + 0.0,  # no -0.0
                "diff_ci_low": min(metric.sign * vs_best.ci_low, metric.sign * vs_best.ci_high),
                "diff_ci_high": max(metric.sign * vs_best.ci_low, metric.sign * vs_best.ci_high),
                "p_vs_best": vs_best.p_value if j != best else None,
                "p_vs_constant": (
                    st.paired(scores[j], scores[base]).p_value if base is not None and j != base else None
                ),
                "p_improvement": vs_best.p_improvement,  # P(this family beats the best)
                "epochs_to_target": float(np.median(reached.fillna(math.inf))) if n_reached else None,
                "reached_target": n_reached / len(reached) if len(reached) else None,
            }
        )
    frame = pd.DataFrame(rows, columns=FAMILY_COLUMNS)
    unranked = _unconfirmed(search, metric, set(names), table)
    frame = unranked if frame.empty else pd.concat([frame, unranked], ignore_index=True)
    frame = frame.reindex(columns=[*FAMILY_COLUMNS, "best_search_value"])
    if frame.empty:
        return frame
    frame["epochs_to_target"] = frame["epochs_to_target"].replace(math.inf, np.nan)
    for col in ("rank", "config", "seeds"):
        frame[col] = frame[col].astype("Int64")
    frame["tied_for_best"] = frame["tied_for_best"].astype("boolean")  # blank for an unranked family
    trials = _search_counts(search)
    frame.insert(4, "trials", [trials.get(f, 0) for f in frame["family"]])
    return frame.sort_values(
        ["rank", "mean", "family"], ascending=[True, metric.sign < 0, True], na_position="last"
    ).reset_index(drop=True)


def _search_counts(search: Sequence[StoredTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in search:
        if t.state in ("COMPLETE", "PRUNED"):
            family = str(t.params.get("scheduler"))
            counts[family] = counts.get(family, 0) + 1
    return counts


def _unconfirmed(
    search: Sequence[StoredTrial], metric: Metric, confirmed: set[str], table: pd.DataFrame
) -> pd.DataFrame:
    """Families in the search without a confirmed configuration: why, and the best value they showed
    (a pruned trial's best intermediate value where none completed)."""
    rows = []
    for family in sorted({str(t.params.get("scheduler")) for t in search} - confirmed):
        mine = [t for t in search if t.params.get("scheduler") == family]
        complete = [t.value for t in mine if t.state == "COMPLETE" and t.value is not None]
        seen = [v for t in mine if t.state == "PRUNED" for v in t.intermediate.values() if math.isfinite(v)]
        runs = table[table["family"] == family]
        scores = pd.to_numeric(runs[metric.test], errors="coerce")
        best = metric.sign * max(metric.sign * v for v in complete) if complete else None
        if complete and len(runs) and not np.isfinite(scores).all():
            # A configuration whose run diverged on a seed has no test score there: none could be ranked.
            status, shown = "diverged in confirmation", best
        elif complete:
            status, shown = "confirmation incomplete", best
        elif seen:
            status, shown = "all pruned", metric.sign * max(metric.sign * v for v in seen)
        else:
            status, shown = "no result", None
        rows.append({"family": family, "status": status, "best_search_value": shown})
    return pd.DataFrame(rows, columns=["family", "status", "best_search_value"])


def _pairwise(names: list[str], scores: np.ndarray, metric: Metric) -> pd.DataFrame:
    rows = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            p = st.paired(scores[a], scores[b])
            rows.append(
                {
                    "family_a": names[a],
                    "family_b": names[b],
                    "diff": metric.sign * p.diff,  # a - b in the test metric's units
                    "ci_low": min(metric.sign * p.ci_low, metric.sign * p.ci_high),
                    "ci_high": max(metric.sign * p.ci_low, metric.sign * p.ci_high),
                    "p_value": p.p_value,
                    "p_improvement": p.p_improvement,  # P(a beats b)
                }
            )
    columns = ["family_a", "family_b", "diff", "ci_low", "ci_high", "p_value", "p_improvement"]
    return pd.DataFrame(rows, columns=columns)


def budget_table(search: Sequence[StoredTrial], metric: Metric) -> pd.DataFrame:
    """Per family, the expected best validation objective after n = 1..N of its N trials: COMPLETE ones
    with their value, PRUNED ones with the last value they reported (what the tuning got from them; left
    out, the survivors of the pruner alone would make the curve look better than tuning is)."""
    rows = []
    by_family: dict[str, list[float]] = {}
    for t in sorted(search, key=lambda t: t.number):
        value = t.value
        if t.state == "PRUNED" and t.intermediate:
            value = t.intermediate[max(t.intermediate)]
        if t.state in ("COMPLETE", "PRUNED") and value is not None and math.isfinite(value):
            by_family.setdefault(str(t.params.get("scheduler")), []).append(metric.sign * value)
    for family in sorted(by_family):
        curve = budget.budget_curve(by_family[family], len(by_family[family]))
        rows += [{"family": family, "n": n, "expected_best": metric.sign * v} for n, v in enumerate(curve, 1)]
    return pd.DataFrame(rows, columns=["family", "n", "expected_best"])
