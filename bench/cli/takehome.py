"""Taking a study's winner home: ``lrbench replay RUN_ID`` trains a trial again from its MLflow record and
checks its curves against the recorded ones (:mod:`.replay`); ``lrbench snippet RUN_ID|FAMILY`` prints the
PyTorch code of its schedule for your own loop (:mod:`.snippet`)."""

from __future__ import annotations

import argparse

from bench.cli.recorded import add_store_options
from bench.cli.replay import cmd_replay
from bench.cli.snippet import cmd_snippet

__all__ = [
    "REPLAY_HELP",
    "SNIPPET_HELP",
    "cmd_replay",
    "cmd_snippet",
    "replay_arguments",
    "snippet_arguments",
]

REPLAY_HELP = "train a trial again from its MLflow run and compare its curves with the recorded ones"
SNIPPET_HELP = "print the PyTorch code of a run's (or a family's) schedule"


def replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID", help="a search or confirmation run's id (exact)")
    add_store_options(p)
    p.add_argument("--device", default="cpu", help="cpu (default: exact there), cuda, cuda:N, mps or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def snippet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "target", metavar="RUN_ID|FAMILY", help="a trial run's id, or a family from `lrbench schedules`"
    )
    add_store_options(p)
    family = p.add_argument_group("a family's run (not for a RUN_ID)")
    family.add_argument(
        "--set", action="append", metavar="ARG=VALUE", help="a scheduler argument (repeatable)"
    )
    family.add_argument("--lr", type=float, help="the base LR (default 0.1)")
    family.add_argument("--epochs", type=int, help="default 30")
    family.add_argument("--steps-per-epoch", type=int, help="batches an epoch (default 1)")
    family.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="default sgd")
    family.add_argument("--momentum", type=float, help="SGD's momentum (default 0.9)")
    family.add_argument("--weight-decay", type=float, help="default 0")
