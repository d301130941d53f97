"""Reward noise models (docs/math.md section 8): parsing, repeatability, and each kind's distribution."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from creditzoo.rewards.noise import (
    NOISE_KINDS,
    VALID_FORMS,
    NoiseSpec,
    NoisyReward,
    NoisyScores,
    parse_noise_spec,
)

N = 20000  # draws for the distribution tests


def toy_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    return images.mean(dim=(1, 2, 3))


def images_scoring(values: torch.Tensor) -> torch.Tensor:
    """Images [B, 3, 2, 2] on which ``toy_reward`` returns exactly ``values`` [B]."""
    return values.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()


def noise_of(text: str, n: int = N, *, seed: int = 0) -> torch.Tensor:
    """``n`` noise draws (noisy - clean) of the given kind on constant clean scores of 0.5, float64."""
    reward = NoisyReward(toy_reward, parse_noise_spec(text), seed=seed)
    scores = reward.score(images_scoring(torch.full((n,), 0.5, dtype=torch.float64)), ["p"] * n)
    return scores.noisy - scores.clean


# --- parsing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, params",
    [
        ("gaussian:0.1", "gaussian", (0.1,)),
        ("gaussian:0", "gaussian", (0.0,)),
        ("uniform:0.25", "uniform", (0.25,)),
        ("student_t:5:0.1", "student_t", (5.0, 0.1)),
        ("student_t:0.5:1e-2", "student_t", (0.5, 0.01)),
        ("bias:0.05", "bias", (0.05,)),
        ("quantize:0.25", "quantize", (0.25,)),
        ("flip:0", "flip", (0.0,)),
        ("flip:1", "flip", (1.0,)),
        ("  flip:0.2 ", "flip", (0.2,)),
    ],
)
def test_parse_valid_forms(text: str, kind: str, params: tuple[float, ...]) -> None:
    spec = parse_noise_spec(text)
    assert spec == NoiseSpec(kind, params)
    assert parse_noise_spec(str(spec)) == spec  # canonical text round-trips


def test_every_kind_is_documented_in_the_valid_forms() -> None:
    assert VALID_FORMS == "gaussian:SD, uniform:HALFWIDTH, student_t:DF:SCALE, bias:SD, quantize:STEP, flip:P, none"
    assert set(NOISE_KINDS) == {"gaussian", "uniform", "student_t", "bias", "quantize", "flip"}


@pytest.mark.parametrize("text", ["none", " none "])
def test_none_parses_to_none(text: str) -> None:
    assert parse_noise_spec(text) is None


@pytest.mark.parametrize(
    "text, problem",
    [
        ("gaussian:x", "SD must be a number"),
        ("gauss:0.1", "unknown kind 'gauss'"),
        ("Gaussian:0.1", "unknown kind 'Gaussian'"),
        ("", "unknown kind ''"),
        ("none:1", "unknown kind 'none'"),
        ("gaussian", "gaussian takes 1 parameter (SD), got 0"),
        ("bias:", "SD must be a number"),
        ("gaussian:0.1:0.2", "gaussian takes 1 parameter (SD), got 2"),
        ("student_t:5", "student_t takes 2 parameters (DF, SCALE), got 1"),
        ("student_t:5:y", "SCALE must be a number"),
        ("gaussian:-0.1", "SD must be a finite number >= 0"),
        ("gaussian:nan", "SD must be a finite number >= 0"),
        ("uniform:inf", "HALFWIDTH must be a finite number >= 0"),
        ("student_t:0:1", "DF must be a finite number > 0"),
        ("student_t:5:-1", "SCALE must be a finite number >= 0"),
        ("bias:-1", "SD must be a finite number >= 0"),
        ("quantize:0", "STEP must be a finite number > 0"),
        ("flip:1.5", "P must be a finite number in [0, 1]"),
        ("flip:-0.1", "P must be a finite number in [0, 1]"),
    ],
)
def test_malformed_forms_raise_one_line_listing_valid_forms(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_noise_spec(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"malformed reward noise {text!r}: ")
    assert problem in message
    assert message.endswith(f"; valid forms: {VALID_FORMS}")


def test_noise_spec_validates_when_built_directly() -> None:
    assert NoiseSpec("flip", (1,)).params == (1.0,)  # params become floats
    with pytest.raises(ValueError, match="SD must be a finite number >= 0.*valid forms"):
        NoiseSpec("gaussian", (-1.0,))
    with pytest.raises(ValueError, match="unknown kind 'none'"):
        NoiseSpec("none", ())
    with pytest.raises(ValueError, match="student_t takes 2 parameters"):
        NoiseSpec("student_t", (5.0,))
    with pytest.raises(ValueError, match="must be a tuple of numbers"):
        NoiseSpec("gaussian", ("x",))  # type: ignore[arg-type]


# --- the wrapper -----------------------------------------------------------------------------------------

RANDOM_KINDS = ["gaussian:0.1", "uniform:0.1", "student_t:5:0.1", "flip:0.5"]
ALL_KINDS = [*RANDOM_KINDS, "bias:0.1", "quantize:0.25", "none"]


@pytest.mark.parametrize("text", ALL_KINDS)
def test_clean_recorded_beside_noisy_and_equal_to_the_wrapped_reward(text: str) -> None:
    torch.manual_seed(0)
    images = torch.rand(8, 3, 4, 4)
    prompts = [f"prompt {i % 3}" for i in range(8)]
    reward = NoisyReward(toy_reward, parse_noise_spec(text), seed=3)
    scores = reward.score(images, prompts)
    assert isinstance(scores, NoisyScores)
    assert scores.noisy.shape == scores.clean.shape == (8,)
    assert scores.noisy.dtype == scores.clean.dtype == torch.float32
    torch.testing.assert_close(scores.clean, toy_reward(images, prompts), rtol=0, atol=0)
    if text not in ("none", "flip:0.5"):
        assert not torch.equal(scores.noisy, scores.clean)


@pytest.mark.parametrize("text", ALL_KINDS)
def test_call_is_a_plain_reward_returning_the_noisy_score(text: str) -> None:
    images = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    prompts = ["a", "b"] * 3
    first = NoisyReward(toy_reward, parse_noise_spec(text), seed=5)
    second = NoisyReward(toy_reward, parse_noise_spec(text), seed=5)
    assert torch.equal(first(images, prompts), second.score(images, prompts).noisy)


@pytest.mark.parametrize("text", RANDOM_KINDS)
def test_same_seed_same_noise_different_seed_different_noise(text: str) -> None:
    assert torch.equal(noise_of(text, 64, seed=7), noise_of(text, 64, seed=7))
    assert not torch.equal(noise_of(text, 64, seed=7), noise_of(text, 64, seed=8))


@pytest.mark.parametrize("text", RANDOM_KINDS)
def test_manual_seed_repeats_draws_and_fresh_calls_differ(text: str) -> None:
    images = images_scoring(torch.full((64,), 0.5))
    prompts = ["p"] * 64
    reward = NoisyReward(toy_reward, parse_noise_spec(text), seed=0)
    reward.manual_seed(123)
    first = reward(images, prompts)
    second = reward(images, prompts)
    assert not torch.equal(first, second)  # the generator advances between calls
    reward.manual_seed(123)
    assert torch.equal(reward(images, prompts), first)
    assert torch.equal(reward(images, prompts), second)


@pytest.mark.parametrize("text", RANDOM_KINDS)
def test_state_dict_round_trip_resumes_the_same_draws(text: str) -> None:
    images = images_scoring(torch.full((32,), 0.5))
    prompts = ["p"] * 32
    reward = NoisyReward(toy_reward, parse_noise_spec(text), seed=4)
    reward(images, prompts)
    state = reward.state_dict()
    expected = reward(images, prompts)
    resumed = NoisyReward(toy_reward, parse_noise_spec(text), seed=999)
    resumed.load_state_dict(state)
    assert resumed.seed == 4
    assert torch.equal(resumed(images, prompts), expected)


def test_load_state_dict_rejects_another_spec() -> None:
    state = NoisyReward(toy_reward, parse_noise_spec("gaussian:0.1")).state_dict()
    with pytest.raises(ValueError, match="saved with reward noise 'gaussian:0.1', this reward has 'gaussian:0.2'"):
        NoisyReward(toy_reward, parse_noise_spec("gaussian:0.2")).load_state_dict(state)
    with pytest.raises(ValueError, match="this reward has 'none'"):
        NoisyReward(toy_reward, None).load_state_dict(state)


def test_none_spec_is_the_identity_and_draws_nothing() -> None:
    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    reward = NoisyReward(toy_reward, None, seed=1)
    before = reward.state_dict()["generator"].clone()
    scores = reward.score(images, list("abcde"))
    assert torch.equal(scores.noisy, scores.clean)
    assert torch.equal(reward(images, list("abcde")), toy_reward(images, []))
    assert torch.equal(reward.state_dict()["generator"], before)


def test_dtype_of_the_wrapped_reward_is_kept() -> None:
    images = images_scoring(torch.full((4,), 0.5, dtype=torch.float64))
    scores = NoisyReward(toy_reward, parse_noise_spec("gaussian:0.1")).score(images, ["p"] * 4)
    assert scores.noisy.dtype == scores.clean.dtype == torch.float64


def test_bad_inputs_fail_loudly() -> None:
    images = torch.rand(3, 3, 2, 2)
    with pytest.raises(ValueError, match="got 3 images but 2 prompts"):
        NoisyReward(toy_reward, None)(images, ["a", "b"])
    with pytest.raises(ValueError, match=r"float tensor of shape \[B=3\], got torch.float32 \[3, 1\]"):
        NoisyReward(lambda x, p: x.mean(dim=(1, 2, 3)).unsqueeze(1), None)(images, ["a"] * 3)
    with pytest.raises(ValueError, match="got torch.int64"):
        NoisyReward(lambda x, p: torch.zeros(3, dtype=torch.int64), None)(images, ["a"] * 3)
    with pytest.raises(TypeError, match="spec must be a NoiseSpec or None"):
        NoisyReward(toy_reward, "gaussian:0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite low < high"):
        NoisyReward(toy_reward, None, low=1.0, high=1.0)


# --- each kind's distribution ----------------------------------------------------------------------------


def test_gaussian_mean_and_std() -> None:
    noise = noise_of("gaussian:0.3")
    assert abs(noise.mean().item()) < 4 * 0.3 / math.sqrt(N)
    assert noise.std().item() == pytest.approx(0.3, rel=0.03)


def test_uniform_mean_std_and_support() -> None:
    noise = noise_of("uniform:0.5")
    assert abs(noise.mean().item()) < 4 * (0.5 / math.sqrt(3)) / math.sqrt(N)
    assert noise.std().item() == pytest.approx(0.5 / math.sqrt(3), rel=0.03)
    assert noise.abs().max().item() <= 0.5
    assert stats.kstest((noise / 0.5).numpy(), "uniform", args=(-1, 2)).pvalue > 1e-3


def test_student_t_variance_matches_df_over_df_minus_2() -> None:
    df, scale = 5.0, 0.2
    noise = noise_of(f"student_t:{df}:{scale}")
    assert abs(noise.mean().item()) < 4 * scale * math.sqrt(df / (df - 2)) / math.sqrt(N)
    assert noise.var().item() == pytest.approx(df / (df - 2) * scale**2, rel=0.1)


@pytest.mark.parametrize("df", [0.5, 1.0, 2.5, 5.0, 100.0])
def test_student_t_follows_the_t_distribution(df: float) -> None:
    noise = noise_of(f"student_t:{df}:2")
    assert torch.isfinite(noise).all()
    assert stats.kstest((noise / 2).numpy(), "t", args=(df,)).pvalue > 1e-3


def test_bias_is_fixed_per_prompt_across_calls_orders_and_reseeding() -> None:
    prompts = ["a red cube", "two blue circles", "a green square"]
    reward = NoisyReward(toy_reward, parse_noise_spec("bias:0.1"), seed=11)
    batch = [prompts[i % 3] for i in range(9)]
    images = images_scoring(torch.full((9,), 0.5))
    offsets = reward(images, batch) - 0.5  # [9]
    per_prompt = {p: offsets[i].item() for i, p in enumerate(batch[:3])}
    assert all(offsets[i].item() == per_prompt[p] for i, p in enumerate(batch))  # constant within a batch
    assert len(set(per_prompt.values())) == 3  # differs across prompts

    fresh = NoisyReward(toy_reward, parse_noise_spec("bias:0.1"), seed=11)
    fresh.manual_seed(5)  # reseeding the per-call generator leaves the bias alone
    reversed_batch = batch[::-1][:4]  # another order, another batch size, another object
    again = fresh(images_scoring(torch.full((4,), 0.5)), reversed_batch) - 0.5
    assert [round(x, 7) for x in again.tolist()] == [round(per_prompt[p], 7) for p in reversed_batch]

    other_seed = NoisyReward(toy_reward, parse_noise_spec("bias:0.1"), seed=12)
    assert not torch.equal(other_seed(images, batch), reward(images, batch))


def test_bias_offsets_are_normal_with_sd_across_prompts() -> None:
    n = 4000
    reward = NoisyReward(toy_reward, parse_noise_spec("bias:0.2"), seed=0)
    noise = reward(images_scoring(torch.zeros(n, dtype=torch.float64)), [f"prompt {i}" for i in range(n)])
    assert abs(noise.mean().item()) < 4 * 0.2 / math.sqrt(n)
    assert noise.std().item() == pytest.approx(0.2, rel=0.05)
    assert stats.kstest((noise / 0.2).numpy(), "norm").pvalue > 1e-3


def test_quantize_is_exact_and_draws_nothing() -> None:
    clean = torch.tensor([0.12, 0.37, 0.5, 0.74, 0.9, -0.2])
    reward = NoisyReward(toy_reward, parse_noise_spec("quantize:0.25"))
    before = reward.state_dict()["generator"].clone()
    scores = reward.score(images_scoring(clean), ["p"] * 6)
    assert scores.noisy.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, -0.25]
    assert torch.equal(reward.state_dict()["generator"], before)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_flip_rate_and_replacement_range(p: float) -> None:
    clean = torch.full((N,), 5.0, dtype=torch.float64)  # outside [low, high): flipped scores are visible
    reward = NoisyReward(toy_reward, parse_noise_spec(f"flip:{p}"), seed=2, low=-1.0, high=3.0)
    scores = reward.score(images_scoring(clean), ["p"] * N)
    flipped = scores.noisy != scores.clean
    rate = flipped.double().mean().item()
    assert abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / N)
    replaced = scores.noisy[flipped]
    assert ((replaced >= -1.0) & (replaced < 3.0)).all()
    if p == 1.0:  # replacements are U(low, high)
        assert stats.kstest(replaced.numpy(), "uniform", args=(-1.0, 4.0)).pvalue > 1e-3


def test_per_call_sd_of_every_kind() -> None:
    """The SD a noise-aware scheme is told, per kind, from each kind's variance (uniform, t, quantize by formula)."""
    import math

    from creditzoo.rewards.noise import per_call_sd

    cases = {
        "gaussian:0.2": 0.2,
        "uniform:0.3": 0.3 / math.sqrt(3),  # Var U(-h, h) = h^2 / 3
        "student_t:4:0.1": 0.1 * math.sqrt(2),  # Var t_4 = 4 / 2
        "student_t:2:0.1": 0.1,  # infinite variance: the scale
        "bias:0.5": 0.0,  # constant per prompt: cancels in every increment
        "quantize:0.06": 0.06 / math.sqrt(12),
        "flip:0.3": math.sqrt(0.1),
    }
    for text, expected in cases.items():
        assert math.isclose(per_call_sd(parse_noise_spec(text)), expected, rel_tol=1e-12), text
    assert per_call_sd(parse_noise_spec("none")) == 0.0
