"""The pieces of the learner's update: which rows each minibatch trains, and the statistics it reports.

:meth:`GRPOLearner.update <creditzoo.learner.grpo.GRPOLearner.update>` is these pieces in order:

1. :func:`minibatch_plan`: keep the groups with a learning signal, shuffle them into minibatches once per epoch,
   and list per minibatch and window step the global rows that train the step and the ones this process sampled.
2. for each minibatch and window step, the model's forward passes and
   :func:`~creditzoo.learner.loss.step_loss` (the surrogate, weighted, plus beta times the KL), added up in a
   :class:`StepSums`;
3. the sums over the processes, the gradient clip and the AdamW step, recorded in :class:`UpdateStatistics`,
   whose :meth:`~UpdateStatistics.summary` is the update's part of the metrics line.

The plan and the statistics are pure bookkeeping (no model, no process group): tests check them on small tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from creditzoo.learner.distributed import Processes
from creditzoo.learner.loss import StepLoss


def kept_rows(advantages: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """The rows of the groups that carry a learning signal: some row of the group has a nonzero advantage.

    A group whose advantages are all zero (e.g. every sample got the same reward) adds nothing to the loss, so its
    rows are dropped before the minibatches are drawn.

    Args:
        advantages: [B, K] advantages (as clipped for the loss).
        group_ids: int64 [B], ids 0 .. P-1.

    Returns:
        int64 [B'], the kept rows in ascending order.
    """
    signal = (advantages != 0).any(dim=1).float()  # [B]
    group_has_signal = torch.zeros(int(group_ids.max()) + 1).index_add_(0, group_ids, signal) > 0  # [P]
    return group_has_signal[group_ids].nonzero().squeeze(1)  # [B']


@dataclass(frozen=True)
class Minibatch:
    """The rows of one optimizer step, all as global row indices.

    Attributes:
        epoch: the pass over the kept rows it belongs to (0-based).
        part: its place among the epoch's ``updates_per_iteration`` minibatches (0-based).
        rows: int64 [M], the minibatch's rows in shuffled order; the loss of every step is divided by M.
        trained: per window step k, int64 [M_k], the rows of ``rows`` that train step k (all of them without a
            random step subset), in the order of ``rows``.
        local: per window step k, int64 [m_k], the rows of ``trained[k]`` this process sampled (all of them with
            one process).
    """

    epoch: int
    part: int
    rows: torch.Tensor
    trained: tuple[torch.Tensor, ...]
    local: tuple[torch.Tensor, ...]

    @property
    def size(self) -> int:
        """M, the number of rows (over every process): what each step's loss is divided by."""
        return self.rows.numel()


@dataclass(frozen=True)
class MinibatchPlan:
    """Every minibatch of one update, in the order they are trained.

    Attributes:
        kept: int64 [B'], the rows of groups with a signal (:func:`kept_rows`).
        minibatches: the non-empty minibatches, epoch by epoch.
        steps_per_sample: how many window steps each sample trains (K, or the random subset's size); each step's
            loss is divided by it, so a sample's loss is the mean over its trained steps.
    """

    kept: torch.Tensor
    minibatches: tuple[Minibatch, ...]
    steps_per_sample: int


def minibatch_plan(
    kept: torch.Tensor,
    *,
    epochs: int,
    minibatches: int,
    seed: int,
    num_steps: int,
    mask: torch.Tensor | None = None,
    local: slice | None = None,
) -> MinibatchPlan:
    """Shuffle the kept rows into minibatches, once per epoch, and list what each window step trains.

    Each epoch draws one permutation of ``kept`` from a CPU generator seeded with ``seed`` (epoch after epoch,
    from the same generator) and splits it into ``minibatches`` nearly equal parts (``Tensor.tensor_split``:
    the first parts take one row more); empty parts are left out. The plan depends only on the global rows, so
    every process computes the same one; ``local`` picks the rows a process evaluates.

    Args:
        kept: int64 [B'], the rows to train (:func:`kept_rows`); none: an empty plan.
        epochs: passes over the kept rows (``inner_epochs``).
        minibatches: minibatches per epoch (``updates_per_iteration``).
        seed: the shuffle's seed (``derive_seed(seed, iteration, "minibatch")``).
        num_steps: K, the window's steps.
        mask: bool [B, K], the steps each row trains (random step subset), or None for all.
        local: the global rows this process sampled (``Shard.rows``), or None for all (one process).

    Returns:
        :class:`MinibatchPlan`.
    """
    generator = torch.Generator().manual_seed(seed)
    steps_per_sample = num_steps if mask is None else int(mask[0].sum())
    plan = []
    for epoch in range(epochs if kept.numel() else 0):
        order = kept[torch.randperm(kept.numel(), generator=generator)]  # [B']
        for part, rows in enumerate(order.tensor_split(minibatches)):
            if rows.numel() == 0:
                continue
            trained = tuple(rows if mask is None else rows[mask[rows, k]] for k in range(num_steps))
            mine = tuple(t if local is None else t[(t >= local.start) & (t < local.stop)] for t in trained)
            plan.append(Minibatch(epoch=epoch, part=part, rows=rows, trained=trained, local=mine))
    return MinibatchPlan(kept=kept, minibatches=tuple(plan), steps_per_sample=steps_per_sample)


@dataclass
class StepSums:
    """What one minibatch's window steps add up to on this process (then, after :meth:`reduce`, on all).

    Attributes:
        sums: float64 [K, 4], per window step: the loss, the KL, the clipped rows (clip fraction times rows) and
            the trained rows (over every process).
        deviation: float64 scalar, the largest |ratio - 1| of the minibatch.
        evals: the model evaluations this process spent (policy forward and backward, reference forward).
    """

    sums: torch.Tensor
    deviation: torch.Tensor
    evals: int = 0

    @classmethod
    def zeros(cls, num_steps: int) -> StepSums:
        """Empty sums for a window of ``num_steps`` steps."""
        return cls(torch.zeros(num_steps, 4, dtype=torch.float64), torch.zeros((), dtype=torch.float64))

    def count(self, k: int, trained_rows: int) -> None:
        """Record that ``trained_rows`` rows (over every process) train step ``k`` of this minibatch."""
        self.sums[k, 3] = trained_rows

    def add(self, k: int, rows: int, step: StepLoss) -> None:
        """Record step ``k``'s loss on ``rows`` rows of this process (:func:`~creditzoo.learner.loss.step_loss`)."""
        self.sums[k, 0] = float(step.loss.detach())
        if step.kl is not None:
            self.sums[k, 1] = float(step.kl.detach())
        self.sums[k, 2] = float(step.surrogate.clip_fraction) * rows
        self.deviation = torch.maximum(self.deviation, (step.surrogate.ratio - 1).abs().max().double().cpu())

    def reduce(self, processes: Processes) -> None:
        """Sum the loss, KL and clipped rows over the processes and take the largest deviation (one process: as is)."""
        self.sums[:, :3] = processes.sum(self.sums[:, :3])
        self.deviation = processes.max(self.deviation)


@dataclass
class UpdateStatistics:
    """The update's statistics, gathered minibatch by minibatch (global numbers, after :meth:`StepSums.reduce`).

    Attributes:
        with_kl: whether the KL term is on (beta > 0); without it no KL is reported.
        loss: per trained (minibatch, step): the step's loss summed over processes.
        kl: per trained (minibatch, step): the step's KL (only ``with_kl``).
        clip_fraction: per trained (minibatch, step): clipped rows / trained rows.
        grad_norm: per minibatch: the gradient norm before clipping.
        ratio_dev: per minibatch: the largest |ratio - 1|.
        first_ratio_dev: ``ratio_dev`` of the first minibatch of the first epoch (NaN until there is one).
        evals: this process's model evaluations so far.
    """

    with_kl: bool
    loss: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    clip_fraction: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    ratio_dev: list[float] = field(default_factory=list)
    first_ratio_dev: float = float("nan")
    evals: int = 0

    def add(self, minibatch: Minibatch, sums: StepSums, grad_norm: torch.Tensor) -> None:
        """Record one minibatch: its reduced ``sums`` and its gradient norm; steps no row trained are skipped."""
        table = sums.sums
        for k in table[:, 3].nonzero().squeeze(1).tolist():
            self.loss.append(float(table[k, 0]))
            self.clip_fraction.append(float(table[k, 2] / table[k, 3]))
            if self.with_kl:
                self.kl.append(float(table[k, 1]))
        deviation = float(sums.deviation)
        self.grad_norm.append(float(grad_norm))
        self.ratio_dev.append(deviation)
        if minibatch.epoch == 0 and minibatch.part == 0:
            self.first_ratio_dev = deviation
        self.evals += sums.evals

    def summary(self, plan: MinibatchPlan, batch_size: int, window_start: int, window_size: int) -> dict:
        """The update's part of the metrics line (docs/run-directory.md, metrics.jsonl).

        Means over the trained (minibatch, step) pairs for ``loss``, ``kl`` and ``clip_fraction``, over the
        minibatches for ``grad_norm``; None where nothing was trained. ``train_evals`` is this process's count
        (the learner sums it over the processes).

        Args:
            plan: the update's plan.
            batch_size: B, the global batch size (``kept_fraction`` = B' / B).
            window_start: the SDE window's first step.
            window_size: K.
        """
        lists = {"loss": self.loss, "kl": self.kl, "clip_fraction": self.clip_fraction, "grad_norm": self.grad_norm}
        mean = {name: (float(np.mean(values)) if values else None) for name, values in lists.items()}
        trained = plan.kept.numel() > 0
        return {
            **mean,
            "ratio_dev_first_update": self.first_ratio_dev if trained else None,
            "ratio_dev_max": max(self.ratio_dev) if self.ratio_dev else None,
            "kept_fraction": plan.kept.numel() / batch_size,
            "window_start": window_start,
            "trained_step_fraction": plan.steps_per_sample / window_size,
            "train_evals": self.evals,
        }
