"""The torch code the report prints for a family is the family: run as written, it gives the family's own
LR curve (every family, every named function, derived and drawn arguments)."""

from __future__ import annotations

import math

import pytest
import torch

from bench import schedules
from bench.schedules.code import optimizer_code, scheduler_code

EPOCHS, STEPS, LR = 12, 5, 0.1


def _cases() -> list[tuple[str, dict[str, object]]]:
    cases: list[tuple[str, dict[str, object]]] = []
    for name, family in schedules.SCHEDULES.items():
        cases.append((name, {}))
        for arg, spec in family.args.items():
            for choice in spec.choices or ():
                cases.append((name, {arg: choice}))
    # Non-default values where the composition computes from them (the stable phase of wsd, the warmup).
    cases += [
        ("wsd", {"warmup_iters": 7, "decay_iters": 20, "end_factor": 0.05, "warmup_start_factor": 0.2}),
        ("warmup_cosine", {"warmup_iters": 9, "warmup_start_factor": 0.3, "eta_min": 0.001}),
        ("warmup_exponential", {"warmup_iters": 3, "gamma": 0.8}),
        ("ReduceLROnPlateau", {"patience": 1, "factor": 0.5}),
    ]
    return cases


def _run_code(name: str, given: dict[str, object]) -> list[float]:
    family = schedules.get(name)
    horizon = family.horizon(EPOCHS, STEPS, LR)
    snippet = scheduler_code(name, family.resolve(given, horizon), horizon)
    model = torch.nn.Linear(1, 1)
    scope: dict[str, object] = {"torch": torch, "model": model}
    exec(snippet.text(optimizer_code("sgd", LR, 0.0, 0.0)), scope)
    optimizer, scheduler = scope["optimizer"], scope["scheduler"]
    assert isinstance(optimizer, torch.optim.Optimizer)
    lrs = []
    for _epoch in range(EPOCHS):
        for _ in range(STEPS):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if family.per_step:
                scheduler.step()  # type: ignore[attr-defined]
        if not family.per_step:
            schedules.step_scheduler(scheduler, family, 1.0)  # type: ignore[arg-type]
    return lrs


@pytest.mark.parametrize(("name", "given"), _cases(), ids=lambda v: str(v) if isinstance(v, str) else None)
def test_the_printed_code_gives_the_familys_curve(name: str, given: dict[str, object]) -> None:
    expected = schedules.curve(name, given, lr=LR, epochs=EPOCHS, steps_per_epoch=STEPS).lrs
    got = _run_code(name, given)
    assert len(got) == len(expected) == EPOCHS * STEPS
    assert all(
        math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(got, expected, strict=True)
    ), (
        name,
        given,
    )


def test_every_family_has_code_and_names_how_it_steps() -> None:
    for name, family in schedules.SCHEDULES.items():
        horizon = family.horizon(EPOCHS, STEPS, LR)
        snippet = scheduler_code(name, family.resolve({}, horizon), horizon)
        assert snippet.build.startswith("scheduler = ")
        assert snippet.imports[-1].startswith("from torch.optim.lr_scheduler import ")
        assert ("val_loss" in snippet.step) == family.needs_metric
        assert ("every optimizer.step()" in snippet.step) == family.per_step


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_optimizer_code_builds_the_optimizer_a_trial_builds(name: str, weight_decay: float) -> None:
    from bench.train.optimizers import OPTIMIZERS

    model = torch.nn.Linear(2, 1)
    scope: dict[str, object] = {"torch": torch, "model": model}
    exec(optimizer_code(name, 0.003, 0.8, weight_decay), scope)
    printed = scope["optimizer"]
    built = OPTIMIZERS[name](model.parameters(), 0.003, 0.8, weight_decay)
    assert isinstance(printed, type(built))
    assert printed.param_groups[0].keys() == built.param_groups[0].keys()  # type: ignore[attr-defined]
    for key, value in built.param_groups[0].items():
        if key != "params":
            assert printed.param_groups[0][key] == value, (name, key)  # type: ignore[attr-defined]
