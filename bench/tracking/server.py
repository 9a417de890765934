"""A tracking server that is slow or stops answering: what the user is told, and when lrbench gives up."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Iterator

from bench.errors import UserError
from bench.uris import shown

NOTICE_AFTER = 10.0  # seconds a request goes unanswered before the user is told (a healthy server is faster)


def requests_setting(default: int) -> int:
    """How many requests the writer keeps in flight against a server (``LRBENCH_TRACKING_REQUESTS``)."""
    text = os.environ.get("LRBENCH_TRACKING_REQUESTS", "")
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"LRBENCH_TRACKING_REQUESTS must be a whole number of at least 1, got {text!r}")
    return int(text)


def no_answer(exc: BaseException) -> str | None:
    """Where ``exc`` is MLflow giving up on a tracking server that does not answer (no connection, or no
    response in time, after its retries), the innermost reason; else None."""
    import requests

    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if not any(isinstance(e, (requests.ConnectionError, requests.Timeout)) for e in chain):
        return None
    # The system's own error where there is one (urllib3 keeps some in its exceptions' arguments).
    found = [e for link in chain for e in (link, *link.args) if isinstance(e, OSError) and e.errno]
    return str(found[-1] if found else chain[-1]) or type(chain[-1]).__name__


def stopped_answering(tracking_uri: str, exc: BaseException) -> str | None:
    """Where ``exc`` is MLflow giving up on the tracking server ``tracking_uri`` (:func:`no_answer`), what
    to tell the user; else None."""
    reason = no_answer(exc)
    if reason is None:
        return None
    return f"the tracking server {shown(tracking_uri)} stopped answering ({reason})"


def retry_seconds() -> float:
    """About how long MLflow retries a request that fails before it gives up: urllib3's waits between its
    retries, none before the first, then doubling, at most 120 s each (MLflow's settings)."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    factor, retries = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(), MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    return float(sum(min(factor * 2 ** (n - 1), 120) for n in range(2, retries + 1)))


class RequestWatch:
    """While a request to a tracking server goes unanswered (MLflow retries one that fails for minutes by
    default), the study would print nothing: one line says so, once a request has waited
    :data:`NOTICE_AFTER` seconds, at most once a minute."""

    def __init__(self, tracking_uri: str):
        self.uri = tracking_uri
        self._last = -math.inf
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around one or more requests that are answered together."""
        timer = threading.Timer(NOTICE_AFTER, self._notice)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _notice(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < 60:
                return
            self._last = now
        print(
            f"lrbench: the tracking server {shown(self.uri)} has not answered for {NOTICE_AFTER:g} s; "
            f"MLflow retries a request that fails for about {retry_seconds():.0f} s "
            "(MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR) before lrbench gives up",
            file=sys.stderr,
            flush=True,
        )
