"""Performance profiles over the tasks of a suite, and their area as a score (AlgoPerf).

As mlcommons/algorithmic-efficiency defines them (``scoring/performance_profile.py``,
``compute_performance_profiles``; ``scoring/score_submissions.py``, ``compute_leaderboard_score``):

- On each task, a family's cost (lower is better) is divided by the lowest cost on that task (AlgoPerf's
  ``df.div(df.min(axis=0))``): the ratio is 1 for the best, and infinite for a family that never gets
  there (AlgoPerf's ``inf`` time for a missed target).
- ``rho_f(tau)``: the fraction of tasks on which the family's ratio is at most ``tau``.
- The grid: 100 points evenly spaced over ``tau`` in [1, 4] (``min_tau=1.0, max_tau=4.0, num_points=100,
  scale='linear'`` in ``score_submissions.py``).
- The score: the trapezoidal integral of the profile over the grid divided by the grid's range
  (``compute_leaderboard_score(normalize=True)``), so 1 is "best on every task" and 0 "never within
  ``tau_max`` of the best".

Where this differs:

- A best cost of 0 (an error rate of 0 on a small test set): the families also at 0 have ratio 1, the
  others infinity. AlgoPerf's division gives 0/0 = NaN there, which ``DataFrame.update`` skips, so the same
  families end up counted and the others not; here it is stated rather than inherited.
- A task on which no family reaches the target counts as infinite for every family (as in AlgoPerf).
- AlgoPerf divides by a fixed number of workloads; here by the number of tasks given.
- Ratios equal to 12 decimals are equal (the same scores averaged in another order are a tie for best).
- AlgoPerf also sets a ratio above 4 to infinity; on a grid that ends at 4 that changes no fraction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import integrate

TAUS = np.linspace(1.0, 4.0, 100)
PROFILE_COLUMNS = ["kind", "family", "tau", "fraction"]


def cost_ratios(costs: pd.DataFrame) -> pd.DataFrame:
    """Tasks x families costs (lower is better; NaN or inf: never reached) -> each cost over the lowest
    cost on its task: 1 for the best, inf for a family that never reaches, and for a best cost of 0, 1 for
    the families also at 0 and inf for the others."""
    c = costs.to_numpy(dtype=float, copy=True)
    c[~np.isfinite(c)] = np.inf
    if (c < 0).any():
        rows, cols = np.nonzero(c < 0)
        where = ", ".join(f"{costs.index[i]}/{costs.columns[j]}" for i, j in zip(rows, cols, strict=True))
        raise ValueError(f"a cost must be 0 or more to be divided by the best one; negative at {where}")
    best = c.min(axis=1, keepdims=True) if c.size else c
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = c / best
    ratio = np.where(np.isfinite(c) & (c == best), 1.0, ratio)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    return pd.DataFrame(np.round(ratio, 12), index=costs.index, columns=costs.columns)


def _grid(taus: Sequence[float] | np.ndarray) -> np.ndarray:
    t = np.asarray(taus, dtype=float)
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0) or t[0] < 1:
        raise ValueError(f"taus must be 2 or more increasing values from 1 up, got {list(t)}")
    return t


def performance_profile(ratios: pd.DataFrame, taus: Sequence[float] | np.ndarray = TAUS) -> pd.DataFrame:
    """Families x taus: the fraction of tasks (rows of ``ratios``) on which the family's ratio is <= tau."""
    t = _grid(taus)
    r = ratios.to_numpy(dtype=float)
    fraction = (r[:, :, None] <= t[None, None, :]).mean(axis=0)
    return pd.DataFrame(fraction, index=ratios.columns, columns=pd.Index(t, name="tau"))


def profile_area(profile: pd.DataFrame) -> pd.Series:
    """Per family, the area under its profile over the grid (trapezoidal rule) over the grid's range: in
    [0, 1]."""
    t = profile.columns.to_numpy(dtype=float)
    area = integrate.trapezoid(profile.to_numpy(dtype=float), x=t, axis=1) / (t[-1] - t[0])
    return pd.Series(area, index=profile.index, name="area")


def profiles_long(profiles: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Profiles by kind (families x taus each) as one long table: kind, family, tau, fraction."""
    parts = [
        pd.DataFrame(
            {
                "kind": kind,
                "family": np.repeat(profile.index.to_numpy(dtype=object), profile.shape[1]),
                "tau": np.tile(profile.columns.to_numpy(dtype=float), profile.shape[0]),
                "fraction": profile.to_numpy(dtype=float).ravel(),
            }
        )
        for kind, profile in profiles.items()
    ]
    if not parts:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    return pd.concat(parts, ignore_index=True)
