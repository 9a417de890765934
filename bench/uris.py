"""Storage URLs and tracking URIs as lrbench tells them apart and prints them."""

from __future__ import annotations

from urllib.parse import urlsplit

# MLflow's own database stores, by the scheme of their URI (``postgresql+psycopg://`` counts as postgresql).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def shown(uri: str) -> str:
    """A storage URL or tracking URI as lrbench prints it: a password in it is masked."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def is_tracking_server(uri: str) -> bool:
    """An MLflow tracking server (http or https), as opposed to a store MLflow opens itself."""
    return uri.split(":", 1)[0] in ("http", "https")


def is_database(uri: str) -> bool:
    """A database URL (SQLAlchemy's form), as opposed to a file path or a server."""
    return uri.split(":", 1)[0].split("+", 1)[0] in DATABASE_SCHEMES


def sqlite_path(uri: str) -> str | None:
    """The file of a ``sqlite:///`` URI, else None."""
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
