"""The population engine: K trials of one architecture and batch size trained at once, as one batched model.

The reference trainer (:mod:`bench.train.reference`) stays the ground truth; a population member reproduces
it for the same seed and settings (the contract tests check LR curves exactly and weights after 3 epochs to
1e-5). What is shared and what is each member's own:

- Weights are stacked along a leading member axis (:mod:`.stack`); every layer is one batched matmul.
- Each member keeps its **own real torch scheduler** (:mod:`.members`), stepped as a training loop would.
- Each member has its own seed: initialisation (as the reference's) and batch order (its own CPU
  generator, one permutation per epoch, as the reference's).
- The optimizer update takes a per-member LR, momentum and weight decay (:mod:`.optim`).
- Members that diverge (non-finite loss) or that ``on_epoch`` stops (pruning) are frozen at the end of
  that epoch: the population is compacted and they cost nothing more.
- New members can join at any epoch's end (``train(refill=...)``), in the places of those that ended: a
  small population's step costs about the same whatever its size (per-operation overhead dominates), so
  a slot left empty is time lost. Each member keeps its own clock: its epoch (its batch order, its row of
  the LR table, its plateau steps) and its optimizer step count (Adam's bias correction), shared by the
  members that joined together (a cohort).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from bench.data import Task
from bench.train.population.func import FuncModel, func_initial_rows
from bench.train.population.members import (
    Member,
    ProxySchedule,
    group_key,
    proxy_schedule,
    schedule_rows,
    step_live,
)
from bench.train.population.optim import ADAM_BETAS, Cohort, MemberOptimizer
from bench.train.population.stack import StackedMLP, initial_rows
from bench.train.reference import batch_weights
from bench.train.trial import EpochMetrics, TrainConfig, TrialResult


@dataclass(frozen=True)
class Joiner:
    """A member that joins a population being trained: the caller's number for it, its settings, and its
    schedule where the caller has built it already (fresh, never stepped)."""

    index: int
    cfg: TrainConfig
    schedule: ProxySchedule | None = None


# How the members are batched: "stacked", the built-in MLP's layers as batched matmuls (:mod:`.stack`);
# "func", any module through torch.func (:mod:`.func`); "auto": stacked for the built-in MLP, func for a
# module of the user's.
Batching = Literal["auto", "stacked", "func"]


class BatchedModel(Protocol):
    """What the engine needs of a population's model (:class:`StackedMLP`, :class:`FuncModel`)."""

    flat: torch.Tensor
    grad: torch.Tensor
    binary: bool

    def set_rows(self, flat: torch.Tensor) -> None: ...
    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def member(self, row: int) -> list[torch.Tensor]: ...


OnEpoch = Callable[[int, EpochMetrics], bool | None]
OnDone = Callable[[int, TrialResult], None]
Refill = Callable[[int], Sequence[Joiner]]


@dataclass
class _Epoch:
    """What one epoch of training gave every member, read off the device in one sync."""

    lrs: list[list[float]]  # the LR each member used at each step
    finite: list[bool]
    train_loss: list[float]
    val_loss: list[float]
    val_score: list[float]
    step_losses: torch.Tensor  # (steps, K), where a divergence is looked for
    firsts: list[int]  # each member's first step of the epoch, in its own run


class Population:
    """K members as stacked tensors. Built from TrainConfigs that share :func:`group_key`."""

    def __init__(
        self,
        task: Task,
        cfgs: Sequence[TrainConfig],
        built: Sequence[ProxySchedule] | None = None,
        batching: Batching = "auto",
    ):
        """``built``: the members' :func:`proxy_schedule`, where the caller has built them already (fresh,
        never stepped); else they are built here. ``batching``: see :data:`Batching`."""
        if not cfgs:
            raise ValueError("a population needs at least one member")
        keys = {group_key(c) for c in cfgs}
        if len(keys) != 1:
            raise ValueError(
                f"population members must share architecture, batch size, epochs, optimizer: {keys}"
            )
        if built is not None and len(built) != len(cfgs):
            raise ValueError(f"{len(built)} prebuilt schedules for {len(cfgs)} members")
        first = cfgs[0]
        if batching == "stacked" and first.model.python:
            raise ValueError("a module of the user's is batched by torch.func, not stacked")
        self.func = batching == "func" or (batching == "auto" and bool(first.model.python))
        self.task, self.device, self.key = task, task.device, keys.pop()
        self.optimizer, self.epochs, self.batch_size = first.optimizer, first.epochs, first.batch_size
        self.n_train = len(task.y_train)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.batch_weights = batch_weights(self.n_train, self.batch_size, self.device)
        self.members: list[Member] = []
        # Per-step tables (K, total_steps) of each member's LR and momentum; live members fill theirs.
        self.lr_table = torch.empty(0, self.total_steps, dtype=torch.float64)
        self.mom_table = torch.empty(0, self.total_steps, dtype=torch.float64)
        self.optim = MemberOptimizer(self.optimizer, self.device)
        self._cohorts = itertools.count()
        rows = self._join([Joiner(i, c, built[i] if built else None) for i, c in enumerate(cfgs)])
        model_cls = FuncModel if self.func else StackedMLP
        self.model: BatchedModel = model_cls(task, first.model, rows)
        self._relayout(rows)

    def add(self, joiners: Sequence[Joiner]) -> None:
        """New members, at an epoch's end: they start their own epoch 0 with the population's next epoch,
        and their own optimizer step count. They must share its :func:`group_key`."""
        if joiners:
            rows = self._join(joiners)
            self._relayout(torch.cat([self.model.flat.detach(), rows]))

    def _join(self, joiners: Sequence[Joiner]) -> torch.Tensor:
        """Members, schedule tables and optimizer state for the joiners, as a new cohort; their initial
        parameters."""
        for j in joiners:
            j.cfg.check()
            if group_key(j.cfg) != self.key:
                raise ValueError(
                    f"a member of group {group_key(j.cfg)} cannot join a population of {self.key}"
                )
        cohort = next(self._cohorts)
        initial = func_initial_rows if self.func else initial_rows
        rows = initial(self.task, joiners[0].cfg.model, [j.cfg.seed for j in joiners])
        lr_rows, mom_rows = [], []
        for j in joiners:
            schedule = j.schedule or proxy_schedule(j.cfg, self.steps_per_epoch)
            result = TrialResult(
                j.cfg.scheduler,
                schedule.args,
                self.task.score,
                steps_per_epoch=self.steps_per_epoch,
                device=str(self.device),
            )
            generator = torch.Generator().manual_seed(j.cfg.seed)  # batch order: as the reference's
            self.members.append(Member(j.index, schedule, generator, result, cohort))
            lrs, moms = schedule_rows(schedule, self.optimizer, self.epochs, self.steps_per_epoch)
            lr_rows.append(lrs)
            mom_rows.append(moms)
        self.lr_table = torch.cat([self.lr_table, torch.tensor(lr_rows, dtype=torch.float64)])
        self.mom_table = torch.cat([self.mom_table, torch.tensor(mom_rows, dtype=torch.float64)])
        self.optim.add_cohort(cohort, [j.cfg.weight_decay for j in joiners])
        return rows

    def _keep(self, rows: list[int]) -> None:
        """Compact the population to the given rows: frozen members stop costing compute."""
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        cpu_idx = torch.tensor(rows, dtype=torch.long)
        self.lr_table, self.mom_table = self.lr_table[cpu_idx], self.mom_table[cpu_idx]
        self.members = [self.members[r] for r in rows]
        self.optim.keep(idx)
        self._relayout(self.model.flat[idx])

    def _relayout(self, flat: torch.Tensor) -> None:
        """The one place the members' rows change: the model's buffers, then the optimizer's view of them."""
        self.model.set_rows(flat)
        cohorts: list[Cohort] = []
        for row, m in enumerate(self.members):
            if cohorts and cohorts[-1].number == m.cohort:
                cohorts[-1] = Cohort(m.cohort, cohorts[-1].first, row + 1)
            else:
                cohorts.append(Cohort(m.cohort, row, row + 1))
        beta1 = torch.nan_to_num(self.mom_table, nan=ADAM_BETAS[0])
        self.optim.relayout(
            self.model.flat, self.model.grad, cohorts, bool(torch.all(beta1 == ADAM_BETAS[0]))
        )

    # --- training ----------------------------------------------------------------------------------------

    def train(
        self, on_epoch: OnEpoch | None = None, on_done: OnDone | None = None, refill: Refill | None = None
    ) -> list[TrialResult]:
        """Train every member; ``on_epoch(member_index, metrics)`` returning True freezes that member.
        ``on_done(member_index, result)`` is called as soon as a member's result is final (it diverged, was
        stopped, or ran its epochs), so that a caller can store it while the others train.

        ``refill(free)``, called at each epoch's end after ``on_done`` when fewer members than the
        population started with go on, returns members to add (:meth:`add`), at most ``free``; training
        ends when no member goes on and none joins. Returns the results of the members the population
        started with, then of those that joined, in that order.

        A member's ``seconds`` is its share of the population's time: each epoch's time divided evenly
        among the members that trained in it (the members' seconds add up to the population's)."""
        results = [m.result for m in self.members]
        capacity = len(self.members)
        for r in results:
            r.seconds = 0.0
        clock = time.perf_counter()
        while self.members:
            epoch = self._train_epoch()
            going = self._end_epoch(epoch, on_epoch)
            ended = [m for row, m in enumerate(self.members) if row not in going]
            share = (time.perf_counter() - clock) / len(self.members)
            for m in self.members:
                m.result.seconds += share
            if on_done is not None:
                for m in ended:
                    on_done(m.index, m.result)
            free = capacity - len(going)
            joiners = refill(free) if refill is not None and free > 0 else ()
            if len(joiners) > free:
                raise ValueError(f"{len(joiners)} members cannot join {free} free places")
            if not going and not joiners:
                break  # the last members stay (member_weights)
            if len(going) < len(self.members):
                self._keep(going)
            if joiners:
                self.add(joiners)
                results += [m.result for m in self.members[len(going) :]]  # fresh: seconds 0
            clock = time.perf_counter()  # the callbacks' time is the caller's, not training's
        return results

    def _train_epoch(self) -> _Epoch:
        """One epoch of every member: its batches in its own order, its own LR and momentum at each step."""
        k, spe, dev = len(self.members), self.steps_per_epoch, self.device
        order = torch.stack([torch.randperm(self.n_train, generator=m.generator) for m in self.members]).to(
            dev
        )
        firsts = [m.epoch * spe for m in self.members]
        if len(set(firsts)) == 1:
            lrs = self.lr_table[:, firsts[0] : firsts[0] + spe]
            moms = self.mom_table[:, firsts[0] : firsts[0] + spe]
        else:  # members that joined at different times are at different epochs of their own
            cols = torch.tensor(firsts)[:, None] + torch.arange(spe)
            lrs, moms = self.lr_table.gather(1, cols), self.mom_table.gather(1, cols)
        # The epoch's LRs, momenta and batches, each split into its steps in one operation (a step costs
        # per operation at small K: about 5 % of an epoch at K=13 against slicing step by step).
        # Also in float64, as torch's optimizers hold them (Python floats), for the coefficients torch
        # computes in double before casting (the optimizer's ``exact`` rates).
        lrs64, moms64 = lrs.to(device=dev), moms.to(device=dev)
        lr_steps, mom_steps = lrs64.to(torch.float32).unbind(1), moms64.to(torch.float32).unbind(1)
        exact = list(zip(lrs64.unbind(1), moms64.unbind(1), strict=True))
        # Each member's epoch of data in its own order, gathered once: batches are then plain slices.
        # index_select with the flattened order: 0.4 ms at K=256 against 3.2 ms for x_train[order].
        flat_order = order.view(-1)
        y_epoch = self.task.y_train.index_select(0, flat_order).view(k, -1)
        if self.model.binary:
            y_epoch = y_epoch.to(torch.float32)  # the binary loss's labels, converted once an epoch
        x_epoch = self.task.x_train.index_select(0, flat_order).view(k, self.n_train, *self.task.input_shape)
        x_batches, y_batches = x_epoch.split(self.batch_size, 1), y_epoch.split(self.batch_size, 1)
        losses = []
        for i in range(spe):
            losses.append(self.model.gradients(x_batches[i], y_batches[i]))
            self.optim.step(lr_steps[i], mom_steps[i], *exact[i])
        step_losses = torch.stack(losses)
        # One host sync per epoch: divergence, train / validation metrics.
        finite = torch.isfinite(step_losses).all(0)
        train_loss = (step_losses * self.batch_weights[:, None]).sum(0) / self.n_train
        val_loss, val_score = self.model.evaluate(self.task.x_val, self.task.y_val)
        return _Epoch(
            lrs.tolist(),
            finite.tolist(),
            train_loss.tolist(),
            val_loss.tolist(),
            val_score.tolist(),
            step_losses,
            firsts,
        )

    def _end_epoch(self, epoch: _Epoch, on_epoch: OnEpoch | None) -> list[int]:
        """Record the epoch in each member's result, ask ``on_epoch``, step the live schedules, and test the
        members that end here; every member's clock moves on. Returns the rows that go on training."""
        trained: list[int] = []  # rows that did not diverge
        bad_steps = None
        for row, m in enumerate(self.members):
            r = m.result
            r.lrs.extend(epoch.lrs[row])
            r.epochs_run = m.epoch + 1
            if not epoch.finite[row] or not math.isfinite(epoch.val_loss[row]):
                if bad_steps is None:
                    bad_steps = (~torch.isfinite(epoch.step_losses)).cpu()
                bad = bad_steps[:, row].nonzero()
                r.diverged = True
                r.diverged_step = epoch.firsts[row] + (int(bad[0]) if len(bad) else self.steps_per_epoch - 1)
                continue
            r.train_loss.append(epoch.train_loss[row])
            r.val_loss.append(epoch.val_loss[row])
            r.val_score.append(epoch.val_score[row])
            metrics = EpochMetrics(m.epoch, epoch.train_loss[row], epoch.val_loss[row], epoch.val_score[row])
            if on_epoch is not None and on_epoch(m.index, metrics):
                r.stopped_early = True
            trained.append(row)
        self._step_live_schedules(epoch.val_loss)
        done = [
            row
            for row in trained
            if self.members[row].epoch == self.epochs - 1 or self.members[row].result.stopped_early
        ]
        self._test(done)
        for m in self.members:
            m.epoch += 1
        return sorted(set(trained) - set(done))

    def _step_live_schedules(self, val_losses: list[float]) -> None:
        """ReduceLROnPlateau members: step on their own validation loss, then fill their next epoch's rows."""
        spe = self.steps_per_epoch
        for row, m in enumerate(self.members):
            if not m.live:
                continue
            lr, mom = step_live(m, val_losses[row], self.optimizer)
            nxt = slice((m.epoch + 1) * spe, (m.epoch + 2) * spe)
            if nxt.start < self.total_steps:
                self.lr_table[row, nxt] = lr
                self.mom_table[row, nxt] = mom

    def _test(self, rows: list[int]) -> None:
        """Test metrics for members that end here (complete or stopped early)."""
        if not rows:
            return
        loss, score = self.model.evaluate(self.task.x_test, self.task.y_test)
        loss_l, score_l = loss.tolist(), score.tolist()
        for row in rows:
            r = self.members[row].result
            r.test_loss, r.test_score = loss_l[row], score_l[row]

    def member_weights(self, index: int) -> list[torch.Tensor]:
        """Member ``index`` (caller's numbering) weights as its module's ``parameters()``: for the MLP, in
        nn.Linear layout [W1 (out, in), b1, W2, ...]."""
        return self.model.member(next(r for r, m in enumerate(self.members) if m.index == index))


def train_population(
    task: Task,
    cfgs: Sequence[TrainConfig],
    on_epoch: OnEpoch | None = None,
    built: Sequence[ProxySchedule] | None = None,
    on_done: OnDone | None = None,
    batching: Batching = "auto",
) -> list[TrialResult]:
    """Train many trials at once, grouped into populations by :func:`group_key`; results in input order.
    ``built``: the trials' :func:`proxy_schedule` where the caller has them (see :class:`Population`).
    ``on_epoch`` and ``on_done`` as in :meth:`Population.train`, with the trials' indices."""
    results: dict[int, TrialResult] = {}
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, c in enumerate(cfgs):
        groups.setdefault(group_key(c), []).append(i)
    for indices in groups.values():
        prebuilt = [built[i] for i in indices] if built else None
        pop = Population(task, [cfgs[i] for i in indices], prebuilt, batching)

        def hook(j: int, m: EpochMetrics, indices: list[int] = indices) -> bool | None:
            return on_epoch(indices[j], m) if on_epoch is not None else None

        def done(j: int, r: TrialResult, indices: list[int] = indices) -> None:
            if on_done is not None:
                on_done(indices[j], r)

        for j, r in enumerate(pop.train(hook, done)):
            results[indices[j]] = r
    return [results[i] for i in range(len(cfgs))]
