"""Which hyperparameters mattered, per family: Optuna's fANOVA evaluator on that family's own completed
trials. Over a joint study's conditional space Optuna's own view ranks a family's arguments against the
family choice itself; per family, each argument is compared with the others it was drawn with."""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

MIN_TRIALS = 3  # fewer completed trials say nothing about importance
# Optuna's default is 64 trees; every study's end pays for each family. On a family's ten or so trials the
# order is rough either way (`python -m perf importance` on the default study): changing only the forest's
# seed at 64 trees reorders 7 or 8 of the 17 families; 16 trees reorder 10, name the same top argument as
# often as another seed does (14 of 17), and take about a third of the time.
N_TREES = 16


def _common(dists: list[BaseDistribution]) -> BaseDistribution | None:
    """One distribution that holds every trial's value of a parameter: a range whose bounds depend on
    another argument (eta_min below the base LR, say) differs from trial to trial, and fANOVA needs one
    space. None: the parameter has no such range (it changed kind)."""
    first = dists[0]
    if all(d == first for d in dists):
        return first
    floats = [d for d in dists if isinstance(d, FloatDistribution) and d.step is None]
    if len(floats) == len(dists) and len({d.log for d in floats}) == 1:
        return FloatDistribution(min(d.low for d in floats), max(d.high for d in floats), log=floats[0].log)
    ints = [d for d in dists if isinstance(d, IntDistribution) and d.step == 1]
    if len(ints) == len(dists) and len({d.log for d in ints}) == 1:
        return IntDistribution(min(d.low for d in ints), max(d.high for d in ints), log=ints[0].log)
    return None


def _varied(trials: list[FrozenTrial], name: str, dist: BaseDistribution) -> bool:
    if isinstance(dist, CategoricalDistribution) and len(dist.choices) < 2:
        return False
    return len({repr(t.params[name]) for t in trials}) > 1


def by_family(
    trials: Sequence[FrozenTrial], direction: StudyDirection, n_trees: int = N_TREES, seed: int = 0
) -> dict[str, dict[str, float]]:
    """family -> {parameter: importance (summing to 1)}, for each family with at least MIN_TRIALS completed
    trials, two values among them and at least one parameter that varied; seeded, so the same trials give
    the same answer."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None:
            groups.setdefault(str(t.params.get("scheduler")), []).append(t)
    out: dict[str, dict[str, float]] = {}
    for family, mine in sorted(groups.items()):
        # fANOVA explains the variance of the values: with one value (every trial tied, as accuracy often
        # is on small data) there is none, and Optuna's evaluator refuses.
        if len(mine) < MIN_TRIALS or len({t.value for t in mine}) < 2:
            continue
        names = sorted(set.intersection(*(set(t.params) for t in mine)) - {"scheduler"})
        common = {n: _common([t.distributions[n] for t in mine]) for n in names}
        space = {n: d for n, d in common.items() if d is not None and _varied(mine, n, d)}
        if not space:
            continue
        study = optuna.create_study(direction=direction)
        study.add_trials(
            optuna.trial.create_trial(
                params={n: t.params[n] for n in space}, distributions=space, value=t.value
            )
            for t in mine
        )
        values = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=n_trees, seed=seed)
        )
        out[family] = {k: float(v) for k, v in values.items()}
    return out
