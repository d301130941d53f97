"""A model's optional abilities are declared on FlowModel with their defaults, never probed with getattr."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import creditzoo
from creditzoo.models import ModelError, load_model
from creditzoo.models.base import FlowModel
from creditzoo.sampling import flow_sigmas

ABILITIES = {name for name, value in vars(FlowModel).items() if not name.startswith("_")} | {"sample_shape"}
"""Everything FlowModel declares (attributes and methods)."""

PACKAGE = Path(creditzoo.__file__).parent


class Bare(FlowModel):
    """Declares nothing beyond the three required methods: every ability takes its default."""

    sample_shape = (3, 4, 4)

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        return {"rows": torch.arange(len(prompts))}

    def velocity(self, latents, sigma, cond, *, guidance_scale=1.0):
        return torch.zeros_like(latents)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


def plain_module() -> torch.nn.Module:
    """A ``package.module:function`` model that is an nn.Module but no FlowModel."""
    return torch.nn.Linear(2, 2)


def test_a_bare_model_gets_every_default() -> None:
    model = Bare()
    assert (model.lora_target_modules, model.default_lora_rank, model.default_lora_alpha) == ((), 16, None)
    assert model.default_shift == 1.0 and not model.supports_gradient_checkpointing
    assert not model.exports_diffusers_lora
    # the default grid is the sampler's shifted rectified-flow grid (checked against diffusers in test_sampling)
    assert torch.equal(model.sigma_grid(4, 3.0), flow_sigmas(4, 3.0))
    assert not torch.equal(model.sigma_grid(4, 3.0), model.sigma_grid(4))  # the shift reaches it
    cond = model.encode_prompts(["a", "b"])
    assert model.with_text_features(cond) is cond
    model.check_prompts(["any words at all", "zzz"])  # accepts any text
    with pytest.raises(ValueError, match="Bare does not support gradient checkpointing"):
        model.enable_gradient_checkpointing()
    with pytest.raises(NotImplementedError):
        model.save_diffusers_lora("unused", {}, None)


def test_load_model_refuses_a_module_that_is_no_flow_model() -> None:
    with pytest.raises(ModelError, match="built a Linear, not a creditzoo.models.base.FlowModel") as error:
        load_model("test_model_abilities:plain_module", device=torch.device("cpu"))
    assert "\n" not in str(error.value)
    assert isinstance(load_model("test_model_abilities:Bare", device=torch.device("cpu")), Bare)


def test_no_ability_is_probed_with_getattr_or_hasattr() -> None:
    """A getattr(model, "default_shift", ...) anywhere in the package would hide a missing declaration."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
                    name = node.args[1]
                    if isinstance(name, ast.Constant) and name.value in ABILITIES:
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name.value}")
    assert ABILITIES >= {"default_shift", "sigma_grid", "lora_target_modules", "with_text_features"}
    assert found == []
