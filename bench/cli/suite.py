"""``lrbench suite``: every task of a suite, one study after another in the suite's shared stores, then the
suite's own files (suite.csv, profiles.csv, ranks.csv, suite.html).

It resumes task by task as a study does trial by trial: a task that ended is marked done (a file in its
folder naming the study's definition and stores), and a later run skips it; a task stopped part way resumes
where it stopped. Several workers can run one suite at once: they share each task's study as workers of a
study do, and whichever ends last writes the suite's files with every task in them.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import sys
from pathlib import Path

from bench.cli.signals import interrupted
from bench.cli.stores import check_given
from bench.cli.study import run_and_publish
from bench.config import Locations, check_runnable
from bench.config.suite import SuiteConfig, SuiteTask, load_suite
from bench.errors import UserError

DONE = ".lrbench-done"  # in a task's folder: the fingerprint of the study that ended there


def _fingerprint(task: SuiteTask, loc: Locations) -> str:
    """What a finished task was: its whole study definition and where its stores are."""
    text = "\n".join((task.study.to_yaml(), loc.storage, loc.tracking_uri))
    return hashlib.sha256(text.encode()).hexdigest()


def is_done(task: SuiteTask, loc: Locations) -> bool:
    marker = loc.results_dir(task.study) / DONE
    try:
        return marker.read_text().strip() == _fingerprint(task, loc)
    except OSError:
        return False


def _mark_done(task: SuiteTask, loc: Locations) -> None:
    from bench.cache import write_whole

    marker = loc.results_dir(task.study) / DONE
    write_whole(marker, lambda f: f.write(_fingerprint(task, loc).encode()))


def suite_locations(args: argparse.Namespace) -> tuple[SuiteConfig, Path, list[Locations]]:
    suite = load_suite(args.suite)
    root = suite.root(args.output)
    locs = [t.locations(root, args.storage, args.tracking_uri) for t in suite.tasks]
    return suite, root, locs


def cmd_suite(args: argparse.Namespace) -> int:
    suite, root, locs = suite_locations(args)
    # Every task is checked before the first file or run exists, the suite's folder too.
    for task, loc in zip(suite.tasks, locs, strict=True):
        try:
            check_given(args, task.study, loc)
        except UserError as exc:
            raise UserError(f"tasks.{task.name}: {exc}") from None
    for task in suite.tasks:
        try:
            check_runnable(task.study, task.sizes)
        except UserError as exc:
            raise UserError(f"tasks.{task.name}: {exc}") from None
    n = len(suite.tasks)
    for i, (task, loc) in enumerate(zip(suite.tasks, locs, strict=True), start=1):
        folder = loc.results_dir(task.study)
        if is_done(task, loc):
            print(f"suite {suite.name}: task {i}/{n} {task.name}: done ({folder})", file=sys.stderr)
            continue
        print(f"suite {suite.name}: task {i}/{n} {task.name}", file=sys.stderr)
        outcome, published, stopped_by = run_and_publish(task.study, loc, task.sizes)
        if outcome.interrupted:
            return interrupted(f"suite {suite.name} (in task {i}/{n} {task.name})", stopped_by)
        if not outcome.complete:  # the study said why: another worker has it, or its timeout
            print(
                f"suite {suite.name}: task {task.name} not finished by this worker; "
                "a later run of the suite resumes it if no other worker ends it",
                file=sys.stderr,
            )
            continue
        _mark_done(task, loc)
        report = published.report.resolve().as_uri()
        print(f"suite {suite.name}: task {task.name} ended: {report}", file=sys.stderr)
    from bench.report.suite import write_suite

    # One worker at a time reads the tasks' files and writes the suite's: one that read earlier cannot
    # overwrite a later worker's files with older ones.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lrbench-suite.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = write_suite(suite, root, locs)
    print("\n".join(f"wrote {f}" for f in out.files))
    print(f"the suite's report: {out.report.resolve().as_uri()}")
    print(f"\n{out.text}")
    return 0
