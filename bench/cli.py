"""The ``lrbench`` command line. Every user error is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from bench import schedules
from bench.config import shown
from bench.errors import TrackingServerDown, UserError
from bench.tracking import is_tracking_server, stopped_answering


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_value(text: str) -> Any:
    """A --set value: a Python/JSON literal (10, 0.5, 1e-3, [10, 20], "cos") or else the plain string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set expects ARG=VALUE, got {item!r}")
        out[name.strip()] = parse_value(value)
    return out


def _fmt(value: Any) -> str:
    if callable(value):
        return "(derived)"
    return repr(value) if isinstance(value, str) else str(value)


# --- commands -----------------------------------------------------------------------------------------


def cmd_schedules(args: argparse.Namespace) -> int:
    for family in schedules.SCHEDULES.values():
        when = "per step" if family.per_step else "per epoch"
        extra = ", needs val loss" if family.needs_metric else ""
        print(f"{family.name}  [{when}{extra}]  {family.summary}")
        for name, arg in family.args.items():
            default = f"derived: {arg.help}" if arg.derived else _fmt(arg.default)
            choices = f"  one of: {', '.join(map(str, arg.choices))}" if arg.choices else ""
            print(f"    {name:<20} {arg.kind.__name__:<6} default {default}{choices}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    lrs, resolved = schedules.preview(
        args.name, parse_sets(args.set), lr=args.lr, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch
    )
    rows = [(step, step // args.steps_per_epoch, lr) for step, lr in enumerate(lrs)]
    if args.format == "csv":
        print("step,epoch,lr")
        for step, epoch, lr in rows:
            print(f"{step},{epoch},{lr:.10g}")
    else:
        shown = ", ".join(f"{k}={v!r}" for k, v in resolved.items()) or "no arguments"
        print(f"{args.name}({shown})  lr={args.lr}  epochs={args.epochs}  steps/epoch={args.steps_per_epoch}")
        print(f"{'step':>6} {'epoch':>6} {'lr':>14}")
        for step, epoch, lr in rows:
            print(f"{step:>6} {epoch:>6} {lr:>14.8g}")
    if args.plot:
        from bench.plots import plot_lr_curves

        plot_lr_curves({args.name: lrs}, args.plot, title=f"{args.name} preview")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bench.data import DataConfig, load_task
    from bench.engine import TrainConfig, resolve_device, train
    from bench.model import ModelConfig

    if args.csv and not args.target:
        raise UserError("--csv needs --target COLUMN")
    data_cfg = DataConfig(
        dataset=None if args.csv else args.dataset,
        csv=args.csv,
        target=args.target,
        drop=tuple(args.drop or ()),
        label_map=json.loads(args.label_map) if args.label_map else None,
    )
    cfg = TrainConfig(
        scheduler=args.scheduler,
        scheduler_args=parse_sets(args.set),
        optimizer=args.optimizer,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        weight_decay=args.weight_decay,
        model=ModelConfig(hidden=tuple(args.hidden), dropout=args.dropout),
    )
    cfg.check()
    task = load_task(data_cfg, resolve_device(args.device))
    result = train(task, cfg)
    summary = result.summary()
    if args.json:
        print(
            json.dumps(
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
            )
        )
        return 0
    status = f"diverged at step {result.diverged_step}" if result.diverged else "ok"
    head = f"{task.name}: {cfg.scheduler} {cfg.optimizer} lr={cfg.lr} seed={cfg.seed} on {result.device}"
    print(f"{head}: {status}")
    print(
        f"  epochs {result.epochs_run}/{cfg.epochs}, {result.steps_per_epoch} steps/epoch, "
        f"{result.seconds:.2f} s; "
        f"final val acc {summary['val_accuracy']:.4f}, best {result.best_val_accuracy:.4f}"
    )
    print(f"  test accuracy {result.test_accuracy:.4f}, test loss {result.test_loss:.4f}")
    return 0


def _study_locations(args: argparse.Namespace) -> tuple[Any, Any]:
    from bench import config

    cfg = config.load(args.study)
    loc = config.Locations.resolve(
        cfg, args.output, getattr(args, "storage", None), getattr(args, "tracking_uri", None)
    )
    return cfg, loc


def _publish(cfg: Any, loc: Any, tracker: Any = None) -> str:
    """Leaderboard CSVs and the summary figure from storage; given the study's tracker (which knows the
    parent run), they are attached to the parent run too."""
    from bench.tracking import Tracker

    if tracker is not None:
        return _export(cfg, loc, tracker, attach=True)
    own = Tracker(loc.tracking_uri, cfg.name)
    try:
        return _export(cfg, loc, own, attach=False)
    finally:
        own.close()


def _export(cfg: Any, loc: Any, tracker: Any, attach: bool) -> str:
    from bench import report
    from bench.study import load_trials

    stored = load_trials(cfg, loc)
    out_dir = loc.results_dir(cfg)
    metric = cfg.objective.metric
    board, table = report.export(stored.records, stored.direction, metric, out_dir, cfg.training.seed)
    files = [out_dir / "leaderboard.csv", out_dir / "schedulers.csv"]
    runs = {}
    for _, fam in table.dropna(subset=["best_trial"]).iterrows():
        row = board[board["number"] == fam["best_trial"]].iloc[0]
        run_id = row["mlflow_run_id"]
        if isinstance(run_id, str) and run_id:
            runs[f"{fam['scheduler']} (#{row['number']})"] = run_id
    missing: list[str] = []
    if runs:
        key = "val/accuracy" if metric == "val_accuracy" else "val/loss"
        missing = tracker.summary_figure(runs, key, metric, out_dir / "summary.png")
        files.append(out_dir / "summary.png")
    if attach:
        tracker.log_parent_artifacts(files)
    lines = [report.terminal_table(board, table, metric), ""]
    lines += [f"wrote {f}" for f in files]
    if missing:
        lines.append(
            f"  summary.png leaves out {', '.join(missing)}: no curves in MLflow yet (another worker is "
            "still writing them); `lrbench export` draws it again"
        )
    return "\n".join(lines)


# The package that brings each database driver SQLAlchemy imports (SQLAlchemy 2.1 takes psycopg 3 for a
# plain postgresql:// URL, psycopg2 for postgresql+psycopg2://).
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "pyodbc": "pyodbc",
}


def check_database(what: str, url: str) -> None:
    """A database URL given on the command line (an Optuna storage, an MLflow store) is checked before
    anything is created: its driver is installed and the database accepts a connection."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
    except ImportError as exc:
        module = exc.name or "?"
        package = DRIVER_PACKAGES.get(module, module)
        raise UserError(
            f"{what} {shown(url)}: its database driver ({module}) is not installed; install it beside "
            f"lrbench: .venv/bin/pip install '{package}'"
        ) from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise UserError(f"{what} {shown(url)}: not a database URL ({exc})") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"{what} {shown(url)}: cannot connect ({reason})") from None
    finally:
        engine.dispose()


def check_tracking_server(uri: str, timeout: float = 10.0) -> None:
    """An MLflow tracking server given on the command line answers before anything is created (MLflow's
    own client retries a server that is down for minutes before it gives up). Any HTTP answer will do;
    a TLS problem is left to MLflow, which may be set up to accept what this check would not."""
    import ssl
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError as exc:
        raise UserError(f"tracking server {shown(uri)}: not a URL ({exc})") from None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    probe = parts._replace(netloc=netloc, path=parts.path.rstrip("/") + "/health", query="").geturl()
    try:
        urllib.request.urlopen(probe, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answers
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return
        raise UserError(
            f"tracking server {shown(uri)} does not answer ({reason}); start it, or leave out --tracking-uri "
            "for the study's own store"
        ) from None


def _check_given_stores(args: argparse.Namespace) -> None:
    """What the user pointed lrbench at, checked; the embedded defaults are created as needed."""
    if getattr(args, "storage", None) and "://" in args.storage:
        check_database("storage", args.storage)
    uri: str = getattr(args, "tracking_uri", None) or ""
    if is_tracking_server(uri):
        check_tracking_server(uri)
    elif uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):  # MLflow's DBs
        check_database("tracking store", uri)


def cmd_study(args: argparse.Namespace) -> int:
    from bench.tracking import start_tracker

    cfg, loc = _study_locations(args)
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials must be at least 1, got {args.n_trials}")
    _check_given_stores(args)
    where = f"storage {shown(loc.storage)}, tracking {shown(loc.tracking_uri)}"
    print(f"study {cfg.name}: {where}", file=sys.stderr)
    tracker = start_tracker(cfg, loc)  # before importing optuna and the engines: MLflow opens meanwhile
    try:
        try:
            from bench.study import run_study

            outcome = run_study(cfg, loc, n_trials=args.n_trials, tracker=tracker)
            print(_publish(cfg, loc, tracker))
        finally:
            tracker.close()
    except TrackingServerDown as exc:
        spooled = len(tracker.spooled())
        kept = " and in MLflow"
        if spooled:
            kept = f"; what MLflow does not have yet of {spooled} trial(s) is kept under {tracker.spool}"
        raise UserError(
            f"{exc}, and the study stopped. The trials that ended are in the study{kept}. Run the same "
            f"command again once the server answers{': that is written first,' if spooled else ','} and "
            "the study goes on"
        ) from None
    if outcome.interrupted:
        print(
            f"lrbench: interrupted after {outcome.ran} trial(s) in this run; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    where = f" --tracking-uri {shown(args.tracking_uri)}" if args.tracking_uri else ""
    where += f" --output {args.output}" if args.output and not args.tracking_uri else ""
    print(f"compare the runs: lrbench ui --study {args.study}{where}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cfg, loc = _study_locations(args)
    _check_given_stores(args)
    print(_publish(cfg, loc))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import shutil
    import socket

    from bench.tracking import experiment_id

    if args.study:
        cfg, loc = _study_locations(args)  # the study's own store, or the --tracking-uri given
        uri, name = loc.tracking_uri, cfg.name
    elif args.tracking_uri:
        uri, name = args.tracking_uri, None
    else:
        raise UserError("give --study STUDY.yaml or --tracking-uri URI")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    server = is_tracking_server(uri)
    if server:
        check_tracking_server(uri)
    exp = experiment_id(uri, name) if name else None
    page = f"#/experiments/{exp}?workflowType=machine_learning" if exp else ""
    if server:  # a tracking server serves the UI itself: nothing to start
        print(f"the tracking server serves the MLflow UI: {shown(uri.rstrip('/'))}/{page}")
        return 0
    mlflow = (
        shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow") or "mlflow"
    )
    cmd = [mlflow, "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)]
    cmd += ["--workers", str(args.workers)]
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            raise UserError(f"port {args.port} is in use on 127.0.0.1; choose another with --port")
    print(f"starting the MLflow UI on 127.0.0.1:{args.port} ...", file=sys.stderr, flush=True)
    return _serve(cmd, f"http://127.0.0.1:{args.port}/{page}", args.port)


def _serve(cmd: list[str], address: str, port: int) -> int:
    """Run the server until it stops or lrbench is stopped; the address is printed once it answers.

    The server (MLflow's command, uvicorn and its workers) runs in a process group of its own, which
    lrbench stops as a whole on Ctrl-C, kill (SIGTERM) or a closed terminal (SIGHUP): a signal to MLflow's
    command alone would leave uvicorn serving."""
    import contextlib
    import os
    import signal
    import subprocess

    server = subprocess.Popen(cmd, start_new_session=True)
    handlers = {
        sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        if _answers(server, port):
            print(f"MLflow UI on {address}  (Ctrl-C stops it)", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):  # uvicorn shuts down on SIGTERM as on SIGINT
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        return 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _answers(server: Any, port: int) -> bool:
    """Wait until the server answers HTTP on the port (MLflow's server takes 10 to 20 s to start here), so
    that the address is printed when it can be opened; False if the server exits first (its own error,
    such as a port in use, is on stderr)."""
    import time
    import urllib.error
    import urllib.request

    while server.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return True
        except urllib.error.HTTPError:  # an answer all the same
            return True
        except OSError:  # not listening yet
            time.sleep(0.25)
    return False


# --- parser -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrbench", description="Compare PyTorch learning-rate schedules.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("schedules", help="list the schedule families, their arguments and defaults")
    p.set_defaults(func=cmd_schedules)

    p = sub.add_parser("schedule", help="preview a schedule's LR curve without training")
    p.add_argument("name", help="a family from `lrbench schedules`")
    p.add_argument("--set", action="append", metavar="ARG=VALUE", help="a scheduler argument (repeatable)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=1)
    p.add_argument("--format", choices=("table", "csv"), default="table")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the curve to a PNG")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("train", help="train one trial and print its metrics")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="breast_cancer, wine, digits, iris or synthetic")
    source.add_argument("--csv", metavar="PATH", help="a CSV file of numeric features and a target column")
    p.add_argument("--target", metavar="COLUMN", help="the target column of --csv")
    p.add_argument("--drop", action="append", metavar="COLUMN", help="a --csv column to ignore (repeatable)")
    p.add_argument(
        "--label-map", metavar="JSON", help='map target values to classes, e.g. \'{"M": 1, "B": 0}\''
    )
    p.add_argument("--scheduler", default="constant")
    p.add_argument("--set", action="append", metavar="ARG=VALUE", help="a scheduler argument (repeatable)")
    p.add_argument("--optimizer", default="adam", help="sgd (momentum 0.9), adam or adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 32], help="hidden layer sizes")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("study", help="run (or resume) a study: Optuna trials, MLflow runs, leaderboards")
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("--n-trials", type=int, help="COMPLETE + PRUNED trials to reach (default: the study's)")
    p.add_argument(
        "--storage", metavar="URL", help="Optuna storage (default: a journal file under the output)"
    )
    p.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow tracking URI (default: sqlite under the output)"
    )
    p.add_argument("--output", metavar="DIR", help="results root (default: the study's, results/)")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("export", help="rebuild a study's leaderboard CSVs and figure from storage")
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("--storage", metavar="URL")
    p.add_argument("--tracking-uri", metavar="URI")
    p.add_argument("--output", metavar="DIR")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "ui",
        help="start the MLflow UI on 127.0.0.1 over a study's store (for a tracking server: its address)",
    )
    p.add_argument("--study", metavar="STUDY.yaml", help="open this study's experiment")
    p.add_argument("--tracking-uri", metavar="URI")
    p.add_argument("--output", metavar="DIR")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default 1, which starts in about half the time of MLflow's 4 here)",
    )
    p.set_defaults(func=cmd_ui)

    return parser


def _positive(args: argparse.Namespace) -> None:
    for name in ("epochs", "steps_per_epoch", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    lr = getattr(args, "lr", None)
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"--lr must be a positive number, got {lr}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        _positive(args)
        return func(args)
    except UserError as exc:
        print(f"lrbench: error: {exc}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
