"""The population engine against the reference trainer: a contract test over the whole registry."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
import torch

from bench.data import DataConfig, Task, load_task
from bench.model import ACTIVATIONS, ModelConfig, build_mlp, mean_loss
from bench.schedules import SCHEDULES
from bench.train import OPTIMIZERS, TrainConfig, train
from bench.train.population import Joiner, Population, auto_population_size, group_key, train_population

FAMILIES = sorted(SCHEDULES)


# Patience 0 and a 10 % relative threshold: ReduceLROnPlateau reduces whenever the loss improves less.
PLATEAU = {"patience": 0, "threshold": 0.1}


def _cfgs(optimizer: str, epochs: int, lr: float) -> list[TrainConfig]:
    """One member per family, each with its own seed; weight decay too, so that it is exercised."""
    return [
        TrainConfig(
            scheduler=name,
            scheduler_args=PLATEAU if name == "ReduceLROnPlateau" else {},
            optimizer=optimizer,
            lr=lr,
            weight_decay=1e-3,
            epochs=epochs,
            batch_size=32,
            seed=100 + i,
        )
        for i, name in enumerate(FAMILIES)
    ]


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the tensor's scale (elementwise relative error means little near 0)."""
    return float((a - b).abs().max() / b.abs().max())


LRS = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3}
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=NO_CUDA)])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_members_match_the_reference_trainer(breast_cancer: Task, optimizer: str, device: str) -> None:
    task = breast_cancer if device == "cpu" else load_task(DataConfig(dataset="breast_cancer"), device)
    cfgs = _cfgs(optimizer, epochs=3, lr=LRS[optimizer])
    pop = Population(task, cfgs)
    results = pop.train()
    for i, (cfg, got) in enumerate(zip(cfgs, results, strict=True)):
        ref = train(task, cfg, keep_model=True)
        assert got.lrs == ref.lrs, cfg.scheduler  # identical LR at every step
        assert got.scheduler_args == ref.scheduler_args
        assert ref.model is not None
        ref_weights = [p.detach() for p in ref.model.parameters()]
        for mine, theirs in zip(pop.member_weights(i), ref_weights, strict=True):
            assert _max_rel(mine, theirs) <= 1e-5, (cfg.scheduler, _max_rel(mine, theirs))
        assert got.val_loss == pytest.approx(ref.val_loss, rel=1e-4)
        assert got.test_score == pytest.approx(ref.test_score, abs=1 / len(task.y_test) + 1e-9)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_regression_members_match_the_reference_trainer(diabetes: Task, optimizer: str) -> None:
    """The same contract on a regression task (MSE on the standardised target, RMSE in its units): weights
    within 1e-5 after 3 epochs, the same losses and RMSEs, the best RMSE the lowest."""
    cfgs = _cfgs(optimizer, epochs=3, lr=LRS[optimizer])
    pop = Population(diabetes, cfgs)
    results = pop.train()
    for i, (cfg, got) in enumerate(zip(cfgs, results, strict=True)):
        ref = train(diabetes, cfg, keep_model=True)
        assert got.score == ref.score == "rmse"
        assert got.lrs == ref.lrs, cfg.scheduler
        assert ref.model is not None
        for mine, theirs in zip(
            pop.member_weights(i), [p.detach() for p in ref.model.parameters()], strict=True
        ):
            assert _max_rel(mine, theirs) <= 1e-5, (cfg.scheduler, _max_rel(mine, theirs))
        assert got.val_loss == pytest.approx(ref.val_loss, rel=1e-4)
        assert got.val_score == pytest.approx(ref.val_score, rel=1e-4)
        assert got.test_score == pytest.approx(ref.test_score, rel=1e-4)
        assert got.best_val_score == min(got.val_score)


# A population of four where two members stop early (after their epochs 0 and 1) and two join in their
# places, and so train at epochs of their own, with optimizer step counts of their own.
STARTERS = ("ReduceLROnPlateau", "StepLR", "CosineAnnealingLR", "OneCycleLR")
JOINERS = ("ReduceLROnPlateau", "warmup_cosine")


@pytest.mark.parametrize("cycle_momentum", [False, True], ids=["torch-adam", "beta1-per-step"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_members_that_join_later_match_the_reference_trainer(
    breast_cancer: Task, optimizer: str, cycle_momentum: bool
) -> None:
    """Refill: every member, the ones that joined in the places of stopped ones included, matches the
    reference trainer run alone with its settings (and stopped at the same epoch): identical LR at every
    step, weights within 1e-5. With cycle_momentum, Adam's beta1 varies by step (the update written out
    over the member axis); without, torch's own Adam with a step count per cohort."""
    lr = LRS[optimizer]

    def cfg(name: str, seed: int) -> TrainConfig:
        args: dict[str, object] = dict(PLATEAU) if name == "ReduceLROnPlateau" else {}
        if name == "OneCycleLR":
            args["cycle_momentum"] = cycle_momentum
        return TrainConfig(
            scheduler=name,
            scheduler_args=args,
            optimizer=optimizer,
            lr=lr,
            weight_decay=1e-3,
            epochs=3,
            seed=seed,
        )

    cfgs = [cfg(name, 200 + i) for i, name in enumerate(STARTERS)]
    joiners = [cfg(name, 300 + i) for i, name in enumerate(JOINERS)]
    stop_at = {0: 0, 1: 1}  # member index -> its epoch after which it stops
    weights: dict[int, list[torch.Tensor]] = {}
    joined_at: dict[int, int] = {}
    calls: list[int] = []
    pop = Population(breast_cancer, cfgs)

    def hook(i: int, m: object) -> bool:
        return stop_at.get(i) == m.epoch  # type: ignore[attr-defined]

    def done(i: int, r: object) -> None:
        weights[i] = [t.clone() for t in pop.member_weights(i)]

    def refill(free: int) -> list[Joiner]:
        calls.append(free)
        if len(calls) > len(joiners):
            return []
        j = len(calls) - 1
        joined_at[len(cfgs) + j] = len(calls)
        return [Joiner(len(cfgs) + j, joiners[j])]

    results = pop.train(hook, done, refill)
    assert calls[:2] == [1, 1] and sorted(joined_at.values()) == [1, 2]
    assert len(results) == len(cfgs) + len(joiners) and set(weights) == set(range(len(results)))
    for i, (c, got) in enumerate(zip(cfgs + joiners, results, strict=True)):
        stop = stop_at.get(i)
        ref = train(breast_cancer, c, on_epoch=(lambda m, s=stop: m.epoch == s), keep_model=True)
        assert got.lrs == ref.lrs, (i, c.scheduler)
        assert got.epochs_run == ref.epochs_run == (3 if stop is None else stop + 1)
        assert ref.model is not None
        for mine, theirs in zip(weights[i], [p.detach() for p in ref.model.parameters()], strict=True):
            assert _max_rel(mine, theirs) <= 1e-5, (i, c.scheduler, _max_rel(mine, theirs))
        assert got.val_loss == pytest.approx(ref.val_loss, rel=1e-4)


def test_a_joiner_of_another_group_is_refused(tiny_task: Task) -> None:
    pop = Population(tiny_task, [TrainConfig(optimizer="sgd", lr=0.05, epochs=2, seed=1)])
    with pytest.raises(ValueError, match="cannot join"):
        pop.add([Joiner(1, TrainConfig(optimizer="sgd", lr=0.05, epochs=2, batch_size=16, seed=2))])


def test_lr_curves_match_over_a_longer_run_with_plateau_reductions(tiny_task: Task) -> None:
    cfgs = _cfgs("sgd", epochs=12, lr=0.05)
    results = train_population(tiny_task, cfgs)
    for cfg, got in zip(cfgs, results, strict=True):
        ref = train(tiny_task, cfg)
        assert got.lrs == ref.lrs, cfg.scheduler
    plateau = results[FAMILIES.index("ReduceLROnPlateau")]
    assert len(set(plateau.lrs)) > 1  # it did reduce, on its own validation loss


def test_pruned_and_diverged_members_are_frozen_and_the_rest_go_on(breast_cancer: Task) -> None:
    cfgs = [
        TrainConfig(scheduler="StepLR", optimizer="sgd", lr=0.01, epochs=6, seed=1),
        TrainConfig(scheduler="constant", optimizer="sgd", lr=1e4, epochs=6, seed=0),  # diverges
        TrainConfig(scheduler="OneCycleLR", optimizer="sgd", lr=0.01, epochs=6, seed=3),  # pruned at epoch 1
    ]
    seen: list[tuple[int, int]] = []

    def hook(i: int, m: object) -> bool:
        seen.append((i, m.epoch))  # type: ignore[attr-defined]
        return i == 2 and m.epoch == 1  # type: ignore[attr-defined]

    ok, bad, pruned = train_population(breast_cancer, cfgs, hook)
    assert (
        bad.diverged and bad.diverged_step is not None and bad.epochs_run == 1 and math.isnan(bad.test_score)
    )
    assert pruned.stopped_early and pruned.epochs_run == 2 and not math.isnan(pruned.test_score)
    assert ok.epochs_run == 6 and len(ok.lrs) == 6 * ok.steps_per_epoch and not ok.diverged
    assert bad.diverged_step == train(breast_cancer, cfgs[1]).diverged_step
    assert (1, 0) not in seen and [e for i, e in seen if i == 2] == [0, 1]
    # the survivor is unaffected by the others: the reference trainer gives the same curve
    ref = train(breast_cancer, cfgs[0])
    assert ok.val_loss == pytest.approx(ref.val_loss, rel=1e-4)


def test_members_are_handed_over_as_soon_as_they_end(breast_cancer: Task) -> None:
    """on_done gets a diverged or stopped member's final result in the epoch it ends, while the others go
    on training; each member once; the members' seconds add up to the population's time."""
    cfgs = [
        TrainConfig(scheduler="StepLR", optimizer="sgd", lr=0.01, epochs=4, seed=1),
        TrainConfig(scheduler="constant", optimizer="sgd", lr=1e4, epochs=4, seed=0),  # diverges at once
        TrainConfig(scheduler="OneCycleLR", optimizer="sgd", lr=0.01, epochs=4, seed=3),  # stopped at epoch 1
    ]
    events: list[tuple[str, int, int]] = []

    def hook(i: int, m: object) -> bool:
        events.append(("epoch", i, m.epoch))  # type: ignore[attr-defined]
        return i == 2 and m.epoch == 1  # type: ignore[attr-defined]

    def done(i: int, r: object) -> None:
        final = (r.epochs_run, r.diverged, r.stopped_early, math.isnan(r.test_score))  # type: ignore[attr-defined]
        events.append(("done", i, final[0]))
        finals[i] = final

    finals: dict[int, tuple[int, bool, bool, bool]] = {}
    started = time.perf_counter()
    results = train_population(breast_cancer, cfgs, hook, on_done=done)
    elapsed = time.perf_counter() - started
    assert finals == {1: (1, True, False, True), 2: (2, False, True, False), 0: (4, False, False, False)}
    assert [e for e in events if e[0] == "done"] == [("done", 1, 1), ("done", 2, 2), ("done", 0, 4)]
    assert events.index(("done", 1, 1)) < events.index(("epoch", 0, 1))
    assert events.index(("done", 2, 2)) < events.index(("epoch", 0, 2))
    seconds = [r.seconds for r in results]
    assert all(t > 0 for t in seconds) and seconds[1] < seconds[2] < seconds[0]
    assert sum(seconds) <= elapsed


def test_mixed_configs_are_grouped_into_populations(tiny_task: Task) -> None:
    cfgs = [
        TrainConfig(optimizer="adam", epochs=2, batch_size=32, seed=1),
        TrainConfig(optimizer="sgd", lr=0.05, epochs=2, batch_size=32, seed=2),
        TrainConfig(optimizer="adam", epochs=2, batch_size=16, seed=3, model=ModelConfig(hidden=(8,))),
    ]
    assert len({group_key(c) for c in cfgs}) == 3
    results = train_population(tiny_task, cfgs)
    for cfg, got in zip(cfgs, results, strict=True):
        assert got.val_loss == pytest.approx(train(tiny_task, cfg).val_loss, rel=1e-4)


def test_auto_population_size(breast_cancer: Task) -> None:
    k = auto_population_size(breast_cancer, ModelConfig(), 32)
    assert k == 128  # the CPU cap: the reference task's member needs under 0.5 MB, a quarter of free memory
    assert auto_population_size(breast_cancer, ModelConfig(), 32, cap=8) == 8


@pytest.mark.slow
def test_a_population_of_every_family_and_optimizer_warns_nothing() -> None:
    """In a fresh process, warnings as errors: the proxies' scheduler steps warn nothing (torch's warning
    that a scheduler stepped before its optimizer does not apply to a proxy)."""
    code = """
import sys, warnings
warnings.simplefilter("error")
import torch
from bench.data import DataConfig, load_task
from bench.train import TrainConfig
from bench.train.population import train_population
from bench.schedules import SCHEDULES
task = load_task(DataConfig(dataset="breast_cancer"), torch.device("cpu"))
cfgs = [TrainConfig(scheduler=f, optimizer=o, epochs=2, seed=i)
        for i, f in enumerate(sorted(SCHEDULES)) for o in ("sgd", "adam", "adamw")]
results = train_population(task, cfgs)
assert all(len(r.val_loss) == 2 for r in results), [r.val_loss for r in results]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("task_name", ["breast_cancer", "tiny_task", "diabetes"])  # 1 logit; 3 classes; MSE
def test_each_members_gradient_is_its_own_models(
    request: pytest.FixtureRequest, task_name: str, activation: str
) -> None:
    """One backward pass over the stacked members gives each member the gradient its own nn.Sequential gets
    from autograd on its own batch, in the reference trainer's loss."""
    task: Task = request.getfixturevalue(task_name)
    model = ModelConfig(hidden=(12, 8), activation=activation)
    pop = Population(task, [TrainConfig(model=model, seed=i) for i in range(3)])
    batch = 20  # neither a power of two nor a divisor of the rows: the mean's 1/B is rounded
    x = torch.stack([task.x_train[i * batch : (i + 1) * batch] for i in range(3)])
    y = torch.stack([task.y_train[i * batch : (i + 1) * batch] for i in range(3)])
    losses = pop.model.gradients(x, y.to(torch.float32) if pop.model.binary else y)
    for i in range(3):
        torch.manual_seed(i)
        mlp = build_mlp(task.n_features, task.n_classes, model)
        loss = mean_loss(mlp(x[i]), y[i], task.regression)
        loss.backward()
        grads = [p.grad.t() if p.grad.dim() == 2 else p.grad for p in mlp.parameters()]
        mine = torch.cat([g.reshape(-1) for g in grads])
        assert float(losses[i]) == pytest.approx(loss.item(), rel=1e-6)
        assert torch.allclose(pop.model.grad[i], mine, rtol=1e-5, atol=1e-7), (
            i,
            float((pop.model.grad[i] - mine).abs().max()),
        )
