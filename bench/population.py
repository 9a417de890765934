"""The population engine: K trials of one architecture and batch size trained at once, as one batched model.

The reference trainer (:mod:`bench.engine`) stays the ground truth; a population member reproduces it for
the same seed and settings (the contract tests check LR curves exactly and weights after 3 epochs to 1e-5).
What is shared and what is each member's own:

- Weights are stacked along a leading member axis and every layer is one ``baddbmm`` over the population.
  Each member's loss depends on its own weights only, so one backward pass gives every member its own
  gradient. The training step's backward pass is written out (:meth:`Population._gradients`): the same
  operations autograd runs for these layers, with torch's own derivative kernels for the activations,
  writing every gradient into the flat gradient buffer with one ``cat``; the tests check it against
  autograd for every activation, both losses and dropout.
- Each member keeps its **own real torch scheduler**, built by the registry on a one-parameter proxy of the
  member's optimizer (same class and hyperparameters). Schedules that do not depend on the validation loss
  are stepped through the whole run up front, exactly as a training loop would step them, and give a
  table of the LR (and momentum, for ``cycle_momentum``) each optimizer step uses. ReduceLROnPlateau
  is stepped live, each epoch, with the member's own validation loss.
- Each member has its own seed: initialisation (the CPU generator seeded as ``torch.manual_seed(seed)``
  seeds it, then the same module build as the reference) and batch order (its own CPU generator, one
  permutation per epoch, as the reference's).
- The optimizer update takes a per-member LR, momentum and weight decay (torch's optimizers take one LR per
  parameter group, and a group per member would cost K Python calls per step). Adam and AdamW run torch's
  own Adam with LR 1 on a direction buffer, scaled per member afterwards; SGD with momentum, and Adam
  whose beta1 varies (``cycle_momentum``), are torch's arithmetic written over the member axis.
- Members that diverge (non-finite loss) or that ``on_epoch`` stops (pruning) are frozen at the end of
  that epoch: the population is compacted and they cost nothing more.
- New members can join at any epoch's end (``train(refill=...)``), in the places of those that ended: a
  small population's step costs about the same whatever its size (per-operation overhead dominates), so
  a slot left empty is time lost. Each member keeps its own clock: its epoch (its batch order, its row of
  the LR table, its plateau steps) and its optimizer step count (Adam's bias correction), shared by the
  members that joined together.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.optim.adam import adam
from torch.optim.lr_scheduler import LRScheduler

from bench import schedules
from bench.data import Task
from bench.engine import OPTIMIZERS, EpochMetrics, TrainConfig, TrialResult, batch_weights
from bench.errors import UserError
from bench.model import ModelConfig, activation, build_mlp, loss_and_correct, mean_loss, output_size

# Each activation's derivative as autograd computes it (torch's own backward kernels), from the gradient at
# the activation's output, its input z and its output a.
ACTIVATION_BACKWARD: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relu": lambda g, z, a: torch.ops.aten.threshold_backward(g, a, 0),
    "gelu": lambda g, z, a: torch.ops.aten.gelu_backward(g, z),
    "tanh": lambda g, z, a: torch.ops.aten.tanh_backward(g, a),
    "silu": lambda g, z, a: torch.ops.aten.silu_backward(g, z),
}

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
# Devices where the population runs torch's fused Adam kernel (both checked by the contract tests); elsewhere
# torch's default implementation of the same arithmetic.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def group_key(cfg: TrainConfig) -> tuple[object, ...]:
    """Trials that can share one population: same architecture, batch size, run length and optimizer kind."""
    return (cfg.model, cfg.batch_size, cfg.epochs, cfg.optimizer)


def auto_population_size(task: Task, model: ModelConfig, batch_size: int, cap: int | None = None) -> int:
    """How many members to train at once: what fits in a quarter of the device's free memory, capped
    (128 on CPU, where larger populations stop paying: K=128 trained 10-23 % faster a trial than K=256 in
    each of three ``make perf`` runs; 4096 on CUDA)."""
    device = task.device
    widths = [task.n_features, *model.hidden, output_size(task.n_classes)]
    n_params = sum(a * b + b for a, b in itertools.pairwise(widths))
    activations = (batch_size * 3 + len(task.y_val) + len(task.y_test)) * sum(widths)
    per_member = 4 * (4 * n_params + 2 * activations)  # float32: weights, grad, two optimizer states
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        default_cap = 4096
    else:
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 2**20
        free = pages * os.sysconf("SC_PAGE_SIZE")
        default_cap = 128
    return max(1, min(cap or default_cap, int(free * 0.25) // per_member))


# A trial's family, resolved arguments, proxy optimizer and scheduler on it (see proxy_schedule).
ProxySchedule = tuple[schedules.Family, dict[str, object], torch.optim.Optimizer, LRScheduler]


def proxy_schedule(cfg: TrainConfig, steps_per_epoch: int) -> ProxySchedule:
    """A trial's own torch scheduler, built by the registry on a one-parameter stand-in of its optimizer
    (same class and hyperparameters): the family, the resolved arguments, the stand-in and the scheduler."""
    family = schedules.get(cfg.scheduler)
    horizon = family.horizon(cfg.epochs, steps_per_epoch, cfg.lr)
    args = family.resolve(cfg.scheduler_args, horizon)
    with _no_dynamo_import():
        proxy = OPTIMIZERS[cfg.optimizer](
            [torch.zeros(1, requires_grad=True)], cfg.lr, cfg.momentum, cfg.weight_decay
        )
    return family, args, proxy, family.build(proxy, args, horizon)


@contextlib.contextmanager
def _no_dynamo_import() -> Iterator[None]:
    """Build a torch optimizer without importing torch._dynamo (1.5 s here, and more for the interpreter
    to tear down at exit), when nothing has imported it yet.

    ``Optimizer.add_param_group`` is wrapped by ``torch._disable_dynamo``, which imports torch._dynamo on
    its first call only to exempt the method from ``torch.compile`` tracing; lrbench compiles nothing. The
    wrapper caches the function it calls on the wrapped function, as ``__dynamo_disable``; while this
    context is open that is the method itself. Should torch cache it some other way, the attribute is
    ignored and torch._dynamo is imported as before: slower, never different."""
    method = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if method is None or "torch._dynamo" in sys.modules or hasattr(method, "__dynamo_disable"):
        yield
        return
    setattr(method, "__dynamo_disable", method)
    try:
        yield
    finally:
        if vars(method).get("__dynamo_disable") is method:
            delattr(method, "__dynamo_disable")


@contextlib.contextmanager
def _proxy_steps() -> Iterator[None]:
    """Scheduler steps on a proxy: its optimizer never steps (a schedule does not depend on optimizer
    steps; the contract tests compare with a loop that steps both), so torch's warning that a scheduler
    stepped before its optimizer does not apply. Stepping the proxy instead would import torch._dynamo.
    Older torch's SequentialLR (2.4 here) steps its schedulers with an epoch argument at each milestone and
    warns that the argument is deprecated: torch's own call, nothing a caller can change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        warnings.filterwarnings("ignore", message=r"The epoch parameter in `scheduler\.step\(\)`")
        yield


@dataclass
class _Member:
    index: int  # position in the caller's list
    family: schedules.Family
    proxy: torch.optim.Optimizer
    scheduler: LRScheduler
    generator: torch.Generator
    result: TrialResult
    epoch: int = 0  # epochs trained: the member's own clock (members that joined later lag behind)
    cohort: int = 0  # members that joined together, and so share their optimizer step count


# A member that joins a population being trained: the caller's index for it, its config, and its schedule
# (see proxy_schedule) where the caller has built it already, else None.
Joiner = tuple[int, TrainConfig, ProxySchedule | None]


def _momentum_of(group: dict[str, object], optimizer: str) -> float:
    if optimizer == "sgd":
        return float(group["momentum"])  # type: ignore[arg-type]
    return float(group["betas"][0])  # type: ignore[index]


class Population:
    """K members as stacked tensors. Built from TrainConfigs that share :func:`group_key`."""

    def __init__(self, task: Task, cfgs: Sequence[TrainConfig], built: Sequence[ProxySchedule] | None = None):
        """``built``: the members' :func:`proxy_schedule`, where the caller has built them already (fresh,
        never stepped); else they are built here."""
        if not cfgs:
            raise ValueError("a population needs at least one member")
        keys = {group_key(c) for c in cfgs}
        if len(keys) != 1:
            raise ValueError(
                f"population members must share architecture, batch size, epochs, optimizer: {keys}"
            )
        for c in cfgs:
            c.check()
        if built is not None and len(built) != len(cfgs):
            raise ValueError(f"{len(built)} prebuilt schedules for {len(cfgs)} members")
        self.task = task
        self.device = task.device
        self.key = keys.pop()
        first = cfgs[0]
        self.optimizer = first.optimizer
        self.epochs = first.epochs
        self.batch_size = first.batch_size
        self.activation = activation(first.model.activation)
        self.activation_backward = ACTIVATION_BACKWARD[first.model.activation]
        self.dropout = first.model.dropout
        self.n_train = len(task.y_train)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.batch_weights = batch_weights(self.n_train, self.batch_size, self.device)
        self.binary = output_size(task.n_classes) == 1
        self._one = torch.ones((), device=self.device)
        self.state: dict[str, torch.Tensor] = {}
        # Adam's tensors as a view per cohort's rows, and the cohorts' steps (see _update), made when needed.
        self._blocks: list[list[torch.Tensor]] | None = None
        self.members: list[_Member] = []
        flat, lr_rows, mom_rows = self._build(list(enumerate(cfgs)), built or [None] * len(cfgs), cohort=0)
        self._set_flat(flat, {})
        # Per-step tables (K, total_steps); live-stepped members fill theirs epoch by epoch.
        self.lr_table = torch.tensor(lr_rows, dtype=torch.float64)
        self.mom_table = torch.tensor(mom_rows, dtype=torch.float64)
        self.wd = torch.tensor([c.weight_decay for c in cfgs], dtype=torch.float32, device=self.device)
        self.decays = any(c.weight_decay for c in cfgs)
        self._fused = self.device.type in FUSED_ADAM_DEVICES
        # Optimizer step counts, one per cohort (members that joined together): a count, and the tensor
        # torch's Adam keeps it in (on the device for the fused kernel).
        self._steps: dict[int, int] = {0: 0}
        self._step_tensors: dict[int, torch.Tensor] = {0: self._step_tensor()}
        self._next_cohort = 1
        self._set_adam_path()

    def _build(
        self, indexed: Sequence[tuple[int, TrainConfig]], built: Sequence[ProxySchedule | None], cohort: int
    ) -> tuple[torch.Tensor, list[list[float]], list[list[float]]]:
        """New members (appended to self.members): their parameters as rows of a flat (n, P) buffer on the
        device, and their LR and momentum table rows."""
        weights: list[list[torch.Tensor]] = []
        biases: list[list[torch.Tensor]] = []
        lr_rows, mom_rows = [], []
        task = self.task
        for (index, c), prebuilt in zip(indexed, built, strict=True):
            # The CPU generator the reference trainer's torch.manual_seed sets, so initialisations match
            # (torch.manual_seed itself also queues a seeding of every other backend: 0.6 ms a member).
            torch.default_generator.manual_seed(c.seed)
            mlp = build_mlp(task.n_features, task.n_classes, c.model)
            linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
            weights.append([m.weight.detach().t() for m in linears])  # (in, out): x @ W
            biases.append([m.bias.detach().unsqueeze(0) for m in linears])
            family, args, proxy, scheduler = prebuilt or proxy_schedule(c, self.steps_per_epoch)
            member = _Member(
                index=index,
                family=family,
                proxy=proxy,
                scheduler=scheduler,
                generator=torch.Generator().manual_seed(c.seed),  # batch order: as the reference's
                result=TrialResult(
                    c.scheduler,
                    args,
                    [],
                    [],
                    [],
                    [],
                    steps_per_epoch=self.steps_per_epoch,
                    device=str(self.device),
                ),
                cohort=cohort,
            )
            self.members.append(member)
            lrs, moms = self._schedule_table(member)
            lr_rows.append(lrs)
            mom_rows.append(moms)

        # All of a member's parameters live in one row of a flat (K, P) buffer, and so do their gradients:
        # the optimizer update is a dozen whole-buffer operations instead of a dozen per layer.
        per_member = [
            [t for pair in zip(w, b, strict=True) for t in pair] for w, b in zip(weights, biases, strict=True)
        ]
        self.shapes = [tuple(t.shape) for t in per_member[0]]
        flat = torch.stack([torch.cat([t.reshape(-1) for t in row]) for row in per_member])
        return flat.to(self.device), lr_rows, mom_rows

    def _step_tensor(self) -> torch.Tensor:
        return torch.zeros((), device=self.device if self._fused else None)

    def _set_adam_path(self) -> None:
        """Adam with one beta1 for all (no cycle_momentum): torch's own Adam does the arithmetic (_update);
        else the same arithmetic written over the member axis."""
        beta1_fixed = bool(torch.all(torch.nan_to_num(self.mom_table, nan=ADAM_BETAS[0]) == ADAM_BETAS[0]))
        self._torch_adam = self.optimizer in ("adam", "adamw") and beta1_fixed
        if self._torch_adam:
            if self.state and "direction" not in self.state:
                self.state["direction"] = torch.zeros_like(self.flat)
            for cohort, count in self._steps.items():  # torch's Adam counts its own steps; the other path not
                self._step_tensors[cohort].fill_(count)
        self._blocks = None
        self._cohort_rows: list[tuple[int, int, int]] = []  # (cohort, first row, row after the last)
        for row, m in enumerate(self.members):
            if self._cohort_rows and self._cohort_rows[-1][0] == m.cohort:
                c, first, _ = self._cohort_rows[-1]
                self._cohort_rows[-1] = (c, first, row + 1)
            else:
                self._cohort_rows.append((m.cohort, row, row + 1))

    def add(self, joiners: Sequence[Joiner]) -> None:
        """New members, at an epoch's end: they start their own epoch 0 with the population's next epoch, and
        their own optimizer step count. They must share the population's :func:`group_key`."""
        if not joiners:
            return
        cfgs = [c for _, c, _ in joiners]
        for c in cfgs:
            c.check()
            if group_key(c) != self.key:
                raise ValueError(f"a member of group {group_key(c)} cannot join a population of {self.key}")
        cohort = self._next_cohort
        self._next_cohort += 1
        flat, lr_rows, mom_rows = self._build(
            [(i, c) for i, c, _ in joiners], [b for _, _, b in joiners], cohort
        )
        n = len(joiners)
        state = {
            name: torch.cat([t, torch.zeros(n, t.shape[1], dtype=t.dtype, device=t.device)])
            for name, t in self.state.items()
        }
        self._set_flat(torch.cat([self.flat.detach(), flat]), state)
        self.lr_table = torch.cat([self.lr_table, torch.tensor(lr_rows, dtype=torch.float64)])
        self.mom_table = torch.cat([self.mom_table, torch.tensor(mom_rows, dtype=torch.float64)])
        wd = torch.tensor([c.weight_decay for c in cfgs], dtype=torch.float32, device=self.device)
        self.wd = torch.cat([self.wd, wd])
        self.decays = self.decays or any(c.weight_decay for c in cfgs)
        self._steps[cohort] = 0
        self._step_tensors[cohort] = self._step_tensor()
        self._set_adam_path()

    def _set_flat(self, flat: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        """Parameters as views into the flat buffer (the gradient buffer has the same layout, see
        :meth:`_gradients`)."""
        self.flat = flat.contiguous()
        self.grad = torch.zeros_like(self.flat)
        self.state = state
        self._blocks = None
        k = self.flat.shape[0]
        views: list[torch.Tensor] = []
        offset = 0
        for shape in self.shapes:
            n = math.prod(shape)
            views.append(self.flat[:, offset : offset + n].view(k, *shape))
            offset += n
        self.weights, self.biases = views[0::2], views[1::2]

    # --- schedules ---------------------------------------------------------------------------------------

    def _schedule_table(self, m: _Member) -> tuple[list[float], list[float]]:
        """The LR and momentum of every optimizer step, from the member's own torch scheduler, stepped
        where a training loop steps it. Live-stepped (metric) families get their first epoch only."""
        group = m.proxy.param_groups[0]
        lrs: list[float] = []
        moms: list[float] = []
        spe = self.steps_per_epoch
        with _proxy_steps():
            for _ in range(1 if m.family.needs_metric else self.epochs):
                if m.family.per_step:
                    for _ in range(spe):
                        lrs.append(float(group["lr"]))
                        moms.append(_momentum_of(group, self.optimizer))
                        m.scheduler.step()
                else:
                    lrs += [float(group["lr"])] * spe
                    moms += [_momentum_of(group, self.optimizer)] * spe
                    if not m.family.needs_metric:
                        m.scheduler.step()
        pad = self.total_steps - len(lrs)
        return lrs + [math.nan] * pad, moms + [math.nan] * pad

    def _step_live_schedules(self, val_losses: list[float]) -> None:
        """ReduceLROnPlateau members: step on their own validation loss, then fill their next epoch's rows."""
        spe = self.steps_per_epoch
        for row, m in enumerate(self.members):
            if m.family.needs_metric:
                with _proxy_steps():
                    schedules.step_scheduler(m.scheduler, m.family, val_losses[row])
                nxt = slice((m.epoch + 1) * spe, (m.epoch + 2) * spe)
                if nxt.start < self.total_steps:
                    group = m.proxy.param_groups[0]
                    self.lr_table[row, nxt] = float(group["lr"])
                    self.mom_table[row, nxt] = _momentum_of(group, self.optimizer)

    # --- model -------------------------------------------------------------------------------------------

    @staticmethod
    def _layer(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # One output (binary tasks): a batched matrix-vector product is a slow case of the batched matmul
        # (forward and backward measured 2.2x faster at K=256 as a product and a sum).
        return torch.mul(h, w.mT).sum(-1, keepdim=True) + b if w.shape[-1] == 1 else torch.baddbmm(b, h, w)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, features) -> logits (K, B, outputs), for evaluation (no dropout)."""
        h = x
        last = len(self.weights) - 1
        for j, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = self._layer(h, w, b)
            if j < last:
                h = self.activation(h)
        return h

    @torch.no_grad()
    def _gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step's forward and backward pass: every member's gradient of its own mean loss on
        its batch x (K, B, features), labels y (K, B), written into ``self.grad``; returns the losses (K,).

        Autograd's engine and its accumulation into the gradient buffer cost about 0.15 ms a step here,
        as much as the arithmetic of a 16-member population; so the backward pass is written out: the
        operations autograd runs for these layers (``baddbmm``'s and the product-and-sum's derivatives,
        torch's own kernels for the activations' and the losses'), then one ``cat`` into the gradient
        buffer instead of zeroing it and accumulating into it (``bmm(out=)`` into the buffer's strided
        views measured slower). Measured in the training loop against autograd (2-core CPU, alternating
        runs, ms a trial): 22-23 vs 27-29 at K=16, 11-12 vs 13-14 at K=128, 13 vs 14 at K=256. The
        tests check that its gradients equal autograd's.
        """
        k, batch = y.shape
        saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        h = x
        last = len(self.weights) - 1
        for w, b in zip(self.weights[:last], self.biases[:last], strict=True):
            z = torch.baddbmm(b, h, w)
            a = self.activation(z)
            mask = None
            if self.dropout > 0:  # F.dropout's arithmetic on CPU, keeping the mask for the backward pass
                mask = torch.empty_like(a).bernoulli_(1 - self.dropout).div_(1 - self.dropout)
            saved.append((h, z, a, mask))
            h = a if mask is None else a * mask
        w, b = self.weights[last], self.biases[last]
        logits = self._layer(h, w, b)
        # d(mean over the batch) / d(each row's loss): the mean's backward, for every member at once.
        per_row = self._one.expand(k, batch).div(batch)
        if self.binary:
            loss = mean_loss(logits, y)  # the reference trainer's loss
            z = logits.squeeze(-1)
            g = ((torch.sigmoid(z) - y) * per_row).unsqueeze(-1)
        else:
            flat_logits = logits.reshape(-1, logits.shape[-1])
            log_p = torch.log_softmax(flat_logits, 1)
            row_loss, total_weight = torch.ops.aten.nll_loss_forward(log_p, y.reshape(-1), None, 0, -100)
            loss = row_loss.view(k, batch).mean(-1)
            g = torch.ops.aten.nll_loss_backward(
                per_row.reshape(-1), log_p, y.reshape(-1), None, 0, -100, total_weight
            )
            g = torch.ops.aten._log_softmax_backward_data(g, log_p, 1, log_p.dtype).view(logits.shape)
        grads: list[torch.Tensor] = []  # gradients of the layers from the last: bias, then weight
        if w.shape[-1] == 1:
            grads += [g.sum(1, keepdim=True), (g * h).sum(1, keepdim=True)]
            g = g * w.mT
        else:
            grads += [g.sum(1, keepdim=True), torch.bmm(h.mT, g)]
            g = torch.bmm(g, w.mT)
        for j in range(last - 1, -1, -1):
            h_in, z, a, mask = saved[j]
            if mask is not None:
                g = g * mask
            g = self.activation_backward(g, z, a)
            grads += [g.sum(1, keepdim=True), torch.bmm(h_in.mT, g)]
            if j > 0:
                g = torch.bmm(g, self.weights[j].mT)
        torch.cat([t.reshape(k, -1) for t in reversed(grads)], 1, out=self.grad)
        return loss

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.weights[0].shape[0]
        logits = self.forward(x.expand(k, *x.shape))
        loss, correct = loss_and_correct(logits, y.expand(k, *y.shape))
        return loss, correct.to(torch.float64) / len(y)

    # --- the optimizer update (torch's arithmetic over the member axis) ----------------------------------

    @torch.no_grad()
    def _update(self, lr: torch.Tensor, mom: torch.Tensor) -> None:
        """One optimizer step for every member at once; lr and mom are (K,), one per member."""
        for cohort in self._steps:
            self._steps[cohort] += 1
        p, grad, state = self.flat, self.grad, self.state
        lr_k, mom_k, wd_k = lr[:, None], mom[:, None], self.wd[:, None]
        decays = self.decays
        if self.optimizer == "sgd":
            if decays:
                grad = grad + wd_k * p  # torch: grad.add(param, alpha=weight_decay)
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                # A member that joined later has a zero row here: 0 * momentum + grad is torch's first
                # step's clone of the gradient, exactly.
                buf.mul_(mom_k).add_(grad)  # dampening 0
            p.sub_(lr_k * buf)
            return
        if self.optimizer == "adamw":
            if decays:
                p.mul_(1 - lr_k * wd_k)
        elif decays:
            grad = grad + wd_k * p  # Adam's L2 term, per member
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            if self._torch_adam:  # scratch for torch's Adam below, zero between steps (compacts to zero)
                state["direction"] = torch.zeros_like(p)
            self._blocks = None
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        cohorts = self._cohort_rows
        if self._torch_adam:
            # torch's own Adam (its functional form, fused where the device has the kernel) with LR 1 on the
            # zero direction buffer leaves -m_hat / (sqrt(v_hat) + eps) in it, which each member then takes
            # times its own LR. Measured at K=256: 1.3 ms a step against 7.2 ms for the same arithmetic
            # written out over the member axis (below, for a beta1 that varies by step). Members that
            # joined at different times are different tensors to it (row blocks), each with its own step.
            direction = state["direction"]
            if self._blocks is None:  # views of each cohort's rows and its step, made once while they hold
                blocks = [slice(first, end) for _, first, end in cohorts]
                self._blocks = [[t[b] for b in blocks] for t in (direction, self.grad, exp_avg, exp_avg_sq)]
                self._blocks.append([self._step_tensors[c] for c, _, _ in cohorts])
            directions, grads, exp_avgs, exp_avg_sqs, steps = self._blocks
            if grad is not self.grad:  # Adam's L2 term made a new gradient
                grads = [grad[first:end] for _, first, end in cohorts]
            adam(
                directions,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                fused=self._fused,
                amsgrad=False,
                beta1=ADAM_BETAS[0],
                beta2=ADAM_BETAS[1],
                lr=1.0,
                weight_decay=0.0,
                eps=ADAM_EPS,
                maximize=False,
            )
            p.addcmul_(direction, lr_k)
            direction.zero_()
            return
        beta2 = ADAM_BETAS[1]
        exp_avg.lerp_(grad, 1 - mom_k)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if len(cohorts) == 1:
            step = self._steps[cohorts[0][0]]
            bias_correction1 = 1 - mom_k**step
            bias_correction2_sqrt: float | torch.Tensor = math.sqrt(1 - beta2**step)
        else:
            counts = [self._steps[c] for c, first, end in cohorts for _ in range(first, end)]
            step_k = torch.tensor(counts, dtype=torch.float64)[:, None]
            bias_correction1 = 1 - mom_k ** step_k.to(device=p.device, dtype=p.dtype)
            bias_correction2_sqrt = (1 - beta2**step_k).sqrt().to(device=p.device, dtype=p.dtype)
        denom = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(ADAM_EPS)
        p.sub_(exp_avg.div(denom).mul_(lr_k / bias_correction1))

    # --- freezing ----------------------------------------------------------------------------------------

    def _keep(self, rows: list[int]) -> None:
        """Compact the population to the given rows: frozen members stop costing compute."""
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        self._set_flat(self.flat[idx], {k: v[idx] for k, v in self.state.items()})
        cpu_idx = torch.tensor(rows, dtype=torch.long)
        self.lr_table, self.mom_table = self.lr_table[cpu_idx], self.mom_table[cpu_idx]
        self.wd = self.wd[idx]
        self.members = [self.members[r] for r in rows]
        alive = {m.cohort for m in self.members}
        for cohort in [c for c in self._steps if c not in alive]:
            del self._steps[cohort], self._step_tensors[cohort]
        self._set_adam_path()

    # --- training ----------------------------------------------------------------------------------------

    def train(
        self,
        on_epoch: Callable[[int, EpochMetrics], bool | None] | None = None,
        on_done: Callable[[int, TrialResult], None] | None = None,
        refill: Callable[[int], Sequence[Joiner]] | None = None,
    ) -> list[TrialResult]:
        """Train every member; ``on_epoch(member_index, metrics)`` returning True freezes that member.
        ``on_done(member_index, result)`` is called as soon as a member's result is final (it diverged, was
        stopped, or ran its epochs), so that a caller can store it while the others train.

        ``refill(free)``, called at each epoch's end after ``on_done`` when fewer members than the
        population started with go on, returns members to add (:meth:`add`), at most ``free``; training
        ends when no member goes on and none joins. Returns the results of the members the population started
        with, then of those that joined, in that order.

        A member's ``seconds`` is its share of the population's time: each epoch's time divided evenly
        among the members that trained in it (the members' seconds add up to the population's)."""
        results = [m.result for m in self.members]
        capacity = len(self.members)
        x_train, y_train = self.task.x_train, self.task.y_train
        dev = self.device
        spe = self.steps_per_epoch
        for r in results:
            r.seconds = 0.0
        clock = time.perf_counter()
        while self.members:
            k = len(self.members)
            order = torch.stack(
                [torch.randperm(self.n_train, generator=m.generator) for m in self.members]
            ).to(dev)
            firsts = [m.epoch * spe for m in self.members]
            if len(set(firsts)) == 1:
                lrs = self.lr_table[:, firsts[0] : firsts[0] + spe]
                moms = self.mom_table[:, firsts[0] : firsts[0] + spe]
            else:  # members that joined at different times are at different epochs of their own
                cols = torch.tensor(firsts)[:, None] + torch.arange(spe)
                lrs, moms = self.lr_table.gather(1, cols), self.mom_table.gather(1, cols)
            # The epoch's LRs, momenta and batches, each split into its steps in one operation (a step costs
            # per operation at small K: about 5 % of an epoch at K=13 against slicing step by step).
            lr_steps = lrs.to(device=dev, dtype=torch.float32).unbind(1)
            mom_steps = moms.to(device=dev, dtype=torch.float32).unbind(1)
            # Each member's epoch of data in its own order, gathered once: batches are then plain slices.
            # index_select with the flattened order: 0.4 ms at K=256 against 3.2 ms for x_train[order].
            flat_order = order.view(-1)
            y_epoch = y_train.index_select(0, flat_order).view(k, -1)
            if self.binary:
                y_epoch = y_epoch.to(torch.float32)  # the binary loss's labels, converted once an epoch
            x_epoch = x_train.index_select(0, flat_order).view(k, self.n_train, -1)
            x_batches, y_batches = x_epoch.split(self.batch_size, 1), y_epoch.split(self.batch_size, 1)
            losses = []
            for i in range(spe):
                loss = self._gradients(x_batches[i], y_batches[i])
                self._update(lr_steps[i], mom_steps[i])
                losses.append(loss)
            step_losses = torch.stack(losses)

            # One host sync per epoch: divergence, train / validation metrics.
            finite = torch.isfinite(step_losses).all(0)
            train_loss = (step_losses * self.batch_weights[:, None]).sum(0) / self.n_train
            val_loss, val_acc = self.evaluate(self.task.x_val, self.task.y_val)
            finite_l, train_l = finite.tolist(), train_loss.tolist()
            val_loss_l, val_acc_l = val_loss.tolist(), val_acc.tolist()
            lr_lists = lrs.tolist()
            bad_steps = None
            keep: list[int] = []
            for row, m in enumerate(self.members):
                r = m.result
                r.lrs.extend(lr_lists[row])
                r.epochs_run = m.epoch + 1
                if not finite_l[row] or not math.isfinite(val_loss_l[row]):
                    if bad_steps is None:
                        bad_steps = (~torch.isfinite(step_losses)).cpu()
                    bad = bad_steps[:, row].nonzero()
                    r.diverged = True
                    r.diverged_step = firsts[row] + (int(bad[0]) if len(bad) else spe - 1)
                    continue
                r.train_loss.append(train_l[row])
                r.val_loss.append(val_loss_l[row])
                r.val_accuracy.append(val_acc_l[row])
                metrics = EpochMetrics(m.epoch, train_l[row], val_loss_l[row], val_acc_l[row])
                if on_epoch is not None and on_epoch(m.index, metrics):
                    r.stopped_early = True
                keep.append(row)
            self._step_live_schedules(val_loss_l)
            done = [
                row
                for row in keep
                if self.members[row].epoch == self.epochs - 1 or self.members[row].result.stopped_early
            ]
            if done:
                self._finish(done)
            for m in self.members:
                m.epoch += 1
            going = sorted(set(keep) - set(done))
            ended = [m for row, m in enumerate(self.members) if row not in going]
            share = (time.perf_counter() - clock) / k
            for m in self.members:
                m.result.seconds += share
            if on_done is not None:
                for m in ended:
                    on_done(m.index, m.result)
            joiners = refill(capacity - len(going)) if refill is not None and len(going) < capacity else ()
            if len(joiners) > capacity - len(going):
                raise ValueError(f"{len(joiners)} members cannot join {capacity - len(going)} free places")
            if not going and not joiners:
                break  # the last members stay (member_weights)
            if len(going) < len(self.members):
                self._keep(going)
            if joiners:
                self.add(joiners)
                results += [m.result for m in self.members[len(going) :]]  # fresh: seconds 0
            clock = time.perf_counter()  # the callbacks' time is the caller's, not training's
        return results

    def _finish(self, rows: list[int]) -> None:
        """Test metrics for members that end here (complete or stopped early)."""
        if not rows:
            return
        loss, acc = self.evaluate(self.task.x_test, self.task.y_test)
        loss_l, acc_l = loss.tolist(), acc.tolist()
        for row in rows:
            r = self.members[row].result
            r.test_loss, r.test_accuracy = loss_l[row], acc_l[row]

    def member_weights(self, index: int) -> list[torch.Tensor]:
        """Member ``index`` (caller's numbering) weights in nn.Linear layout: [W1 (out, in), b1, W2, ...]."""
        row = next(r for r, m in enumerate(self.members) if m.index == index)
        out: list[torch.Tensor] = []
        for w, b in zip(self.weights, self.biases, strict=True):
            out += [w[row].detach().t(), b[row].detach().squeeze(0)]
        return out


def train_population(
    task: Task,
    cfgs: Sequence[TrainConfig],
    on_epoch: Callable[[int, EpochMetrics], bool | None] | None = None,
    built: Sequence[ProxySchedule] | None = None,
    on_done: Callable[[int, TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Train many trials at once, grouped into populations by :func:`group_key`; results in input order.
    ``built``: the trials' :func:`proxy_schedule` where the caller has them (see :class:`Population`).
    ``on_epoch`` and ``on_done`` as in :meth:`Population.train`, with the trials' indices."""
    results: list[TrialResult | None] = [None] * len(cfgs)
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, c in enumerate(cfgs):
        groups.setdefault(group_key(c), []).append(i)
    for indices in groups.values():
        pop = Population(task, [cfgs[i] for i in indices], [built[i] for i in indices] if built else None)

        def hook(j: int, m: EpochMetrics, indices: list[int] = indices) -> bool | None:
            return on_epoch(indices[j], m) if on_epoch is not None else None

        def done(j: int, r: TrialResult, indices: list[int] = indices) -> None:
            if on_done is not None:
                on_done(indices[j], r)

        for j, r in enumerate(pop.train(hook, done)):
            results[indices[j]] = r
    if any(r is None for r in results):  # pragma: no cover
        raise UserError("population training lost a trial")
    return [r for r in results if r is not None]
