"""``lrbench study`` and ``lrbench export``: run a study, and write what a study gives (leaderboard CSVs,
the summary figure, the terminal's table) from its stores."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from bench.cli import startup
from bench.cli.signals import exit_status, stop_as_ctrl_c
from bench.cli.stores import check_given
from bench.config import Locations, StudyConfig, check_runnable, load_sized
from bench.data import Sizes
from bench.errors import TrackingServerDown, UserError
from bench.report import figures
from bench.stored import StoredStudy
from bench.tracking.names import val_metric_key
from bench.tracking.writer import Writer
from bench.uris import shown


def study_locations(args: argparse.Namespace) -> tuple[StudyConfig, Locations]:
    return _study_locations(args)[:2]


def _study_locations(args: argparse.Namespace) -> tuple[StudyConfig, Locations, Sizes]:
    cfg, sizes = load_sized(args.study)
    loc = Locations.resolve(
        cfg, args.output, getattr(args, "storage", None), getattr(args, "tracking_uri", None)
    )
    return cfg, loc, sizes


def cmd_study(args: argparse.Namespace) -> int:
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials must be at least 1, got {args.n_trials}")
    cfg, loc, sizes = _study_locations(args)
    # Everything is checked before the first file or run exists: where the study goes, then what it trains
    # (which imports torch).
    check_given(args, cfg, loc)
    check_runnable(cfg, sizes, args.n_trials)
    print(
        f"study {cfg.name}: storage {shown(loc.storage)}, tracking {shown(loc.tracking_uri)}", file=sys.stderr
    )
    # Before importing optuna and the engines: MLflow opens the store meanwhile.
    writer = Writer(loc.tracking_uri, cfg.name, loc.spool(cfg), warm=figures.prepare)
    try:
        try:
            from bench.search import run_study

            with stop_as_ctrl_c() as stopped_by:
                outcome = run_study(cfg, loc, n_trials=args.n_trials, writer=writer, on_loaded=startup.end)
                summary, ranking = publish(cfg, loc, writer)
        finally:
            writer.close()
    except BrokenProcessPool:
        writer.stop()
        raise UserError(
            "the study's MLflow writer process died (killed?), and the study stopped. The trials that ended "
            f"are in the study, and what MLflow did not get of them is kept under {writer.spool.folder}. "
            "Run the same command again: that is written first, and the study goes on"
        ) from None
    except TrackingServerDown as exc:
        spooled = len(writer.spool.kept())
        kept = " and in MLflow"
        if spooled:
            kept = (
                f"; what MLflow does not have yet of {spooled} trial(s) is kept under {writer.spool.folder}"
            )
        raise UserError(
            f"{exc}, and the study stopped. The trials that ended are in the study{kept}. Run the same "
            f"command again once the server answers{': that is written first,' if spooled else ','} and "
            "the study goes on"
        ) from None
    if outcome.interrupted:
        print("\n\n".join(filter(None, (summary, ranking))))
        by = f" by {signal.Signals(stopped_by[0]).name}" if stopped_by else ""
        print(
            f"lrbench: interrupted{by} after {outcome.ran} trial(s) in this run; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return exit_status(stopped_by)
    where = f" --tracking-uri {shown(args.tracking_uri)}" if args.tracking_uri else ""
    where += f" --output {args.output}" if args.output and not args.tracking_uri else ""
    print(summary)
    print(f"compare the runs: lrbench ui --study {args.study}{where}")
    if ranking:  # the terminal ends with the answer
        print(f"\n{ranking}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cfg, loc = study_locations(args)
    check_given(args, cfg, loc, existing=True)
    print("\n\n".join(filter(None, publish(cfg, loc))))
    return 0


# Draws the summary figure from the runs (label -> run id): the labels it left out for want of curves.
DrawSummary = Callable[[Mapping[str, str], Path], list[str]]


def publish(cfg: StudyConfig, loc: Locations, writer: Writer | None = None) -> tuple[str, str]:
    """Leaderboard and ranking CSVs and the summary figure from the stores; what the terminal shows of
    them: the search's tables with the files written, and the confirmed ranking with its answer (empty
    without a confirmation). Given the study's writer (which knows the parent run), the figure is drawn
    there and the files are attached to the parent run too; else a Tracker of this process reads the
    curves."""
    summary_figure = figures.summary_figure
    key, metric = val_metric_key(cfg.objective.metric), cfg.objective.metric
    keys = ("lr", key)
    if writer is not None:

        def draw(runs: Mapping[str, str], path: Path) -> list[str]:
            return writer.draw(runs, keys, summary_figure, key, metric, path)

        summary, ranking, files = _export(cfg, loc, draw)
        writer.log_parent_artifacts(files).result()
        return summary, ranking
    from bench.tracking.client import Tracker

    tracker = Tracker(loc.tracking_uri, cfg.name)
    try:
        summary, ranking, _ = _export(
            cfg, loc, lambda runs, path: summary_figure(tracker.curves(runs, keys), key, metric, path)
        )
        return summary, ranking
    finally:
        tracker.close()


def _export_ranking(cfg: StudyConfig, stored: StoredStudy, out_dir: Path, files: list[Path]) -> str:
    """The confirmed ranking's files (added to ``files``) and what the terminal shows of it."""
    from bench.report import answer, leaderboard, ranking

    metric = ranking.Metric(cfg.objective.metric, stored.direction)
    c = cfg.confirm
    r = ranking.rank(stored.trials, stored.confirm, metric, c.seeds, c.top_k, c.target)
    for name, frame in (
        ("families", r.families),
        ("confirm", r.confirm),
        ("pairwise", r.pairwise),
        ("budget", r.budget),
    ):
        leaderboard.write_csv(frame, out_dir / f"{name}.csv")
        files.append(out_dir / f"{name}.csv")
    return f"{answer.ranking_table(r.families, metric)}\n\n{answer.answer(r.families, metric)}"


def _export(cfg: StudyConfig, loc: Locations, draw: DrawSummary) -> tuple[str, str, list[Path]]:
    from bench.report import leaderboard
    from bench.search import load_trials

    stored = load_trials(cfg, loc)
    out_dir = loc.results_dir(cfg)
    metric = cfg.objective.metric
    board, table = leaderboard.export(stored.trials, stored.direction, metric, out_dir, cfg.training.seed)
    files = [out_dir / "leaderboard.csv", out_dir / "schedulers.csv"]
    runs = {}
    for _, fam in table.dropna(subset=["best_trial"]).iterrows():
        # A family's own study numbers its trials from 0 (search.budget: per_family).
        mine = (board["number"] == fam["best_trial"]) & (board["scheduler"] == fam["scheduler"])
        row = board[mine].iloc[0]
        run_id = row["mlflow_run_id"]
        if isinstance(run_id, str) and run_id:
            runs[f"{fam['scheduler']} (#{row['number']})"] = run_id
    missing: list[str] = []
    if runs:
        missing = draw(runs, out_dir / "summary.png")
        files.append(out_dir / "summary.png")
    ranking = _export_ranking(cfg, stored, out_dir, files) if cfg.confirm.seeds and stored.confirm else ""
    lines = [leaderboard.terminal_table(board, table, metric), ""]
    lines += [f"wrote {f}" for f in files]
    if missing:
        lines.append(
            f"  summary.png leaves out {', '.join(missing)}: no curves in MLflow yet (another worker is "
            "still writing them); `lrbench export` draws it again"
        )
    return "\n".join(lines), ranking, files
