"""Everything ``report.html`` shows but the curves, gathered from a stored study and its ranking
(:class:`bench.report.page.ReportInput`)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pandas as pd

from bench.config import StudyConfig
from bench.report import reproduce
from bench.report.page import ReportInput
from bench.report.ranking import Metric, Ranking, budget_table
from bench.schedules import get
from bench.stored import StoredStudy, StoredTrial
from bench.tracking.names import LR, FamilyRecord, val_metric_key


def _panels(
    stored: StoredStudy, r: Ranking | None, best: dict[str, pd.Series]
) -> tuple[dict[str, list[str]], dict[str, list[list[tuple[int, float]]]]]:
    """What each family's small multiple draws: run ids whose LR curves MLflow holds, and the validation
    curves by seed where the study stored them. A chosen configuration's runs: the first seed's LR (the
    same on every seed unless the schedule follows the loss: then every seed's) and every seed's stored
    validation curve. A family without a confirmed choice: its best search trial's run, both curves read
    from MLflow."""
    runs: dict[str, list[str]] = {}
    vals: dict[str, list[list[tuple[int, float]]]] = {}
    if r is not None:
        cells: dict[tuple[str, int, int], StoredTrial] = {}
        for t in stored.confirm:
            cell, run = t.user_attrs.get("cell"), t.user_attrs.get("mlflow_run_id")
            if cell and run and t.state in ("COMPLETE", "PRUNED"):
                cells.setdefault((cell["family"], int(cell["config"]), int(cell["seed_index"])), t)
        chosen = r.confirm[r.confirm["chosen"]].sort_values("seed_index")
        for _, row in chosen.iterrows():
            family = str(row["family"])
            trial = cells.get((family, int(row["config"]), int(row["seed_index"])))
            if trial is None:
                continue
            if family not in runs or get(family).needs_metric:
                runs.setdefault(family, []).append(str(trial.user_attrs["mlflow_run_id"]))
            curve = (trial.user_attrs.get("result") or {}).get("val_curve") or []
            vals.setdefault(family, []).append([(e, v) for e, v in enumerate(curve) if v is not None])
    for family, row in best.items():
        if family not in runs and isinstance(row["mlflow_run_id"], str):
            runs[family] = [row["mlflow_run_id"]]
    return runs, vals


def _best_search_rows(table: pd.DataFrame, board: pd.DataFrame) -> dict[str, pd.Series]:
    """Each family's best search trial (schedulers.csv's ``best_trial``), as its leaderboard.csv row."""
    out = {}
    for _, fam in table.dropna(subset=["best_trial"]).iterrows():
        mine = (board["number"] == fam["best_trial"]) & (board["scheduler"] == fam["scheduler"])
        out[str(fam["scheduler"])] = board[mine].iloc[0]
    return out


def _chosen_rows(cfg: StudyConfig, r: Ranking | None, best: dict[str, pd.Series]) -> pd.DataFrame:
    """A row per family to reproduce: the confirmed choice on seed index 0, or the best search trial."""
    rows = []
    if r is not None:
        for _, f in r.families[r.families["status"] == "confirmed"].iterrows():
            rows.append(
                {
                    **f[["family", "optimizer", "base_lr", "scheduler_args"]].to_dict(),
                    "seed": cfg.training.seed,
                    "split_seed": cfg.confirm_task(0).split_seed,
                }
            )
    done = {row["family"] for row in rows}
    for family, row in best.items():
        if family not in done:
            columns = ["optimizer", "base_lr", "scheduler_args", "seed"]
            rows.append({"family": family, **row[columns].to_dict(), "split_seed": cfg.task.split_seed})
    return pd.DataFrame(
        rows, columns=["family", "optimizer", "base_lr", "scheduler_args", "seed", "split_seed"]
    )


def report_input(
    cfg: StudyConfig,
    train_rows: int,
    stored: StoredStudy,
    board: pd.DataFrame,
    table: pd.DataFrame,
    r: Ranking | None,
    answer: str,
) -> ReportInput:
    metric = Metric.of(cfg, stored.direction)
    best = _best_search_rows(table, board)
    runs, vals = _panels(stored, r, best)
    steps = math.ceil(train_rows / cfg.training.batch_size)
    confirmed: list[str] = []
    if r is not None:
        confirmed = [str(f) for f in r.families[r.families["status"] == "confirmed"]["family"]]
    order = confirmed + [str(f) for f in table["scheduler"] if str(f) not in confirmed]
    seeds: list[int] = []
    if r is not None:
        seeds = sorted({int(s) for s in r.confirm[r.confirm["chosen"]]["seed"].dropna()})
    return ReportInput(
        name=cfg.name,
        settings=reproduce.settings(cfg, train_rows),
        objective=metric.objective,
        test=metric.test,
        better=metric.better,
        sign=metric.sign,
        lr_key=LR,
        val_key=val_metric_key(cfg.objective.metric),
        steps_per_epoch=steps,
        answer=answer,
        board=board,
        search=table,
        families=r.families if r is not None else None,
        confirm=r.confirm if r is not None else None,
        pairwise=r.pairwise if r is not None else None,
        budget=r.budget if r is not None else budget_table(stored.trials, metric),
        order=order,
        untried=[f for f in cfg.schedulers if f not in order],
        panel_runs=runs,
        panel_vals=vals,
        importance=stored.importance,
        reproduce=reproduce.reproductions(
            cfg, _chosen_rows(cfg, r, best), steps, {family: ids[0] for family, ids in runs.items() if ids}
        ),
        versions=reproduce.versions(),
        seeds=seeds,
        definition=cfg.to_yaml(),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def parent_metrics(r: Ranking | None, metric: Metric) -> dict[str, float]:
    """Per confirmed family, on the study's parent run: ``<family>/rank``, ``<family>/tied_for_best`` (1 or
    0) and the test metric's mean and CI (``<family>/test_loss_mean``, ``_ci_low``, ``_ci_high``)."""
    shown = {"rank", "tied_for_best", *(f"{metric.test}_{c}" for c in ("mean", "ci_low", "ci_high"))}
    records = family_records(r, metric)
    return {f"{family}/{k}": v for family, (m, _) in records.items() for k, v in m.items() if k in shown}


def family_records(r: Ranking | None, metric: Metric) -> dict[str, FamilyRecord]:
    """Per confirmed family, its run's metrics (rank, tied_for_best as 1 or 0, the test metric's mean, CI,
    std and IQM over the seeds, the paired difference to the best, the p-values) and params (the chosen
    configuration: ``scheduler``, ``optimizer``, ``base_lr``, ``<family>.<arg>``; ``config``, its search
    trial; ``seeds``)."""
    if r is None:
        return {}
    out: dict[str, FamilyRecord] = {}
    for _, f in r.families[r.families["status"] == "confirmed"].iterrows():
        family = str(f["family"])
        metrics = {"rank": float(f["rank"]), "tied_for_best": float(bool(f["tied_for_best"]))}
        for column in ("mean", "ci_low", "ci_high", "std", "iqm"):
            metrics[f"{metric.test}_{column}"] = float(f[column])
        for column in ("diff_vs_best", "p_vs_best", "p_vs_constant", "p_improvement"):
            if not pd.isna(f[column]):
                metrics[column] = float(f[column])
        params = {
            "scheduler": family,
            "optimizer": str(f["optimizer"]),
            "base_lr": repr(float(f["base_lr"])),
            "config": str(int(f["config"])),
            "seeds": str(int(f["seeds"])),
        }
        args = json.loads(f["scheduler_args"]) if isinstance(f["scheduler_args"], str) else {}
        params.update({f"{family}.{k}": str(v) for k, v in args.items()})
        out[family] = (metrics, params)
    return out
