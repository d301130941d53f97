"""Sampler math against diffusers, torch.distributions and Monte Carlo (docs/math.md section 1)."""

import math

import pytest
import torch

from creditzoo.sampling import flow_sigmas, flux_mu, gaussian_log_prob, ode_step, sde_step, sde_window, x0_prediction


@pytest.mark.parametrize("num_steps", [1, 2, 10, 16, 40])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_sigmas_equal_diffusers(num_steps: int, shift: float) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(num_steps)
    sigmas = flow_sigmas(num_steps, shift)
    assert sigmas.shape == (num_steps + 1,) and sigmas[-1] == 0 and sigmas[0] == 1
    torch.testing.assert_close(sigmas, scheduler.sigmas, rtol=0, atol=1e-7)


@pytest.mark.parametrize("num_steps", [1, 2, 10, 28, 50])
@pytest.mark.parametrize("resolution", [256, 512, 768, 1024, 1360])
def test_flux_sigmas_equal_diffusers(num_steps: int, resolution: int) -> None:
    """FLUX's resolution-dependent grid, built the way FluxPipeline builds it (pipeline_flux.py)."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )  # FLUX.1-dev's scheduler_config.json
    seq_len = (resolution // 16) ** 2  # 8x VAE, then 2x2 packing
    mu = calculate_shift(seq_len, 256, 4096, 0.5, 1.15)
    scheduler.set_timesteps(num_steps, sigmas=np.linspace(1.0, 1 / num_steps, num_steps), mu=mu)
    assert flux_mu(seq_len) == pytest.approx(mu, abs=1e-12)
    sigmas = flow_sigmas(num_steps, mu=flux_mu(seq_len))
    assert sigmas.shape == (num_steps + 1,) and sigmas[-1] == 0 and sigmas[0] == 1
    torch.testing.assert_close(sigmas, scheduler.sigmas, rtol=0, atol=0)


def test_flow_sigmas_rejects_shift_with_mu() -> None:
    with pytest.raises(ValueError, match="not both"):
        flow_sigmas(4, 3.0, mu=1.0)
    with pytest.raises(ValueError, match="image_seq_len"):
        flux_mu(0)


def inputs(seed: int = 0, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 5, 5, generator=gen, dtype=dtype)
    v = torch.randn(4, 3, 5, 5, generator=gen, dtype=dtype)
    return x, v


@pytest.mark.parametrize("kind", ["flow_grpo", "cps"])
@pytest.mark.parametrize("sigmas", [(1.0, 0.9), (0.6, 0.45), (0.2, 0.05)])
def test_log_prob_is_the_averaged_gaussian_density(kind: str, sigmas: tuple[float, float]) -> None:
    x, v = inputs()
    generator = torch.Generator().manual_seed(1)
    step = sde_step(v, x, *sigmas, noise_level=0.7, kind=kind, generator=generator, cps_log_prob="gaussian")
    expected = torch.distributions.Normal(step.mean, step.std.expand_as(step.mean)).log_prob(step.prev_sample)
    torch.testing.assert_close(step.log_prob, expected.flatten(1).mean(1))
    assert step.log_prob.shape == (4,) and step.log_prob.dtype == torch.float32
    # the exact density, computed as before the CPS option existed: bit for bit the same values
    assert torch.equal(step.log_prob, gaussian_log_prob(step.prev_sample, step.mean, step.std))


@pytest.mark.parametrize("sigmas", [(1.0, 0.9), (0.6, 0.45), (0.2, 0.05)])
def test_released_cps_log_prob_is_minus_the_mean_squared_distance(sigmas: tuple[float, float]) -> None:
    x, v = inputs()
    step = sde_step(v, x, *sigmas, noise_level=0.8, kind="cps", generator=torch.Generator().manual_seed(1))
    expected = -((step.prev_sample - step.mean) ** 2).flatten(1).mean(1)  # no constants, no 1/(2 std^2)
    torch.testing.assert_close(step.log_prob, expected)
    gaussian = sde_step(
        v, x, *sigmas, noise_level=0.8, kind="cps", prev_sample=step.prev_sample, cps_log_prob="gaussian"
    )
    assert torch.equal(gaussian.prev_sample, step.prev_sample) and torch.equal(gaussian.mean, step.mean)
    # the density's log-ratio is the released one times 1/(2 std^2): the constants cancel in a ratio
    other = sde_step(v + 0.1, x, *sigmas, noise_level=0.8, kind="cps", prev_sample=step.prev_sample)
    other_gaussian = sde_step(
        v + 0.1, x, *sigmas, noise_level=0.8, kind="cps", prev_sample=step.prev_sample, cps_log_prob="gaussian"
    )
    std = float(step.std.flatten()[0])
    torch.testing.assert_close(
        other_gaussian.log_prob - gaussian.log_prob, (other.log_prob - step.log_prob) / (2 * std**2)
    )


def test_released_cps_ratio_on_random_inputs() -> None:
    """exp(logp_new - logp_old) = exp(-mean((x' - mean_new)^2) + mean((x' - mean_old)^2)), by hand."""
    gen = torch.Generator().manual_seed(7)
    x, v_old, v_new = (torch.randn(6, 4, 3, 3, generator=gen) for _ in range(3))
    sigma, nxt, a = 0.7, 0.55, 0.8
    old = sde_step(v_old, x, sigma, nxt, noise_level=a, kind="cps", generator=gen)
    new = sde_step(v_new, x, sigma, nxt, noise_level=a, kind="cps", prev_sample=old.prev_sample)
    std = nxt * math.sin(a * math.pi / 2)  # section-1 CPS mean, written out independently of the code

    def mean(v: torch.Tensor) -> torch.Tensor:
        return (1 - nxt) * (x - sigma * v) + math.sqrt(nxt**2 - std**2) * (x + (1 - sigma) * v)

    x_next = old.prev_sample
    expected = torch.exp(
        -((x_next - mean(v_new)) ** 2).flatten(1).mean(1) + ((x_next - mean(v_old)) ** 2).flatten(1).mean(1)
    )
    torch.testing.assert_close(torch.exp(new.log_prob - old.log_prob), expected)
    assert (expected - 1).abs().max() > 1e-2  # the two policies differ, so the check can fail


@pytest.mark.parametrize("kind", ["flow_grpo", "cps"])
def test_given_prev_sample_is_scored_not_drawn(kind: str) -> None:
    x, v = inputs()
    first = sde_step(v, x, 0.7, 0.5, noise_level=0.8, kind=kind, generator=torch.Generator().manual_seed(3))
    again = sde_step(v, x, 0.7, 0.5, noise_level=0.8, kind=kind, prev_sample=first.prev_sample)
    assert torch.equal(again.prev_sample, first.prev_sample)
    torch.testing.assert_close(again.log_prob, first.log_prob)


@pytest.mark.parametrize("kind", ["flow_grpo", "cps"])
@pytest.mark.parametrize("sigmas", [(1.0, 0.8), (0.5, 0.3)])
def test_noise_level_zero_is_the_ode_step(kind: str, sigmas: tuple[float, float]) -> None:
    x, v = inputs()
    step = sde_step(v, x, *sigmas, noise_level=0.0, kind=kind)
    torch.testing.assert_close(step.prev_sample, ode_step(v, x, *sigmas))
    torch.testing.assert_close(step.mean, ode_step(v, x, *sigmas))


def test_flow_grpo_formula_by_hand() -> None:
    x, v = inputs()
    sigma, nxt, a = 0.6, 0.4, 0.7
    s = a * math.sqrt(sigma / (1 - sigma))
    dt = nxt - sigma
    mean = x * (1 + s**2 * dt / (2 * sigma)) + v * (1 + s**2 * (1 - sigma) / (2 * sigma)) * dt
    step = sde_step(v, x, sigma, nxt, noise_level=a)
    torch.testing.assert_close(step.mean, mean)
    torch.testing.assert_close(step.std.flatten(), torch.full((4,), s * math.sqrt(-dt)))
    # first step: sigma == 1 uses sigma_hat = sigma_next
    first = sde_step(v, x, 1.0, 0.9, noise_level=a)
    s1 = a * math.sqrt(1.0 / (1 - 0.9))
    torch.testing.assert_close(first.std.flatten(), torch.full((4,), s1 * math.sqrt(0.1)))


def test_cps_formula_by_hand_and_last_step() -> None:
    x, v = inputs()
    sigma, nxt, a = 0.6, 0.4, 0.8
    std = nxt * math.sin(a * math.pi / 2)
    mean = (1 - nxt) * (x - sigma * v) + math.sqrt(nxt**2 - std**2) * (x + (1 - sigma) * v)
    step = sde_step(v, x, sigma, nxt, noise_level=a, kind="cps")
    torch.testing.assert_close(step.mean, mean)
    torch.testing.assert_close(step.std.flatten(), torch.full((4,), std))
    last = sde_step(v, x, 0.1, 0.0, noise_level=a, kind="cps")
    assert torch.equal(last.std, torch.zeros_like(last.std))
    torch.testing.assert_close(last.prev_sample, x0_prediction(v, x, 0.1))


@pytest.mark.parametrize("kind", ["flow_grpo", "cps"])
def test_samples_have_the_stated_mean_and_std(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 2, 2, generator=gen).expand(20000, -1, -1, -1).contiguous()
    v = torch.randn(1, 2, 2, 2, generator=gen).expand(20000, -1, -1, -1).contiguous()
    step = sde_step(v, x, 0.7, 0.55, noise_level=0.7, kind=kind, generator=gen)
    torch.testing.assert_close(step.prev_sample.mean(0), step.mean[0], atol=0.01, rtol=0)
    torch.testing.assert_close(step.prev_sample.std(0), step.std[0].expand(2, 2, 2), atol=0.01, rtol=0)


def test_per_sample_sigmas_equal_scalar_sigmas() -> None:
    x, v = inputs()
    sig, nxt = torch.tensor([1.0, 0.8, 0.5, 0.2]), torch.tensor([0.9, 0.6, 0.3, 0.0])
    gen = torch.Generator().manual_seed(0)
    batched = sde_step(v, x, sig, nxt, noise_level=0.7, generator=gen)
    for i in range(4):
        one = sde_step(
            v[i : i + 1],
            x[i : i + 1],
            float(sig[i]),
            float(nxt[i]),
            noise_level=0.7,
            prev_sample=batched.prev_sample[i : i + 1],
        )
        torch.testing.assert_close(one.log_prob, batched.log_prob[i : i + 1])
    torch.testing.assert_close(ode_step(v, x, sig, nxt)[1], ode_step(v[1:2], x[1:2], 0.8, 0.6)[0])


def test_low_precision_inputs_score_in_float32() -> None:
    x, v = inputs()
    step = sde_step(v.bfloat16(), x.bfloat16(), 0.5, 0.4, noise_level=0.7, generator=torch.Generator().manual_seed(0))
    assert step.prev_sample.dtype == torch.bfloat16 and step.log_prob.dtype == torch.float32
    assert gaussian_log_prob(x.double(), x.double(), torch.ones(1, dtype=torch.float64)).dtype == torch.float64


def test_bad_arguments() -> None:
    x, v = inputs()
    with pytest.raises(ValueError, match="valid kinds: flow_grpo, cps"):
        sde_step(v, x, 0.5, 0.4, noise_level=0.7, kind="ddim")
    with pytest.raises(ValueError, match="noise_level"):
        sde_step(v, x, 0.5, 0.4, noise_level=-1.0)
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        sde_step(v, x, torch.ones(3), 0.4, noise_level=0.7)
    with pytest.raises(ValueError, match="valid: released, gaussian"):
        sde_step(v, x, 0.5, 0.4, noise_level=0.7, kind="cps", cps_log_prob="exact")


def test_sde_window() -> None:
    window = sde_window(10)
    assert (window.start, window.size, window.stop) == (0, 9, 9)
    assert window.is_sde(0) and window.is_sde(8) and not window.is_sde(9)
    assert sde_window(10, 3, start=2).stop == 5
    with pytest.raises(ValueError, match="does not fit"):
        sde_window(10, 8, start=3)
    with pytest.raises(ValueError, match="window size"):
        sde_window(10, 0)
