"""What the user points lrbench at (a storage URL, a tracking URI) is checked before anything is created:
one line naming what is wrong, instead of a traceback after MLflow's client has retried for minutes."""

from __future__ import annotations

import argparse

from bench.errors import UserError
from bench.uris import is_database, is_tracking_server, shown

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


def check_given(args: argparse.Namespace) -> None:
    """What the user pointed lrbench at, checked; the embedded defaults are created as needed."""
    if getattr(args, "storage", None) and "://" in args.storage:
        check_database("storage", args.storage)
    uri: str = getattr(args, "tracking_uri", None) or ""
    if is_tracking_server(uri):
        check_tracking_server(uri)
    elif is_database(uri):  # MLflow's database stores
        check_database("tracking store", uri)
