"""What a running study shows: a progress bar on a terminal, one line per trial elsewhere (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """A tqdm bar on a terminal; one line per trial otherwise (logs, CI)."""

    def __init__(self, total: int, done: int, name: str, best: bool = True):
        self.total, self.done, self.started = total, done, time.perf_counter()
        self.show_best = best  # the best value so far: the search's (the confirmation ranks at its end)
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=done, desc=name, unit="trial", file=sys.stderr, dynamic_ncols=True
            )

    def update(self, line: str, best: float | None, counted: bool) -> None:
        """One finished trial; only COMPLETE and PRUNED ones count towards the total."""
        self.done += counted
        if self.bar is not None:
            self.bar.set_postfix_str(f"best {best:.4f}" if best is not None else "", refresh=False)
            self.bar.update(int(counted))
            if not counted:
                self.bar.write(line, file=sys.stderr)
            return
        elapsed = time.perf_counter() - self.started
        shown = f"  best {'-' if best is None else f'{best:.4f}'}" if self.show_best else ""
        print(f"[{self.done}/{self.total}] {line}{shown}  {elapsed:.0f}s", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
