"""Benchmarks, measured side by side in one run and printed as tables of medians and ratios.

    python -m perf            # everything (make perf): training and end-to-end study throughput
    python -m perf storage    # Optuna bookkeeping per trial: journal file vs SQLite vs in memory
    python -m perf seeds      # best results of the default study, each engine on seeds 0-5 (5 min)
    python -m perf server     # the default study against an `mlflow server` here, 1 vs 8 requests
    python -m perf compare A B  # the default study from two source trees, alternately (a change's cost)
    python -m perf power      # what the ranking's tie procedure detects, by simulation (no training)
    python -m perf importance # the report's fANOVA importance: 16 trees against 64, and other seeds
    python -m perf func       # the torch.func engine: vs the stacked MLP, and the example CNN vs reference
    python -m perf replay [STUDY]  # how many of a study's runs lrbench replay reproduces exactly

All rows use the reference task (breast-cancer MLP 30-64-32-1, batch 32, 50 epochs) on one device:

  (a) the seed article's loop: DataLoader, per-batch steps, StepLR, no tracking;
  (b) that loop inside a hand-written Optuna objective that logs ``lr`` every step and the epoch metrics
      with plain ``mlflow.log_metric`` calls (MLflow on SQLite, Optuna in memory);
  (c) lrbench's reference trainer;
  (d) the population engine at several K (training only);
  (e) ``lrbench study studies/breast_cancer.yaml`` end to end in a fresh process, exactly as ``make study``
      runs it (the search, the confirmation on paired seeds, full MLflow logging, the reports), three times
      with the population engine (the median run is the row; the search and the confirmation are timed
      apart) and once with the reference engine, the search alone (for the best-value comparison).

Every row runs in a process of its own, so that its peak resident memory (RSS) is its own. The FLOP rate is
the analytic count of the reference task's arithmetic over the measured time, against a large matmul timed
in the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf", description=__doc__.splitlines()[0])
    parser.add_argument(
        "what",
        nargs="?",
        choices=("all", "storage", "seeds", "server", "compare", "power", "importance", "func", "replay"),
        default="all",
    )
    parser.add_argument(
        "trees",
        nargs="*",
        type=Path,
        help="compare: two source trees of lrbench, A and B; replay: a study file",
    )
    parser.add_argument("--runs", type=int, default=6, help="compare: runs of each tree")
    parser.add_argument("--rounds", type=int, default=3, help="server benchmark: runs per setting")
    parser.add_argument("--trials", type=int, default=60, help="storage benchmark: trials per storage")
    parser.add_argument("--seeds", type=int, default=6, help="seeds benchmark: study seeds per engine")
    parser.add_argument("--sims", type=int, default=500, help="power: simulated studies per cell")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--k", type=int, nargs="+", help="population sizes (default 1 16 64 128 256; to 4096 on CUDA)"
    )
    parser.add_argument("--output", default=str(ROOT / "results" / "perf"))
    args = parser.parse_args(argv)
    from perf.compare import compare
    from perf.full import full_benchmark
    from perf.server import server_benchmark
    from perf.storage import sampler_benchmark, storage_benchmark
    from perf.study import seeds_benchmark

    if args.what == "compare":
        if len(args.trees) != 2:
            parser.error("compare takes two source trees, A and B")
        print(compare(args.trees[0].resolve(), args.trees[1].resolve(), args.runs))
        return 0
    if args.what == "power":
        from perf.power import power_table

        print(power_table((8, 17), (5, 10, 20), (0.5, 1.0, 1.5, 2.0), args.sims))
        return 0
    if args.what == "importance":
        from perf.importance import importance_table

        print(importance_table(ROOT / "results" / "optuna.journal"))
        return 0
    if args.what == "replay":
        from perf.replay import DEFAULT, replay_table

        print(replay_table(args.trees[0].resolve() if args.trees else DEFAULT))
        return 0
    if args.what == "storage":
        print(storage_benchmark(args.trials))
        print()
        print(sampler_benchmark())
        return 0
    if args.what == "server":
        print(server_benchmark(args.rounds, Path(args.output)))
        print(f"\nwrote {args.output}/server.txt", file=sys.stderr)
        return 0
    if args.what == "seeds":
        print(seeds_benchmark(args.seeds, Path(args.output)))
        print(f"\nwrote {args.output}/seeds.txt", file=sys.stderr)
        return 0
    import torch

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    ks = args.k or ([1, 16, 64, 256, 1024, 4096] if cuda else [1, 16, 64, 128, 256])
    # torch.func beside the stacked MLP at the sizes the study trains at; the CNN at a few sizes.
    func_ks = [k for k in ks if k in (16, 64, 256, 1024)] or ks[:1]
    cnn_ks = [k for k in ks if k in (16, 64, 256, 1024, 4096)] or ks[:1]
    if args.what == "func":
        from perf.func import func_benchmark

        print(func_benchmark(args.device, func_ks, cnn_ks))
        return 0
    print(full_benchmark(args.device, ks, Path(args.output), func_ks, cnn_ks))
    print(f"\nwrote {args.output}/perf.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
