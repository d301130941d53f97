"""``lora_compute=merged``: one operation with ``W + s * B @ A`` gives peft's function, gradients and adapter.

Tolerances: the merged layer sums the same products in another order, so a velocity differs from peft's by float32
rounding. A toy convolution sums at most 96 * 9 = 864 products and the network is about 20 layers deep, so a
relative error of a few 1e-5 of the output's scale bounds it (float32 epsilon 6e-8 * sqrt(864) * 20 ~ 3.5e-5);
the tests allow 1e-4 of the largest value.
"""

import dataclasses

import pytest
import torch
from test_learner import BASE, lora_snapshot, make_learner

from creditzoo.learner.lora import adapter_state, add_lora, compute_lora_merged, load_adapter_state
from creditzoo.models import load_model

ROUNDING = 1e-4  # relative to the largest value (module docstring)


def toy_policy(merged: bool, seed: int = 0) -> torch.nn.Module:
    """The shipped toy model with a LoRA whose B is random (peft starts it at 0, which would hide the adapter)."""
    policy = add_lora(load_model("toy", device=torch.device("cpu")), seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    if merged:
        compute_lora_merged(policy)
    return policy


def toy_inputs(policy: torch.nn.Module, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor, dict]:
    model = policy.get_base_model()
    generator = torch.Generator().manual_seed(7)
    latents = torch.randn(batch, *model.sample_shape, generator=generator)
    sigma = torch.rand(batch, generator=generator)
    prompts = ["two red circles", "one blue square", "a green triangle", "three cyan squares"]
    cond = model.encode_prompts(prompts[:batch])
    return latents, sigma, cond


def assert_rounding_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = expected.abs().max().item()
    assert (actual - expected).abs().max().item() <= ROUNDING * scale, "differs by more than float32 rounding"


def test_every_adapted_layer_of_the_toy_computes_merged() -> None:
    policy = toy_policy(merged=False)
    from peft.tuners.lora.layer import LoraLayer

    lora_layers = [m for m in policy.modules() if isinstance(m, LoraLayer)]
    assert compute_lora_merged(policy) == len(lora_layers) > 0


def test_merged_velocity_equals_peft_within_rounding_and_the_adapter_matters() -> None:
    peft_policy, merged_policy = toy_policy(merged=False), toy_policy(merged=True)
    latents, sigma, cond = toy_inputs(peft_policy)
    with torch.no_grad():
        expected = peft_policy.get_base_model().velocity(latents, sigma, cond)
        actual = merged_policy.get_base_model().velocity(latents, sigma, cond)
        with peft_policy.disable_adapter():
            base = peft_policy.get_base_model().velocity(latents, sigma, cond)
    assert_rounding_close(actual, expected)
    # the check is not vacuous: the adapter moves the velocity far more than the tolerance
    assert (expected - base).abs().max().item() > 100 * ROUNDING * expected.abs().max().item()


def test_disabled_adapter_gives_the_base_model_bit_for_bit() -> None:
    peft_policy, merged_policy = toy_policy(merged=False), toy_policy(merged=True)
    latents, sigma, cond = toy_inputs(peft_policy)
    with torch.no_grad():
        with peft_policy.disable_adapter():
            expected = peft_policy.get_base_model().velocity(latents, sigma, cond)
        with merged_policy.disable_adapter():
            actual = merged_policy.get_base_model().velocity(latents, sigma, cond)
    assert torch.equal(actual, expected)


def test_merged_gradients_of_a_and_b_equal_peft_within_rounding() -> None:
    grads = {}
    for merged in (False, True):
        policy = toy_policy(merged=merged)
        latents, sigma, cond = toy_inputs(policy)
        policy.get_base_model().velocity(latents, sigma, cond).square().mean().backward()
        grads[merged] = {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}
    assert grads[True].keys() == grads[False].keys()
    assert all(grad is not None for grad in grads[True].values())
    for name, expected in grads[False].items():
        actual = grads[True][name]
        scale = expected.abs().max().item()
        assert scale > 0, name
        assert (actual - expected).abs().max().item() <= 1e-3 * scale, name  # a backward adds one more layer of sums


def test_the_adapter_saved_is_peft_s_own() -> None:
    peft_state, merged_state = adapter_state(toy_policy(merged=False)), adapter_state(toy_policy(merged=True))
    assert merged_state.keys() == peft_state.keys()
    assert all(torch.equal(merged_state[k], peft_state[k]) for k in peft_state)


def test_a_merged_run_samples_with_the_weights_it_updates() -> None:
    """The ratio is 1 at every iteration's first update: sampling sees the adapter the update differentiates."""
    learner = make_learner(lora_compute="merged", updates_per_iteration=1)
    before = lora_snapshot(learner)
    for iteration in (1, 2, 3):
        metrics = learner.iteration(iteration).metrics
        assert metrics["ratio_dev_first_update"] < 1e-5, iteration
    after = lora_snapshot(learner)
    assert any(not torch.equal(before[n], after[n]) for n in before)  # B moved, so iterations 2-3 used the adapter


def test_a_merged_run_follows_peft_s_first_iteration() -> None:
    """With B = 0 the merged weight is W exactly, so the first sampling is peft's to the bit; the update agrees to
    rounding."""
    results, adapters = {}, {}
    for compute in ("peft", "merged"):
        learner = make_learner(lora_compute=compute)
        results[compute] = learner.iteration(1).metrics
        adapters[compute] = lora_snapshot(learner)
    assert results["merged"]["reward_mean"] == results["peft"]["reward_mean"]
    for name, expected in adapters["peft"].items():
        assert_rounding_close(adapters["merged"][name], expected)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"lora_compute": "fused"}, "unknown lora_compute 'fused'; valid: peft, merged"),
        ({"lora_compute": "merged", "dtype": "bfloat16"}, "lora_compute=merged needs dtype float32"),
    ],
)
def test_config_rejects_bad_lora_compute(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(BASE, **overrides)


def test_a_kept_merged_weight_follows_every_change_of_the_adapter() -> None:
    """Without gradients the merged weight is reused; an in-place step or a loaded state forms it again."""
    merged_policy, peft_policy = toy_policy(merged=True), toy_policy(merged=False)
    latents, sigma, cond = toy_inputs(peft_policy)

    def velocities() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return (
                merged_policy.get_base_model().velocity(latents, sigma, cond),
                peft_policy.get_base_model().velocity(latents, sigma, cond),
            )

    first, _ = velocities()
    assert torch.equal(velocities()[0], first)  # reused: the same numbers
    for policy in (merged_policy, peft_policy):  # an optimizer-like in-place step on every B
        with torch.no_grad():
            for name, parameter in policy.named_parameters():
                if "lora_B" in name:
                    parameter.mul_(-2.0)
    moved, expected = velocities()
    assert (moved - first).abs().max().item() > 100 * ROUNDING * first.abs().max().item()
    assert_rounding_close(moved, expected)
    load_adapter_state(merged_policy, adapter_state(toy_policy(merged=False, seed=3)))  # a loaded state
    load_adapter_state(peft_policy, adapter_state(toy_policy(merged=False, seed=3)))
    loaded, expected = velocities()
    assert_rounding_close(loaded, expected)
    assert (loaded - moved).abs().max().item() > 100 * ROUNDING * moved.abs().max().item()
