"""The ``lrbench`` command's entry point: light on purpose.

It imports nothing heavy before it has started, for ``lrbench study``, the study's MLflow writer process:
that process's own start-up (importing mlflow) then runs beside this one's (importing torch) rather than
after it. The writer is spawned, and a spawned process re-runs the command's script: that costs nothing
when the script imports only this module.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["study"] and not {"-h", "--help"} & set(args):
        from bench import tracking

        tracking.prestart_writer()
        try:
            return _cli(args)
        finally:
            tracking.discard_prestarted_writer()  # a study that stopped before it took the writer up
    return _cli(args)


def _cli(args: list[str]) -> int:
    from bench.cli import main as cli_main

    return cli_main(args)
