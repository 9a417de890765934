"""Storage URLs and tracking URIs as lrbench tells them apart and prints them."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

# MLflow's own database stores, by the scheme of their URI (``postgresql+psycopg://`` counts as postgresql).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
MASK = "***"
# Query parameters that carry a secret: libpq's password and sslpassword, MySQL drivers' passwd, tokens...
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|credential|api_?key|access_?key", re.IGNORECASE)
_PARAM = re.compile(r"(?P<lead>^|[&;])(?P<name>[^=&;#]*)=(?P<value>[^&;#]*)")


def _userinfo(netloc: str) -> tuple[str, str | None, str]:
    """(user, password or None, host) of a netloc; the password is what follows the first ``:`` of the
    part before the last ``@`` (the way urllib splits it)."""
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return "", None, netloc
    user, colon, password = userinfo.partition(":")
    return user, password if colon else None, host


def secrets(uri: str) -> list[str]:
    """Every secret a URL carries (a password in its user info, a password or token in its query), as
    written and percent-decoded."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return []
    found = []
    _, password, _ = _userinfo(parts.netloc)
    if password:
        found.append(password)
    for m in _PARAM.finditer(parts.query):
        if _SECRET_PARAM.search(m["name"]) and m["value"]:
            found.append(m["value"])
    return sorted({s for raw in found for s in (raw, unquote(raw)) if s}, key=len, reverse=True)


def shown(uri: str) -> str:
    """A storage URL or tracking URI as lrbench prints it: every secret in it (``user:PASSWORD@``,
    ``?password=``, ``&sslpassword=``, a token) masked."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # not a URL that urllib can split (an unbalanced IPv6 bracket): masked as text
        return scrub(uri, uri)
    # Edited in place rather than rebuilt: urllib's geturl() drops the empty host of sqlite:////abs/path.
    shown_uri = uri
    user, password, host = _userinfo(parts.netloc)
    if password is not None:
        shown_uri = shown_uri.replace(f"//{parts.netloc}", f"//{user}:{MASK}@{host}", 1)
    query = _PARAM.sub(
        lambda m: f"{m['lead']}{m['name']}={MASK}" if _SECRET_PARAM.search(m["name"]) else m[0], parts.query
    )
    if query != parts.query:
        shown_uri = shown_uri.replace(f"?{parts.query}", f"?{query}", 1)
    return shown_uri


def scrub(text: str, *uris: str | None) -> str:
    """``text`` with every secret of ``uris`` masked wherever it appears (an error message that quotes a
    URL, or a driver's error)."""
    for uri in uris:
        for secret in secrets(uri or ""):
            text = text.replace(secret, MASK)
    return text


def scheme(uri: str) -> str:
    """The scheme of a URL without its driver (``postgresql+psycopg`` is ``postgresql``); "" for a path."""
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def is_tracking_server(uri: str) -> bool:
    """An MLflow tracking server (http or https), as opposed to a store MLflow opens itself."""
    return uri.split(":", 1)[0] in ("http", "https")


def is_database(uri: str) -> bool:
    """A database URL (SQLAlchemy's form), as opposed to a file path or a server."""
    return uri.split(":", 1)[0].split("+", 1)[0] in DATABASE_SCHEMES


def sqlite_path(uri: str) -> str | None:
    """The file of a ``sqlite:///`` URI, else None."""
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
