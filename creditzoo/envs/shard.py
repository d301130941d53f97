"""Which slice of the global batch a process samples, and noise drawn independently of that slice.

With N processes (``accelerate launch``, ``torchrun``) the learner keeps prompt groups whole and gives process r
the r-th of N equal, contiguous blocks of groups (docs/design.md, "Multi-process"). So that a sample's noise does
not depend on N, every draw is made for the global batch from the same seed and each process keeps its own
block: the same global sample gets the same initial noise and the same SDE noise whatever N is, and with N = 1
the draws are exactly those of a plain ``torch.randn`` of the local shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """Block ``index`` of ``count`` equal, contiguous blocks along the leading (batch or group) dimension.

    Attributes:
        index: this process's block, 0 .. count - 1 (its rank).
        count: the number of blocks (the number of processes), >= 1.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..count - 1 with count >= 1, got {self.index} of {self.count}")

    def rows(self, local: int) -> slice:
        """The global rows [index * local, (index + 1) * local) of a block of ``local`` rows."""
        return slice(self.index * local, (self.index + 1) * local)


def draw_normal(
    generator: torch.Generator,
    shape: tuple[int, ...] | torch.Size,
    shard: Shard | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of the local ``shape``, cut from one draw for the global batch.

    Args:
        generator: the generator to draw from (on the device the noise is drawn on).
        shape: the local shape [n, ...]; the global draw is [n * shard.count, ...].
        shard: this process's block (None: the whole batch, a plain draw of ``shape``).
        dtype: the dtype of the draw.

    Returns:
        [n, ...] rows ``shard.rows(n)`` of the global draw, on the generator's device.
    """
    shard = shard or Shard()
    local = int(shape[0])
    full = torch.randn((local * shard.count, *shape[1:]), generator=generator, device=generator.device, dtype=dtype)
    return full[shard.rows(local)]
