"""What the user points lrbench at (the output folder, a storage URL, a tracking URI) is checked before
anything is created: one line naming what is wrong, instead of a traceback after MLflow's client has
retried for minutes, or a half-made output. No check creates anything: a SQLite database is looked at as a
file, never opened (opening one creates it)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.config import Locations, StudyConfig
from bench.errors import UserError
from bench.journal import check_records
from bench.uris import DATABASE_SCHEMES, is_database, is_tracking_server, scheme, shown

# The package that brings each database driver SQLAlchemy imports (SQLAlchemy 2.1 takes psycopg 3 for a
# plain postgresql:// URL, psycopg2 for postgresql+psycopg2://).
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "pyodbc": "pyodbc",
}
SQLITE_HEADER = b"SQLite format 3\x00"


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
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
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
    if not host:
        raise UserError(f"tracking server {shown(uri)}: not a URL (no host)")
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    probe = parts._replace(netloc=netloc, path=parts.path.rstrip("/") + "/health", query="").geturl()
    try:
        urllib.request.urlopen(probe, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answers
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return
        raise UserError(
            f"tracking server {shown(uri)} does not answer ({reason}); start it, or leave out --tracking-uri "
            "for the study's own store"
        ) from None


def check_folder(what: str, path: Path) -> None:
    """``path`` is a folder lrbench can make (or has) and write in: no file in its place or above it,
    the nearest folder that exists writable (os.access also says no on a read-only file system)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = f"{path} is" if existing == path else f"{path}: {existing} is"
        raise UserError(f"{what} {where} a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{what} {path}: cannot write in {existing} (no permission, or a read-only file system)"
        )


def _sqlite_file(what: str, url: str, given: bool, existing: bool) -> None:
    """A ``sqlite:`` URL, looked at as a file: its folder exists (``given``: the user's; the default's is
    the output folder, which the study makes) and is writable, the file (where there is one) is a SQLite
    database; ``existing``: it must be there already (a command that reads a study)."""
    import sqlalchemy

    try:
        database = sqlalchemy.engine.make_url(url).database
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise UserError(f"{what} {shown(url)}: not a database URL ({exc})") from None
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # in memory, or SQLite's own URI form: left to SQLite
    path = Path(database)
    if path.is_dir():
        raise UserError(f"{what} {shown(url)}: {path} is a folder, not a database file")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise UserError(f"{what} {shown(url)}: {path} is not a SQLite database")
    elif existing:
        raise UserError(f"no {what} at {path}; run `lrbench study` first")
    elif not given:
        return  # under the output folder, checked on its own
    elif not path.parent.is_dir():
        # The words SQLite would give, and why.
        raise UserError(
            f"{what} {shown(url)}: cannot connect (unable to open database file): its folder "
            f"{path.parent} does not exist"
        )
    check_folder(what, path.parent)


def _storage(url: str, given: bool, existing: bool) -> None:
    if "://" in url:
        if scheme(url) == "sqlite":
            _sqlite_file("storage", url, given, existing)
        elif scheme(url) in DATABASE_SCHEMES:
            check_database("storage", url)
        else:
            raise UserError(
                f"storage {shown(url)}: not a storage lrbench can use; give a journal file's path or a "
                "database URL (sqlite:///PATH, postgresql://..., mysql://...)"
            )
        return
    path = Path(url)
    if path.is_dir():
        raise UserError(f"storage {url} is a folder; give the journal file's path")
    if existing and not path.is_file():
        raise UserError(f"no study storage at {url}; run `lrbench study` first")
    check_records(path)  # a damaged record: named now, before anything is created
    if given and not path.parent.is_dir():  # the default's folder is the output, made by the study
        raise UserError(f"storage {url}: its folder {path.parent} does not exist; create it first")
    if given:
        check_folder("storage", path.parent)


def _tracking(uri: str, given: bool, existing: bool) -> None:
    if is_tracking_server(uri):
        check_tracking_server(uri)
    elif scheme(uri) == "sqlite":
        _sqlite_file("tracking store", uri, given, existing)
    elif is_database(uri):  # MLflow's database stores
        check_database("tracking store", uri)
    else:
        raise UserError(
            f"tracking URI {shown(uri)}: not one lrbench can use; give a tracking server (http://HOST:PORT) "
            "or a database URL (sqlite:///PATH, postgresql://..., mysql://..., mssql://...)"
        )


def check_given(args: argparse.Namespace, cfg: StudyConfig, loc: Locations, existing: bool = False) -> None:
    """The output folder, the storage and the tracking store of a command, checked without creating any
    of them. ``existing``: the command reads a study (export), so its stores must be there already."""
    root = loc.root
    check_folder("--output" if args.output else "output", root)
    for path in (loc.results_dir(cfg), loc.spool(cfg).parent):
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file, not a folder; lrbench keeps a study's results there")
    _storage(loc.storage, bool(getattr(args, "storage", None)), existing)
    _tracking(loc.tracking_uri, bool(getattr(args, "tracking_uri", None)), existing)
    _both_or_neither(loc)


def _both_or_neither(loc: Locations) -> None:
    """A journal that holds studies beside a local MLflow store that is gone: the runs and curves of its
    trials are lost with it, and a study run now would make a new store that lacks them. Said as it is."""
    journal = Path(loc.storage)
    if "://" in loc.storage or not journal.is_file() or journal.stat().st_size == 0:
        return
    if scheme(loc.tracking_uri) != "sqlite":
        return
    store = Path(loc.tracking_uri.split(":///", 1)[-1])
    if not store.exists():
        raise UserError(
            f"{journal} holds trials, but the MLflow store beside it, {store}, is missing: their runs and "
            "curves were there. Put it back, or give another --output (or move the journal away) to start "
            "anew"
        )


def check_tracking(uri: str, given: bool) -> None:
    """The tracking store that ``lrbench ui`` shows: a server that answers, or a store that is there."""
    _tracking(uri, given, existing=True)
