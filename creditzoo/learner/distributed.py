"""Several processes training one policy: placement of the groups, gathers and all-reduces.

``accelerate launch`` (or ``torchrun``) starts N copies of ``creditzoo train`` and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`from_environment` joins them in a
``torch.distributed`` process group (NCCL on CUDA, gloo on the CPU). The learner then keeps prompt groups whole:
process r samples the r-th of N equal, contiguous blocks of the iteration's groups, the rewards and log-probs
are gathered so that credit (group statistics, ``std_mode="global"``, TP-GRPO's batch-global balancing) is
computed on the global batch on every process, and every process trains its own rows of each global minibatch,
with the loss divided by the global minibatch size and the LoRA gradients summed across processes, so the
update equals one process's update on the global batch (docs/design.md, "Multi-process").

Without a launcher (``WORLD_SIZE`` unset or 1) :class:`Processes` is the single process and every method is an
identity, so nothing changes for a plain run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

from creditzoo.envs.shard import Shard

T = TypeVar("T")

TIMEOUT = timedelta(hours=2)
"""How long a process waits at a collective, e.g. while the main process evaluates and writes a checkpoint."""


@dataclass(frozen=True)
class Processes:
    """The place of this process among the N training processes.

    Attributes:
        rank: this process, 0 .. world_size - 1; rank 0 is the main process (it alone writes files).
        world_size: N, the number of processes.
        device: where collectives run (the CPU for gloo, this process's GPU for NCCL).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in 0..{self.world_size - 1} and world_size >= 1, got {self.rank}")

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, records, metrics and evaluations."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        """The block of the global batch this process samples (for noise drawn independently of N)."""
        return Shard(index=self.rank, count=self.world_size)

    def check_split(self, prompts_per_iteration: int) -> None:
        """Fail in one line unless the iteration's groups split evenly over the processes (see :func:`check_split`)."""
        check_split(prompts_per_iteration, self.world_size)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's ``tensor`` [n, ...] along dim 0 in rank order: [N * n, ...].

        Every process must pass the same shape; the result lies on ``tensor``'s device.
        """
        if self.world_size == 1:
            return tensor
        local = tensor.detach().to(self.device).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, local)
        return torch.cat(parts).to(tensor.device)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over the processes (a new tensor on ``tensor``'s device)."""
        return self._reduce(tensor, torch.distributed.ReduceOp.SUM if self.world_size > 1 else None)

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum of ``tensor`` over the processes (a new tensor on ``tensor``'s device)."""
        return self._reduce(tensor, torch.distributed.ReduceOp.MAX if self.world_size > 1 else None)

    def _reduce(self, tensor: torch.Tensor, op) -> torch.Tensor:
        if op is None:
            return tensor.clone()
        buffer = tensor.detach().to(self.device).clone()
        torch.distributed.all_reduce(buffer, op=op)
        return buffer.to(tensor.device)

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace every parameter's gradient by its sum over the processes.

        One all-reduce over the flattened gradients. The loss each process backpropagated was already divided by
        the global minibatch size, so the sum is the gradient of the global minibatch's loss. A gradient missing
        on one process (it had no rows in the minibatch) counts as 0; one missing on every process stays None,
        as it would with one process (AdamW then skips that parameter).
        """
        if self.world_size == 1:
            return
        parameters = list(parameters)
        present = self.sum(torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32)) > 0
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        flat = torch.cat([p.grad.reshape(-1).to(self.device, torch.float32) for p in parameters])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        start = 0
        for parameter, has_gradient in zip(parameters, present.tolist(), strict=True):
            size = parameter.grad.numel()
            parameter.grad.copy_(flat[start : start + size].view_as(parameter.grad))
            start += size
            if not has_gradient:
                parameter.grad = None

    def on_main(self, work: Callable[..., T], *args, **kwargs) -> T:
        """Run ``work(*args, **kwargs)`` on the main process only; hand its result (or exception) to every process.

        The others wait; an exception on the main process is raised on every process, so none is left waiting
        at the next collective.
        """
        if self.world_size == 1:
            return work(*args, **kwargs)
        outcome: list = [None]
        if self.is_main:
            try:
                outcome[0] = ("ok", work(*args, **kwargs))
            except Exception as error:  # handed to every process, then raised everywhere
                outcome[0] = ("error", error)
        torch.distributed.broadcast_object_list(outcome, src=0, device=self.device)
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.world_size > 1:
            torch.distributed.barrier()


def check_split(prompts_per_iteration: int, world_size: int) -> None:
    """Fail in one line unless ``prompts_per_iteration`` groups split into ``world_size`` equal blocks.

    Raises:
        ValueError: ``prompts_per_iteration`` is not a multiple of N (naming the nearest valid values).
    """
    if prompts_per_iteration % world_size:
        low = prompts_per_iteration // world_size * world_size
        valid = " or ".join(str(v) for v in (low, low + world_size) if v > 0)
        raise ValueError(
            f"prompts_per_iteration={prompts_per_iteration} does not split over {world_size} processes: each "
            f"process samples whole groups, so it must be a multiple of {world_size} (e.g. {valid})"
        )


def launched_world_size() -> int:
    """N as the launcher set it (``WORLD_SIZE``), 1 without a launcher; joins nothing."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def from_environment(device: torch.device) -> Processes:
    """The :class:`Processes` of this process, joining the launcher's process group when there is one.

    ``WORLD_SIZE`` > 1 (set by ``accelerate launch`` or ``torchrun``) initialises ``torch.distributed`` from
    the environment unless it is already initialised: NCCL when ``device`` is CUDA, else gloo.

    Args:
        device: the device this process's model runs on.

    Returns:
        :class:`Processes` (rank 0 of 1 without a launcher).
    """
    world_size = launched_world_size()
    if world_size <= 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return Processes()
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, timeout=TIMEOUT)
    backend = torch.distributed.get_backend()
    return Processes(
        rank=torch.distributed.get_rank(),
        world_size=torch.distributed.get_world_size(),
        device=device if backend == "nccl" else torch.device("cpu"),
    )


def process_device(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes this process's GPU, ``cuda:LOCAL_RANK``, under a launcher."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device
