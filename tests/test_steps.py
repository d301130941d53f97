"""Step schedules and step weights of docs/math.md section 9.1: sliding window, random subset, noise weights."""

import pytest
import torch

from creditzoo.sampling import (
    flow_sigmas,
    noise_step_weights,
    parse_step_weight,
    parse_train_steps,
    parse_window_schedule,
    sde_step,
    train_step_mask,
    window_step_stds,
)


def test_sliding_window_positions_of_the_spec_example() -> None:
    schedule = parse_window_schedule("slide:4:25:1", 10)
    starts = [schedule.start(n) for n in range(1, 176)]
    # iterations 1-25 -> steps 0-3, 26-50 -> 1-4, ..., 126-150 -> 5-8, 151-175 -> 0-3
    expected = [c for c in range(6) for _ in range(25)] + [0] * 25
    assert starts == expected
    assert all(c + 4 <= 9 for c in starts)  # never past T - 1, never empty
    windows = {n: list(range(schedule.start(n), schedule.start(n) + 4)) for n in (1, 25, 26, 50, 126, 150, 151, 175)}
    assert windows[1] == windows[25] == [0, 1, 2, 3]
    assert windows[26] == windows[50] == [1, 2, 3, 4]
    assert windows[126] == windows[150] == [5, 6, 7, 8]
    assert windows[151] == windows[175] == [0, 1, 2, 3]


def test_sliding_window_loop_reference() -> None:
    for T, W, tau, S in [(10, 4, 25, 1), (10, 3, 2, 2), (6, 5, 1, 1), (12, 2, 3, 4)]:
        schedule = parse_window_schedule(f"slide:{W}:{tau}:{S}", T)
        c, expected = 0, []
        for n in range(1, 200):
            if n > 1 and (n - 1) % tau == 0:  # written from the words: grow by S every TAU, wrap when too far
                c += S
                if c + W > T - 1:
                    c = 0
            expected.append(c)
        assert [schedule.start(n) for n in range(1, 200)] == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("slide:10:25:1", r"W=10 cannot fit T=10 steps; valid W: 1\.\.9"),
        ("slide:0:25:1", "must each be >= 1"),
        ("slide:4:0:1", "must each be >= 1"),
        ("slide:4:25:0", "must each be >= 1"),
        ("slide:4:25", "slide:W:TAU:S"),
        ("mix:4:25:1", "slide:W:TAU:S"),
        ("slide:a:b:c", "slide:W:TAU:S"),
    ],
)
def test_window_schedule_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_window_schedule(spec, 10)


def test_random_subset_counts_repeatability_and_order_independence() -> None:
    for fraction, K in [(0.5, 9), (0.3, 9), (1.0, 4), (0.01, 5), (0.6, 7)]:
        mask = train_step_mask(fraction, K, seed=3, iteration=7, samples=torch.arange(16))
        assert mask.shape == (16, K) and mask.dtype == torch.bool
        assert (mask.sum(1) == max(1, int(fraction * K))).all()  # the released int(len(timesteps) * fraction)
    assert (train_step_mask(0.5, 9, seed=0, iteration=1, samples=torch.arange(3)).sum(1) == 4).all()  # floor: 4 of 9
    assert (train_step_mask(0.3, 9, seed=0, iteration=1, samples=torch.arange(3)).sum(1) == 2).all()  # 2.7 -> 2
    assert (train_step_mask(0.01, 5, seed=0, iteration=1, samples=torch.arange(3)).sum(1) == 1).all()  # at least 1
    mask = train_step_mask(0.5, 9, seed=3, iteration=7, samples=torch.arange(16))
    assert torch.equal(mask, train_step_mask(0.5, 9, seed=3, iteration=7, samples=torch.arange(16)))
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(train_step_mask(0.5, 9, seed=3, iteration=7, samples=perm), mask[perm])
    assert torch.equal(train_step_mask(0.5, 9, seed=3, iteration=7, samples=torch.arange(4)), mask[:4])
    assert not torch.equal(train_step_mask(0.5, 9, seed=3, iteration=8, samples=torch.arange(16)), mask)
    assert not torch.equal(train_step_mask(0.5, 9, seed=4, iteration=7, samples=torch.arange(16)), mask)
    assert len({tuple(row) for row in mask.tolist()}) > 8  # rows differ from one another


def test_random_subset_covers_steps_evenly() -> None:
    mask = train_step_mask(0.4, 5, seed=0, iteration=1, samples=torch.arange(5000))
    share = mask.float().mean(0)
    assert torch.allclose(share, torch.full((5,), 0.4), atol=0.03)


@pytest.mark.parametrize("spec", ["random:0", "random:1.5", "random:-0.2", "random:x", "subset:0.5", "random"])
def test_train_steps_errors(spec: str) -> None:
    with pytest.raises(ValueError, match=r"random:F with F in \(0, 1\]"):
        parse_train_steps(spec)


def test_train_steps_parses() -> None:
    assert parse_train_steps("random:0.5") == 0.5
    assert parse_train_steps("random:1") == 1.0


def test_noise_weights_example_and_mean_one() -> None:
    torch.testing.assert_close(noise_step_weights(torch.tensor([0.6, 0.3, 0.3])), torch.tensor([1.5, 0.75, 0.75]))
    with pytest.raises(ValueError, match="positive"):
        noise_step_weights(torch.tensor([0.5, 0.0]))
    assert parse_step_weight("noise") == "noise"
    with pytest.raises(ValueError, match="valid: none, noise"):
        parse_step_weight("sigma")


@pytest.mark.parametrize("kind", ["flow_grpo", "cps"])
def test_window_step_stds_are_the_sde_stds(kind: str) -> None:
    sigmas = flow_sigmas(10, 3.0)
    stds = window_step_stds(sigmas, 2, 5, noise_level=0.7, kind=kind)
    for k in range(5):
        x = torch.randn(2, 3, 4)
        step = sde_step(torch.randn(2, 3, 4), x, sigmas[2 + k], sigmas[3 + k], noise_level=0.7, kind=kind)
        assert stds[k].item() == pytest.approx(step.std.flatten()[0].item(), rel=1e-6)
    weights = noise_step_weights(stds)
    assert weights.mean().item() == pytest.approx(1.0, rel=1e-6)
