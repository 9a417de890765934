"""What the ranking's tie procedure can detect: over simulated studies of ``families`` x ``seeds`` paired
scores (a seed effect shared by every family plus each run's own noise, both normal), how often any family
is declared worse than another when none is (false alarms), and how often one family lowered by ``shift``
standard deviations of a run's noise is declared not tied for best (power)."""

from __future__ import annotations

import numpy as np

from bench.analysis import stats


def rates(families: int, seeds: int, shift: float, sims: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    anything = found = 0
    for sim in range(sims):
        scores = rng.normal(size=(1, seeds)) * 0.5 + rng.normal(size=(families, seeds))
        scores[0] -= shift
        _, tied = stats.ranks(scores, seed=sim)
        anything += not tied.all()
        found += not tied[0]
    return anything / sims, found / sims


def power_table(
    families: tuple[int, ...], seeds: tuple[int, ...], shifts: tuple[float, ...], sims: int
) -> str:
    head = f"{'families':>8} {'seeds':>5} " + " ".join(f"{f'{s:g} SD':>7}" for s in shifts) + "  false alarms"
    lines = [head, "-" * len(head)]
    for k in families:
        for n in seeds:
            found = [rates(k, n, s, sims)[1] for s in shifts]
            null = rates(k, n, 0.0, sims, seed=1)[0]
            lines.append(f"{k:>8} {n:>5} " + " ".join(f"{p:7.0%}" for p in found) + f"  {null:12.1%}")
    lines.append(
        f"\n{sims} simulated studies per cell; a cell: the share in which the family lowered by that many "
        "standard deviations (of one run's noise) was found not tied for best; false alarms: the share of "
        f"studies with no difference in which any family was declared worse (alpha {stats.ALPHA})"
    )
    return "\n".join(lines)
