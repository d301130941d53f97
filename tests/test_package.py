"""Package-level rules: light imports, the registries, GPU precision (skipped without CUDA)."""

import pytest
import torch
from import_probe import loaded_by

from creditzoo.sampling import sde_step


def test_algorithms_import_nothing_heavy() -> None:
    heavy = ("diffusers", "transformers", "seaborn", "peft", "scipy")
    assert loaded_by("creditzoo.algorithms, creditzoo.rollout, creditzoo.sampling", heavy, timeout=120) == []


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_log_prob_on_gpu(dtype: torch.dtype) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(8, 16, 64, 64, device="cuda", generator=gen)
    v = torch.randn(8, 16, 64, 64, device="cuda", generator=gen)
    exact = sde_step(v, x, 0.7, 0.6, noise_level=0.7, generator=gen)
    low = sde_step(v.to(dtype), x.to(dtype), 0.7, 0.6, noise_level=0.7, prev_sample=exact.prev_sample.to(dtype))
    assert low.log_prob.dtype == torch.float32
    # the sample itself is rounded to the low precision; the density is still computed in float32
    assert (low.log_prob - exact.log_prob).abs().max().item() < 0.05
