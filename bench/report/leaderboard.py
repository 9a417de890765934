"""Leaderboards: ``leaderboard.csv`` (one row per trial) and ``schedulers.csv`` (one row per schedule
family, ranked by its best trial), from a stored study's records alone, and the terminal's table.

The task's score names its columns: ``test_accuracy``, ``best_val_accuracy``, ... for classification,
``test_rmse``, ``best_val_rmse``, ... for regression (``score``, as the trial stored them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cache import write_whole
from bench.stored import StoredTrial

LEADERBOARD_FIRST = ["number", "state", "scheduler", "optimizer", "base_lr", "seed", "value"]


def result_columns(score: str = "accuracy") -> list[str]:
    """Read from the trial's "result" attribute (see bench.search.telling), then its run id and failure."""
    return [
        f"best_val_{score}",
        f"final_val_{score}",
        "best_val_loss",
        "final_val_loss",
        f"test_{score}",
        "test_loss",
        "epochs_run",
        "seconds",
    ]


def leaderboard_last(score: str = "accuracy") -> list[str]:
    """The columns after the sampled arguments. best_reported: the best value a trial reported to the
    pruner (what a pruned trial showed before it stopped)."""
    return [*result_columns(score), "best_reported", "mlflow_run_id", "failure", "scheduler_args"]


def leaderboard(
    records: Sequence[StoredTrial], direction: str, seed_base: int = 0, score: str = "accuracy"
) -> pd.DataFrame:
    """One row per trial, best first (finished trials before pruned and failed ones)."""
    last = leaderboard_last(score)
    rows = []
    for r in records:
        attrs, params = r.user_attrs, r.params
        result = attrs.get("result") or {}
        row: dict[str, Any] = {
            "number": r.number,
            "state": r.state,
            "scheduler": params.get("scheduler"),
            "optimizer": result.get("optimizer", params.get("optimizer")),
            "base_lr": result.get("lr", params.get("lr")),
            "seed": result.get("seed", seed_base + r.number),
            "value": r.value,
        }
        # Every sampled argument, namespaced by family (<family>.<arg>), as Optuna stored it.
        row.update({k: v for k, v in params.items() if "." in k})
        row.update({k: result.get(k) for k in result_columns(score)})
        reported = [v for v in r.intermediate.values() if math.isfinite(v)]
        row["best_reported"] = (
            (max(reported) if direction == "maximize" else min(reported)) if reported else None
        )
        row.update(
            mlflow_run_id=attrs.get("mlflow_run_id"),
            failure=attrs.get("failure"),
            scheduler_args=result.get("scheduler_args"),
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=LEADERBOARD_FIRST + last)
    arg_cols = sorted(c for c in frame.columns if c not in LEADERBOARD_FIRST + last)
    # Integer arguments stay integers beside the blanks of other families' rows (pandas would make them
    # floats); which ones are integers is read off the stored values, before the frame mixes them.
    integer = {
        k for r in records for k, v in r.params.items() if isinstance(v, int) and not isinstance(v, bool)
    }
    for col in arg_cols:
        if col in integer:
            frame[col] = frame[col].astype("Int64")
    frame["epochs_run"] = frame["epochs_run"].astype("Int64")  # blank for a trial that failed before it ran
    frame = frame[LEADERBOARD_FIRST + arg_cols + last]
    order = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3, "WAITING": 4}
    frame["_state"] = frame["state"].map(order)
    frame = frame.sort_values(
        ["_state", "value", "number"], ascending=[True, direction == "minimize", True], na_position="last"
    )
    return frame.drop(columns="_state").reset_index(drop=True)


COUNTS = ["scheduler", "status", "trials", "complete", "pruned", "failed"]  # schedulers.csv's first columns


def schedulers_table(
    board: pd.DataFrame, direction: str, metric: str, score: str = "accuracy"
) -> pd.DataFrame:
    """One row per family: trial counts by state, the best trial's value and test score, the median value
    over its complete trials, and the rank of its best value. A family none of whose trials completed is
    "all pruned" (its best value: the best any of its trials reported before it was stopped), unranked."""
    rows = []
    for name, group in board.groupby("scheduler", sort=True):
        complete = group[group["state"] == "COMPLETE"]
        pruned = group[group["state"] == "PRUNED"]
        best = None
        if not complete.empty:
            idx = complete["value"].idxmax() if direction == "maximize" else complete["value"].idxmin()
            best = complete.loc[idx]
            status, value = "complete", best["value"]
        elif pruned["best_reported"].notna().any():
            seen = pruned["best_reported"]
            status, value = "all pruned", seen.max() if direction == "maximize" else seen.min()
        else:
            status, value = "no result", None
        rows.append(
            {
                "scheduler": name,
                "status": status,
                "trials": len(group),
                "complete": len(complete),
                "pruned": len(pruned),
                "failed": int((group["state"] == "FAIL").sum()),
                f"best_{metric}": value,
                "best_trial": None if best is None else int(best["number"]),
                f"test_{score}": None if best is None else best[f"test_{score}"],
                f"median_{metric}": complete["value"].median() if not complete.empty else None,
            }
        )
    columns = [*COUNTS, f"best_{metric}", "best_trial", f"test_{score}", f"median_{metric}"]
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:  # no trial yet (the search stopped at its timeout before one)
        return table.assign(rank=pd.Series(dtype="Int64"))
    key = f"best_{metric}"
    ranked = table[key].where(table["status"] == "complete")
    table["rank"] = ranked.rank(ascending=direction == "minimize", method="min").astype("Int64")
    return table.sort_values(["rank", "scheduler"], na_position="last").reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Written beside the target and renamed into place: a reader never sees half a file."""
    write_whole(path, lambda f: frame.to_csv(f, index=False))


def export(
    records: Sequence[StoredTrial],
    direction: str,
    metric: str,
    out_dir: Path,
    seed_base: int = 0,
    score: str = "accuracy",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    board = leaderboard(records, direction, seed_base, score)
    table = schedulers_table(board, direction, metric, score)
    write_csv(board, out_dir / "leaderboard.csv")
    write_csv(table, out_dir / "schedulers.csv")
    return board, table


def terminal_table(
    board: pd.DataFrame, table: pd.DataFrame, metric: str, top: int = 10, score: str = "accuracy"
) -> str:
    """The end-of-study summary printed in the terminal."""
    if board.empty:
        return "no trials yet"
    shown = board.head(top)[
        ["number", "state", "scheduler", "optimizer", "base_lr", "value", f"test_{score}", "epochs_run"]
    ]
    shown = shown.rename(columns={"value": metric})
    fams = table[
        [
            "rank",
            *COUNTS,
            f"best_{metric}",
            f"test_{score}",
            f"median_{metric}",
        ]
    ]
    trials = shown.to_string(
        index=False, formatters={"base_lr": "{:.3g}".format}, float_format="{:.4f}".format
    )
    fams = fams.assign(rank=[("-" if pd.isna(r) else int(r)) for r in fams["rank"]])  # unranked: "-"
    families = fams.to_string(index=False, float_format="{:.4f}".format, na_rep="-")
    return f"Top {len(shown)} trials\n{trials}\n\nSchedule families\n{families}"
