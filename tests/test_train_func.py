"""The torch.func population engine (bench.train.population.func) against the reference trainer, on the
worked example's CNN (examples/digits_cnn) and on the built-in MLP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import usercode
from bench.data import DataConfig, Task, load_task
from bench.model import ModelConfig
from bench.train import OPTIMIZERS, TrainConfig, train
from bench.train.population import Population, why_not_batched

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn"
CNN = ModelConfig(python="cnn:build", args={"channels": 4, "hidden": 16})
LRS = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3}
# Per-step and per-epoch families, one that cycles momentum (OneCycleLR), and the live-stepped one.
FAMILIES = ("OneCycleLR", "CosineAnnealingLR", "StepLR", "ReduceLROnPlateau", "warmup_cosine")


@pytest.fixture(scope="module")
def digits_images() -> Task:
    usercode.add_folder(EXAMPLE)
    return load_task(DataConfig(python="cnn:load_digits"))


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_cnn_members_match_the_reference_trainer(digits_images: Task, optimizer: str) -> None:
    """Each member of a torch.func population of the CNN is the reference trainer's run of the same seed:
    the same LR at every step, and weights within 1e-5 (relative to each tensor's scale) after 2 epochs."""
    cfgs = [
        TrainConfig(
            scheduler=name,
            scheduler_args={"patience": 0, "threshold": 0.1} if name == "ReduceLROnPlateau" else {},
            optimizer=optimizer,
            lr=LRS[optimizer],
            weight_decay=1e-3,
            epochs=2,
            batch_size=64,
            seed=200 + i,
            model=CNN,
        )
        for i, name in enumerate(FAMILIES)
    ]
    pop = Population(digits_images, cfgs)
    assert pop.func
    results = pop.train()
    for i, (cfg, got) in enumerate(zip(cfgs, results, strict=True)):
        ref = train(digits_images, cfg, keep_model=True)
        assert got.lrs == ref.lrs, cfg.scheduler
        assert len(got.lrs) == 2 * got.steps_per_epoch
        assert ref.model is not None
        theirs = [p.detach() for p in ref.model.parameters()]
        mine = pop.member_weights(i)
        assert [t.shape for t in mine] == [t.shape for t in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert _max_rel(a, b) <= 1e-5, (cfg.scheduler, _max_rel(a, b))
        assert got.val_loss == pytest.approx(ref.val_loss, rel=1e-4)


def test_torch_func_batches_the_builtin_mlp_as_the_stacked_engine_does(breast_cancer: Task) -> None:
    """The built-in MLP through torch.func and as stacked matmuls: the same runs, to float rounding."""
    cfgs = [TrainConfig(scheduler="OneCycleLR", lr=1e-2, epochs=3, seed=s) for s in range(4)]
    func, stacked = Population(breast_cancer, cfgs, batching="func"), Population(breast_cancer, cfgs)
    assert func.func and not stacked.func
    got, want = func.train(), stacked.train()
    for i in range(len(cfgs)):
        assert got[i].lrs == want[i].lrs
        for a, b in zip(func.member_weights(i), stacked.member_weights(i), strict=True):
            assert _max_rel(a, b) <= 1e-5


def test_dropout_members_draw_their_own_masks(digits_images: Task) -> None:
    """Under vmap each member draws its own dropout mask (randomness="different"), as separate runs do:
    two members of one seed, with dropout, end apart; without it, equal."""
    drop = ModelConfig(python="usermodels:dropout_mlp", args={"p": 0.5})
    cfgs = [TrainConfig(epochs=1, seed=0, model=drop, batch_size=64) for _ in range(2)]
    pop = Population(digits_images, cfgs)
    pop.train()
    a, b = pop.member_weights(0), pop.member_weights(1)
    assert any(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_batch_norm_and_control_flow_are_named_as_unbatchable(digits_images: Task) -> None:
    bn = why_not_batched(digits_images, ModelConfig(python="cnn:build_with_batch_norm"))
    assert bn is not None and "BatchNorm2d" in bn and "running statistics" in bn
    assert why_not_batched(digits_images, CNN) is None
    flow = why_not_batched(digits_images, ModelConfig(python="usermodels:branchy"))
    assert flow is not None and "torch.func cannot batch" in flow
    frozen = why_not_batched(digits_images, ModelConfig(python="usermodels:frozen_first_layer"))
    assert frozen == "its parameter '1.weight' is frozen (requires_grad=False); a population trains them all"
