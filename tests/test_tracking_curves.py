"""Curves as MLflow points: the LR curve compacted, and given back exactly."""

from __future__ import annotations

import pytest

from bench import schedules
from bench.tracking.curves import compact_curve, expand_curve


@pytest.mark.parametrize("name", sorted(schedules.SCHEDULES))
def test_compact_lr_curve_interpolates_back_to_every_step(name: str) -> None:
    lrs, _ = schedules.preview(name, {}, lr=0.1, epochs=50, steps_per_epoch=12)
    points = compact_curve(lrs)
    assert expand_curve(points) == pytest.approx(lrs, rel=1e-12, abs=0)
    assert points[0] == (0, lrs[0]) and points[-1] == (len(lrs) - 1, lrs[-1])


def test_compaction_drops_flat_and_linear_stretches() -> None:
    assert compact_curve([1.0] * 100) == [(0, 1.0), (99, 1.0)]
    ramp = [0.1 * i for i in range(50)] + [4.9] * 50  # up to step 49, then flat
    assert [s for s, _ in compact_curve(ramp)] == [0, 49, 99]
    assert compact_curve([]) == [] and compact_curve([2.0]) == [(0, 2.0)]
