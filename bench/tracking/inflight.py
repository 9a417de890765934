"""Requests to a tracking server, several at once.

A tracking server answers each request after a round trip, and ``mlflow server``'s default (uvicorn with
several workers) adds about 40 ms to every request on a kept-alive connection on Linux: its sockets leave
Nagle's algorithm on, and the response body waits for the client's delayed ACK (uvicorn issue 3149). One
request at a time, a trial's run and writes took about 230 ms here. So against a server, runs are created
and finished trials written by up to ``REQUESTS`` requests at once: the default study runs 2x as fast as
with one at a time here (``make perf-server``), and more is to be had where the round trip is longer.
``LRBENCH_TRACKING_REQUESTS`` sets how many (1: one at a time). A database store is written one request
at a time (SQLite takes one writer anyway, and its work holds the GIL)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from bench.tracking.server import requests_setting

T = TypeVar("T")
U = TypeVar("U")

# Within MLflow's HTTP connection pool (MLFLOW_HTTP_POOL_MAXSIZE, 10 by default).
REQUESTS = 8


class InFlight:
    """Up to ``REQUESTS`` requests at once against a server; one at a time, in the caller, otherwise."""

    def __init__(self, server: bool):
        self.requests = requests_setting(REQUESTS) if server else 1
        self._threads = (
            ThreadPoolExecutor(self.requests, thread_name_prefix="lrbench-mlflow") if server else None
        )
        self._behind: list[Future[None]] = []  # writes in flight (write_behind)

    def write_behind(self, write: Callable[[], None]) -> bool:
        """Against a tracking server, ``write`` is made by one of the requests at once, and this returns
        True as soon as it has a place (after raising the first error of the writes before it); for a
        database store it returns False and the caller writes. Writes made this way must not depend on
        each other's order: :meth:`wait_behind` is the barrier."""
        if self._threads is None:
            return False
        self._collect(block=len(self._behind) >= self.requests)
        self._behind.append(self._threads.submit(write))
        return True

    def wait_behind(self) -> None:
        """Every write in flight is made; the first that failed is raised (the others are waited for)."""
        while self._behind:
            self._collect(block=True)

    def _collect(self, block: bool) -> None:
        if block and self._behind:
            wait(self._behind, return_when=FIRST_COMPLETED)
        done = [f for f in self._behind if f.done()]
        self._behind = [f for f in self._behind if not f.done()]
        errors = [e for f in done if (e := f.exception()) is not None]
        if errors:
            wait(self._behind)  # none is left half-done behind the error
            self._behind = []
            raise errors[0]

    def each(self, request: Callable[[U], T], items: Sequence[U]) -> list[T]:
        """``request`` made for each item, the answers in order: against a server, several at once."""
        if self._threads is None or len(items) < 2:
            return [request(item) for item in items]
        return list(self._threads.map(request, items))
