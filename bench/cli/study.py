"""``lrbench study``, ``lrbench export`` and ``lrbench report``: run a study, and write what a study gives
(leaderboard and ranking CSVs, report.html, the terminal's tables) from its stores."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bench.cli import startup
from bench.cli.signals import interrupted, stop_as_ctrl_c
from bench.cli.stores import check_given
from bench.config import Locations, StudyConfig, check_runnable, load_sized
from bench.data import Sizes
from bench.errors import TrackingServerDown, UserError
from bench.report import page
from bench.report.page import ReportInput
from bench.tracking.names import FamilyRecord
from bench.tracking.writer import Writer
from bench.uris import shown

if TYPE_CHECKING:
    from bench.search import Outcome


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
    outcome, published, stopped_by = run_and_publish(cfg, loc, sizes, args.n_trials)
    if outcome.interrupted:
        print("\n\n".join(filter(None, (published.summary, published.ranking))))
        return interrupted(f"study {cfg.name} (after {outcome.ran} trial(s) in this run)", stopped_by)
    where = f" --tracking-uri {shown(args.tracking_uri)}" if args.tracking_uri else ""
    where += f" --output {args.output}" if args.output and not args.tracking_uri else ""
    print(published.summary)
    print(f"the report: {published.report.resolve().as_uri()}")
    print(f"compare the runs: lrbench ui --study {args.study}{where}")
    if published.ranking:  # the terminal ends with the answer
        print(f"\n{published.ranking}")
    return 0


class Ran(NamedTuple):
    outcome: Outcome
    published: Published
    stopped_by: list[int]  # the stop signals received (empty: none, or a Ctrl-C)


def run_and_publish(cfg: StudyConfig, loc: Locations, sizes: Sizes, n_trials: int | None = None) -> Ran:
    """Run (or resume) a study with its MLflow writer, then write what it gives. A writer that dies or a
    tracking server that stops answering is one line saying what is kept and how to go on."""
    print(
        f"study {cfg.name}: storage {shown(loc.storage)}, tracking {shown(loc.tracking_uri)}", file=sys.stderr
    )
    # Before importing optuna and the engines: MLflow opens the store meanwhile.
    writer = Writer(loc.tracking_uri, cfg.name, loc.spool(cfg), warm=page.prepare)
    try:
        try:
            from bench.search import run_study

            with stop_as_ctrl_c() as stopped_by:
                outcome = run_study(cfg, loc, n_trials=n_trials, writer=writer, on_loaded=startup.end)
                published = publish(cfg, loc, sizes, writer)
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
    return Ran(outcome, published, stopped_by)


def cmd_export(args: argparse.Namespace) -> int:
    """``lrbench export``: every file a study writes, from its stores, and the terminal's tables."""
    cfg, loc, sizes = _study_locations(args)
    check_given(args, cfg, loc, existing=True)
    out = publish(cfg, loc, sizes)
    print("\n\n".join(filter(None, (out.summary, out.ranking))))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``lrbench report``: the same files, from the stores; it prints where the report is, and the answer."""
    cfg, loc, sizes = _study_locations(args)
    check_given(args, cfg, loc, existing=True)
    out = publish(cfg, loc, sizes)
    print(f"wrote {out.report}")
    if out.ranking:
        print(f"\n{out.ranking}")
    return 0


class Published(NamedTuple):
    summary: str  # the search's tables and the files written
    ranking: str  # the confirmed ranking and its answer ("" without a confirmation)
    files: list[Path]  # everything written, report.html last
    metrics: dict[str, float]  # the parent run's per-family summary metrics
    families: dict[str, FamilyRecord]  # a run per ranked family
    parent_run_id: str | None

    @property
    def report(self) -> Path:
        return self.files[-1]


# Writes report.html from the panel runs' curves (label -> run id), read where it runs.
DrawReport = Callable[[Mapping[str, str], Sequence[str], ReportInput, Path], None]


def publish(cfg: StudyConfig, loc: Locations, sizes: Sizes, writer: Writer | None = None) -> Published:
    """Leaderboard and ranking CSVs and report.html from the stores, attached to the study's parent run
    with its per-family summary metrics. Given the study's writer, the report is written there (where the
    curves are read); else a Tracker of this process reads the curves and logs to the parent run."""
    from bench.report.page import write_report

    if writer is not None:

        def draw(runs: Mapping[str, str], keys: Sequence[str], data: ReportInput, path: Path) -> None:
            writer.draw(runs, keys, write_report, data, path)

        out = _export(cfg, loc, sizes, draw)
        writer.log_parent_artifacts(out.files, metrics=out.metrics, families=out.families).result()
        return out
    from bench.tracking.client import Tracker

    tracker = Tracker(loc.tracking_uri, cfg.name)
    try:
        out = _export(
            cfg,
            loc,
            sizes,
            lambda runs, keys, data, path: write_report(tracker.curves(runs, keys), data, path),
        )
        if out.parent_run_id is not None:
            tracker.attach(out.parent_run_id)
            tracker.log_parent_artifacts(out.files, metrics=out.metrics, families=out.families)
        return out
    finally:
        tracker.close()


def _export(cfg: StudyConfig, loc: Locations, sizes: Sizes, draw: DrawReport) -> Published:
    from bench.report import answer, assemble, leaderboard, ranking
    from bench.report.page import panel_keys, panel_labels
    from bench.search import load_trials

    stored = load_trials(cfg, loc, importance=True)
    out_dir = loc.results_dir(cfg)
    metric = ranking.Metric.of(cfg, stored.direction)
    board, table = leaderboard.export(
        stored.trials, stored.direction, metric.objective, out_dir, cfg.training.seed, metric.score
    )
    files = [out_dir / "leaderboard.csv", out_dir / "schedulers.csv"]
    r, text = None, ""
    said = (
        "No answer: this study has no confirmation (confirm.seeds: 0)."
        if not cfg.confirm.seeds
        else "No answer yet: the confirmation has not run; run the study again to go on."
    )
    if cfg.confirm.seeds and stored.confirm:
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
        said = answer.answer(r.families, metric)
        text = f"{answer.ranking_table(r.families, metric)}\n\n{said}"
    if r is None:  # the tuning-budget curves need the search alone
        leaderboard.write_csv(ranking.budget_table(stored.trials, metric), out_dir / "budget.csv")
        files.append(out_dir / "budget.csv")
    data = assemble.report_input(cfg, sizes.train_rows, stored, board, table, r, said)
    draw(panel_labels(data), panel_keys(data), data, out_dir / "report.html")
    files.append(out_dir / "report.html")
    lines = [leaderboard.terminal_table(board, table, metric.objective, score=metric.score), ""]
    lines += [f"wrote {f}" for f in files]
    records = assemble.family_records(r, metric)
    metrics = assemble.parent_metrics(r, metric)
    return Published("\n".join(lines), text, files, metrics, records, stored.parent_run_id)
