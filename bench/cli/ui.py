"""``lrbench ui``: the MLflow UI over a study's store, started on 127.0.0.1 (or a tracking server's own
address)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from bench.cli.signals import stop_as_ctrl_c
from bench.cli.stores import check_folder, check_tracking
from bench.cli.study import study_locations
from bench.config import StudyConfig
from bench.errors import UserError
from bench.tracking.names import test_metric, val_metric_key
from bench.uris import is_tracking_server, shown

if TYPE_CHECKING:
    from bench.tracking.local_server import LocalServer

DEFAULT_STUDY = Path("studies", "breast_cancer.yaml")  # from the current folder, as `make study` runs it
# MLflow's UI opens on its GenAI view unless an address says otherwise; lrbench's runs are training runs.
MACHINE_LEARNING = "workflowType=machine_learning"


def ui_page(experiment: str | None) -> str:
    """The UI's page (after the server's address and a slash): the experiment's runs where there is one,
    the list of experiments where not; always in MLflow's view for training runs."""
    where = f"experiments/{experiment}" if experiment else "experiments"
    return f"#/{where}?{MACHINE_LEARNING}"


def views(experiment: str, cfg: StudyConfig) -> list[tuple[str, str]]:
    """Pages of the study's runs that open flat (the filter leaves the parent run out, so its children are
    not folded under it) and sorted: the ranking, one run per family, best first; and the search's trials,
    best first."""
    ascending = cfg.direction == "minimize"  # a loss or an RMSE: lower is better
    test, val = test_metric(cfg.objective.metric), val_metric_key(cfg.objective.metric)

    def page(search: str, key: str) -> str:
        query = {"searchFilter": search, "orderByKey": key, "orderByAsc": str(ascending).lower()}
        return f"#/experiments/{experiment}/runs?{MACHINE_LEARNING}&{urlencode(query, quote_via=quote)}"

    return [
        ("the ranking, a run per family", page("tags.`lrbench.role` = 'family'", f"metrics.`{test}_mean`")),
        ("the search's trials", page("tags.`lrbench.stage` = 'search'", f"metrics.`{val}`")),
    ]


def cmd_ui(args: argparse.Namespace) -> int:
    from bench.tracking.client import experiment_id
    from bench.tracking.local_server import LocalServer, port_in_use

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if not args.study and not args.tracking_uri:
        if not DEFAULT_STUDY.is_file():
            raise UserError(
                f"no --study given, and the default study {DEFAULT_STUDY} is not in {Path.cwd()}: "
                "give --study STUDY.yaml or --tracking-uri URI"
            )
        args.study = str(DEFAULT_STUDY)
    cfg: StudyConfig | None = None
    if args.study:
        cfg, loc = study_locations(args)  # the study's own store, or the --tracking-uri given
        uri, name = loc.tracking_uri, cfg.name
        if not args.tracking_uri:  # the study's own store, which mlflow server writes in
            check_folder("--output" if args.output else "output", loc.root)
    else:
        uri, name = args.tracking_uri, None
    # The store must be there: MLflow would make an empty one (a study's, under the output) to show.
    check_tracking(uri, given=bool(args.tracking_uri))
    server = is_tracking_server(uri)
    exp = experiment_id(uri, name) if name else None
    page = ui_page(exp)
    more = views(exp, cfg) if exp and cfg else []
    if server:  # a tracking server serves the UI itself: nothing to start
        base = shown(uri.rstrip("/"))
        print(f"the tracking server serves the MLflow UI: {base}/{page}")
        for what, view in more:
            print(f"  {what}: {base}/{view}")
        return 0
    if port_in_use(args.port):
        raise UserError(f"port {args.port} is in use on 127.0.0.1; choose another with --port")
    print(f"starting the MLflow UI on 127.0.0.1:{args.port} ...", file=sys.stderr, flush=True)
    return _serve(LocalServer(uri, args.port, args.workers), page, more)


def _serve(server: LocalServer, page: str, more: list[tuple[str, str]]) -> int:
    """Run the server until it stops or lrbench is stopped (Ctrl-C, kill's SIGTERM or a closed terminal's
    SIGHUP, which stop the server's whole process group); the address is printed once it answers."""
    with stop_as_ctrl_c():
        try:
            server.start()
            if server.wait_until_answering():
                print(f"MLflow UI on {server.url}/{page}  (Ctrl-C stops it)")
                for what, view in more:
                    print(f"  {what}: {server.url}/{view}")
                sys.stdout.flush()
            return server.wait()
        except KeyboardInterrupt:
            server.stop()
            return 0
