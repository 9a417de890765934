"""The command line's parser, and running a command: a user error is one line and exit status 2."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from bench.cli import commands, study, suite, sweep, takehome, ui
from bench.errors import UserError
from bench.tracking.server import stopped_answering
from bench.uris import is_tracking_server, scrub


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535, got {text!r}")
    return port


def _stores(p: argparse.ArgumentParser, default_output: str) -> None:
    p.add_argument(
        "--storage", metavar="URL", help="Optuna storage (default: a journal file under the output)"
    )
    p.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow tracking URI (default: sqlite under the output)"
    )
    p.add_argument("--output", metavar="DIR", help=f"results root (default: {default_output})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrbench", description="Compare PyTorch learning-rate schedules.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("schedules", help="list the schedule families, their arguments and defaults")
    p.set_defaults(func=commands.cmd_schedules)

    p = sub.add_parser("schedule", help="preview a schedule's LR curve without training")
    p.add_argument("name", help="a family from `lrbench schedules`")
    p.add_argument("--set", action="append", metavar="ARG=VALUE", help="a scheduler argument (repeatable)")
    p.add_argument("--lr", type=float, default=commands.PREVIEW_RUN["lr"])
    p.add_argument("--epochs", type=int, default=commands.PREVIEW_RUN["epochs"])
    p.add_argument("--steps-per-epoch", type=int, default=commands.PREVIEW_RUN["steps_per_epoch"])
    p.add_argument("--format", choices=("table", "csv"), default="table")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the curve to a PNG")
    p.set_defaults(func=commands.cmd_schedule)

    p = sub.add_parser("train", help="train one trial and print its metrics")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="breast_cancer, wine, digits, iris, diabetes or synthetic")
    source.add_argument("--csv", metavar="PATH", help="a CSV file of numeric features and a target column")
    p.add_argument("--target", metavar="COLUMN", help="the target column of --csv")
    p.add_argument(
        "--kind",
        choices=("classification", "regression"),
        help="the task's kind (default: the dataset's own; a --csv's: classification)",
    )
    p.add_argument("--drop", action="append", metavar="COLUMN", help="a --csv column to ignore (repeatable)")
    p.add_argument(
        "--label-map", metavar="JSON", help='map target values to classes, e.g. \'{"M": 1, "B": 0}\''
    )
    p.add_argument("--scheduler", default="constant")
    p.add_argument("--set", action="append", metavar="ARG=VALUE", help="a scheduler argument (repeatable)")
    p.add_argument("--optimizer", default="adam", help="sgd (momentum 0.9), adam or adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD's momentum")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 32], help="hidden layer sizes")
    p.add_argument("--activation", default="relu", help="relu, gelu, tanh or silu")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--split-seed", type=int, default=2, help="the seed of the train/val/test split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("study", help="run (or resume) a study: Optuna trials, MLflow runs, leaderboards")
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("--n-trials", type=int, help="COMPLETE + PRUNED trials to reach (default: the study's)")
    _stores(p, "the study's, results/")
    p.set_defaults(func=study.cmd_study)

    p = sub.add_parser(
        "suite", help="run (or resume) a suite: a study per task, then the ranking across tasks"
    )
    p.add_argument("suite", metavar="SUITE.yaml")
    _stores(p, "the suite's, results/")
    p.set_defaults(func=suite.cmd_suite)

    for name, func, text in (
        ("export", study.cmd_export, "rebuild a study's CSVs and report.html from its stores"),
        ("report", study.cmd_report, "rebuild a study's report.html (and its CSVs) from its stores"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("study", metavar="STUDY.yaml")
        p.add_argument("--storage", metavar="URL")
        p.add_argument("--tracking-uri", metavar="URI")
        p.add_argument("--output", metavar="DIR")
        p.set_defaults(func=func)

    p = sub.add_parser(
        "ui",
        help="start the MLflow UI on 127.0.0.1 over a study's store (for a tracking server: its address)",
    )
    p.add_argument(
        "--study",
        metavar="STUDY.yaml",
        help=f"open this study's experiment (default, without --tracking-uri: {ui.DEFAULT_STUDY})",
    )
    p.add_argument("--tracking-uri", metavar="URI")
    p.add_argument("--output", metavar="DIR")
    p.add_argument("--port", type=_port, default=5000)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default 1, which starts in about half the time of MLflow's 4 here)",
    )
    p.set_defaults(func=ui.cmd_ui)

    p = sub.add_parser("lr-sweep", help=sweep.HELP)
    sweep.add_arguments(p)
    p.set_defaults(func=sweep.cmd_lr_sweep)

    p = sub.add_parser("replay", help=takehome.REPLAY_HELP)
    takehome.replay_arguments(p)
    p.set_defaults(func=takehome.cmd_replay)

    p = sub.add_parser("snippet", help=takehome.SNIPPET_HELP)
    takehome.snippet_arguments(p)
    p.set_defaults(func=takehome.cmd_snippet)
    return parser


def _positive(args: argparse.Namespace) -> None:
    for name in ("epochs", "steps_per_epoch", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    lr = getattr(args, "lr", None)
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"--lr must be a positive number, got {lr}")


def run(argv: Sequence[str] | None = None) -> int:
    """The command line, run: its exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        _positive(args)
        return func(args)
    except UserError as exc:
        # Every message has its URLs masked (bench.uris.shown); a driver's own words quoting one too.
        secret_bearing = (getattr(args, "storage", None), getattr(args, "tracking_uri", None))
        print(f"lrbench: error: {scrub(str(exc), *secret_bearing)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lrbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly.
        sys.stderr.close()
        return 0
    except Exception as exc:
        uri = getattr(args, "tracking_uri", None) or ""
        if not is_tracking_server(uri):
            raise
        down = stopped_answering(uri, exc)  # in the middle of an export, say (a study handles its own)
        if down is None:
            raise
        print(f"lrbench: error: {down}; run the same command again once it answers", file=sys.stderr)
        return 2
