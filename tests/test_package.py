"""Package-level rules: light imports, the registries, GPU precision (skipped without CUDA)."""

from pathlib import Path

import pytest
import torch
from import_probe import loaded_by

from creditzoo.sampling import sde_step


@pytest.mark.slow
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


def test_the_code_cites_the_users_math_page_not_an_internal_spec() -> None:
    """Docstrings cite docs/math.md (which users have) by a section number that exists there."""
    import re

    root = Path(__file__).resolve().parents[1]
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", (root / "docs" / "math.md").read_text(), re.M))
    for path in sorted((root / "creditzoo").rglob("*.py")):
        text = path.read_text()
        assert "ALGORITHMS.md" not in text, f"{path} cites ALGORITHMS.md, which users do not have"
        for match in re.finditer(r"docs/math\.md,? sections? ([\d., and-]+)", text):
            for number in re.findall(r"\d+(?:\.\d+)?", match.group(1)):
                assert number in headings, f"{path}: docs/math.md has no section {number}"
