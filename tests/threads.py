"""Pinning torch's CPU thread count for tests that compare floats computed in two places.

A float sum computed with 1 thread and with 2 threads is reduced in a different order, so the two results differ
in the last bits; how much depends on the CPU's kernels (an AMD EPYC and an Intel Xeon choose different ones).
Tests that compare numbers made in another process (a sweep worker, a gloo rank) against numbers made in the test
process run both sides under one thread count, so that only what the test is about differs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(count)``; restore the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
