"""``lrbench ui``: the MLflow UI over a study's store, started on 127.0.0.1 (or a tracking server's own
address)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bench.cli.signals import stop_as_ctrl_c
from bench.cli.stores import check_folder, check_tracking
from bench.cli.study import study_locations
from bench.errors import UserError
from bench.uris import is_tracking_server, shown

if TYPE_CHECKING:
    from bench.tracking.local_server import LocalServer


def cmd_ui(args: argparse.Namespace) -> int:
    from bench.tracking.client import experiment_id
    from bench.tracking.local_server import LocalServer, port_in_use

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.study:
        cfg, loc = study_locations(args)  # the study's own store, or the --tracking-uri given
        uri, name = loc.tracking_uri, cfg.name
        if not args.tracking_uri:  # the study's own store, which mlflow server writes in
            check_folder("--output" if args.output else "output", loc.root)
    elif args.tracking_uri:
        uri, name = args.tracking_uri, None
    else:
        raise UserError("give --study STUDY.yaml or --tracking-uri URI")
    # The store must be there: MLflow would make an empty one (a study's, under the output) to show.
    check_tracking(uri, given=bool(args.tracking_uri))
    server = is_tracking_server(uri)
    exp = experiment_id(uri, name) if name else None
    page = f"#/experiments/{exp}?workflowType=machine_learning" if exp else ""
    if server:  # a tracking server serves the UI itself: nothing to start
        print(f"the tracking server serves the MLflow UI: {shown(uri.rstrip('/'))}/{page}")
        return 0
    if port_in_use(args.port):
        raise UserError(f"port {args.port} is in use on 127.0.0.1; choose another with --port")
    print(f"starting the MLflow UI on 127.0.0.1:{args.port} ...", file=sys.stderr, flush=True)
    return _serve(LocalServer(uri, args.port, args.workers), page)


def _serve(server: LocalServer, page: str) -> int:
    """Run the server until it stops or lrbench is stopped (Ctrl-C, kill's SIGTERM or a closed terminal's
    SIGHUP, which stop the server's whole process group); the address is printed once it answers."""
    with stop_as_ctrl_c():
        try:
            server.start()
            if server.wait_until_answering():
                print(f"MLflow UI on {server.url}/{page}  (Ctrl-C stops it)", flush=True)
            return server.wait()
        except KeyboardInterrupt:
            server.stop()
            return 0
