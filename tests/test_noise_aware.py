"""Noise-aware credit schemes (docs/math.md section 10): clean at sigma = 0, worked examples, loop references.

The turning-point probabilities of ``tp_prob`` are checked two independent ways: against the order statistics of
i.i.d. rewards (all means equal: each event is a set of orderings, counted over permutations) and against Monte
Carlo draws of the clean rewards run through TP-GRPO's own marking rule.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from lanes import first_fast
from scipy import integrate, stats
from test_algorithms import assert_matches_loop_reference, random_rollout, reference_step_rewards

from creditzoo.algorithms import get_algorithm
from creditzoo.algorithms.smoothed import increment_variance, smooth_completion_rewards
from creditzoo.algorithms.tp_grpo import turning_points
from creditzoo.algorithms.tp_prob import (
    _initial_step,
    _strict_turn,
    _turn,
    bivariate_normal_cdf,
    turning_point_probability,
)
from creditzoo.rollout import Rollout

NOISE_AWARE = {  # scheme -> its clean version (the same at noise_sd = 0)
    "tp_margin": "tp_grpo_strict",
    "tp_prob": "tp_grpo_strict",
    "incremental_rts": "incremental",
    "tp_grpo_strict_rts": "tp_grpo_strict",
}
EXAMPLE = [[0.50, 0.48, 0.47, 0.52, 0.51, 0.55]]  # docs/math.md section 3, worked example 1


def one(rewards: list[list[float]]) -> Rollout:
    values = torch.tensor(rewards, dtype=torch.float64)
    return Rollout(group_ids=torch.zeros(values.shape[0], dtype=torch.int64), completion_rewards=values)


def rounded(values: torch.Tensor, digits: int = 4) -> list[float]:
    return [round(float(x), digits) for x in values.flatten()]


# ------------------------------------------------------------------------------- sigma = 0: the clean scheme


@pytest.mark.parametrize("name", list(NOISE_AWARE))
@pytest.mark.parametrize("balance_key", ["r_agg", "trajectory"])
def test_zero_noise_is_the_clean_scheme_exactly(name: str, balance_key: str) -> None:
    clean = NOISE_AWARE[name]
    options = {"balance_key": balance_key} if clean.startswith("tp_grpo") else {}
    for seed in range(20):
        rollout = random_rollout(seed, groups=3, group_size=4, steps=5, ties=seed % 2 == 1)
        got = get_algorithm(name, noise_sd=0.0, **options)(rollout)
        expected = get_algorithm(clean, **options)(rollout)
        assert torch.equal(got.turning_points, expected.turning_points), seed
        assert torch.equal(got.step_rewards, expected.step_rewards), seed
        assert torch.equal(got.advantages, expected.advantages), seed


@pytest.mark.parametrize("name", ["tp_margin", "tp_prob"])
def test_zero_noise_without_the_constraint_is_tp_grpo(name: str) -> None:
    for seed in range(10):
        rollout = random_rollout(seed, ties=seed % 2 == 0)
        got = get_algorithm(name, strict=False)(rollout)
        expected = get_algorithm("tp_grpo")(rollout)
        assert torch.equal(got.step_rewards, expected.step_rewards)
        assert torch.equal(got.turning_points, expected.turning_points)


@pytest.mark.parametrize("name", list(NOISE_AWARE))
def test_noise_changes_the_credit_and_keeps_the_contract(name: str) -> None:
    rollout = random_rollout(7)
    algorithm = get_algorithm(name, noise_sd=0.1)
    credit = algorithm(rollout)
    assert not torch.equal(credit.step_rewards, get_algorithm(NOISE_AWARE[name])(rollout).step_rewards)
    assert torch.isfinite(credit.advantages).all()
    perm = torch.randperm(rollout.batch_size, generator=torch.Generator().manual_seed(3))
    shuffled = algorithm(
        Rollout(group_ids=rollout.group_ids[perm], completion_rewards=rollout.completion_rewards[perm])
    )
    torch.testing.assert_close(shuffled.step_rewards, credit.step_rewards[perm])
    torch.testing.assert_close(shuffled.advantages, credit.advantages[perm], rtol=1e-5, atol=1e-5)
    assert torch.equal(shuffled.turning_points, credit.turning_points[perm])


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("tp_prob", {"noise_sd": -0.1}, "noise_sd must be a finite number >= 0"),
        ("tp_margin", {"noise_sd": float("nan")}, "noise_sd must be a finite number >= 0"),
        ("incremental_rts", {"noise_sd": True}, "noise_sd must be a number >= 0"),
        ("tp_margin", {"margin": -1.0}, "margin must be a finite number >= 0"),
        ("tp_grpo_strict_rts", {"process_var": -0.5}, "process_var must be None"),
        ("tp_prob", {"balance_key": "prompt"}, "valid: r_agg, trajectory"),
        ("tp_prob", {"sigma": 0.1}, "valid: noise_sd, strict"),
    ],
)
def test_bad_options_fail_in_one_line(name: str, options: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message) as error:
        get_algorithm(name, **options)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------------------------- tp_margin


def test_margin_worked_example_of_the_docs() -> None:
    at_01 = get_algorithm("tp_margin", noise_sd=0.01)(one(EXAMPLE))
    assert at_01.turning_points.tolist() == [[False, False, True, False, False]]
    assert rounded(at_01.step_rewards) == [-0.02, -0.01, 0.08, -0.01, 0.04]
    at_02 = get_algorithm("tp_margin", noise_sd=0.02)(one(EXAMPLE))  # |d_1| = .01 < .39 * sqrt(2) * .02 = .011
    assert not at_02.turning_points.any()
    assert rounded(at_02.step_rewards) == [-0.02, -0.01, 0.05, -0.01, 0.04]


def test_default_margin_is_where_a_two_increment_turn_is_even() -> None:
    """Phi2(c, c; 1/2) = 1/2 at c = 0.3935 (docs/math.md section 10.2), computed with scipy."""
    from creditzoo.algorithms.tp_margin import DEFAULT_MARGIN

    def even(c: float) -> float:
        return stats.multivariate_normal(mean=[0, 0], cov=[[1, 0.5], [0.5, 1]]).cdf([c, c]) - 0.5

    root = float(__import__("scipy.optimize", fromlist=["brentq"]).brentq(even, 0, 2))
    assert root == pytest.approx(0.3935, abs=1e-4) and DEFAULT_MARGIN == round(root, 2)


def reference_margin(R: list[list[float]], threshold: float, balance_key: str):
    """Loop-based tp_margin (strict, initial step, balancing): signs with a dead zone of half-width ``threshold``."""

    def sign(x: float) -> int:
        return 0 if abs(x) <= threshold else (1 if x > 0 else -1)

    B, K = len(R), len(R[0]) - 1
    tp = [[False] * K for _ in range(B)]
    for b in range(B):
        d = [R[b][k + 1] - R[b][k] for k in range(K)]
        g = sign(R[b][K] - R[b][0])
        s = [sign(d[k]) * g for k in range(K)]
        for k in range(K):
            consistent = sign(d[k]) * sign(R[b][K] - R[b][k + 1]) > 0
            marked = consistent if k == 0 else (s[k - 1] < 0 and s[k] > 0 and consistent)
            tp[b][k] = marked and R[b][K] - R[b][k] != 0

    def key(b: int, k: int) -> float:
        return R[b][K] - R[b][k] if balance_key == "r_agg" else R[b][K] - R[b][0]

    pos = [(b, k) for b in range(B) for k in range(K) if tp[b][k] and key(b, k) > 0]
    neg = [(b, k) for b in range(B) for k in range(K) if tp[b][k] and key(b, k) < 0]
    if pos and neg:
        m = min(len(pos), len(neg))
        keep = set(sorted(pos, key=lambda bk: -abs(key(*bk)))[:m]) | set(sorted(neg, key=lambda bk: -abs(key(*bk)))[:m])
        tp = [[(b, k) in keep for k in range(K)] for b in range(B)]
    rewards = [[(R[b][K] - R[b][k]) if tp[b][k] else R[b][k + 1] - R[b][k] for k in range(K)] for b in range(B)]
    return rewards, tp


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("balance_key", ["r_agg", "trajectory"])
def test_margin_matches_loop_reference(ties: bool, balance_key: str) -> None:
    for seed in range(25):
        rollout = random_rollout(seed, groups=3, group_size=4, steps=5, ties=ties)
        sigma, c = 0.1 + 0.02 * (seed % 5), 0.39 + 0.3 * (seed % 3)
        credit = get_algorithm("tp_margin", noise_sd=sigma, margin=c, balance_key=balance_key)(rollout)
        R = rollout.completion_rewards.double().tolist()
        rewards, tp = reference_margin(R, c * math.sqrt(2) * sigma, balance_key)
        assert_matches_loop_reference(credit, rollout, rewards, tp, seed)


# ----------------------------------------------------------------------------------------------- tp_prob


@pytest.mark.slow
def test_bivariate_normal_cdf_against_scipy_integration() -> None:
    def reference(h: float, k: float, rho: float) -> float:
        inner = lambda x: stats.norm.pdf(x) * stats.norm.cdf((k - rho * x) / math.sqrt(1 - rho * rho))  # noqa: E731
        return integrate.quad(inner, -np.inf, h, epsabs=1e-14, epsrel=1e-12)[0]

    gen = np.random.default_rng(0)
    for rho in (0.5, -0.5, math.sqrt(0.5), -math.sqrt(0.5), 0.75):
        h, k = gen.normal(size=8) * 2, gen.normal(size=8) * 2
        got = bivariate_normal_cdf(torch.tensor(h), torch.tensor(k), rho)
        expected = torch.tensor([reference(a, b, rho) for a, b in zip(h, k, strict=True)], dtype=torch.float64)
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)  # both are exact to ~1e-14 here
    with pytest.raises(ValueError, match=r"\|rho\| <= 0.75"):
        bivariate_normal_cdf(torch.zeros(1), torch.zeros(1), 0.9)


def ordering_probability(count: int, holds) -> float:
    """P(holds(R)) for ``count`` i.i.d. continuous rewards: the share of the count! orderings where it holds."""
    ranks = list(itertools.permutations(range(count)))
    return sum(bool(holds(r)) for r in ranks) / len(ranks)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_probabilities_of_iid_rewards_count_orderings(steps: int) -> None:
    """All means equal: each condition is a set of orderings of i.i.d. rewards, so P = (orderings that hold) / n!."""
    K, r = steps, torch.zeros(1, steps + 1, dtype=torch.float64)
    for k in range(1, K):
        turn = ordering_probability(K + 1, lambda R: R[k - 1] > R[k] < R[k + 1] and R[K] > R[0])  # noqa: B023
        assert float(_turn(r)[0, k - 1]) == pytest.approx(turn, abs=1e-10)
        strict = ordering_probability(K + 1, lambda R: R[k - 1] > R[k] < R[k + 1] < R[K] and R[K] > R[0])  # noqa: B023
        assert float(_strict_turn(r)[0, k - 1]) == pytest.approx(strict, abs=1e-10)
    first = ordering_probability(K + 1, lambda R: R[1] > R[0] and R[K] > R[0])
    assert float(_initial_step(r, strict=False)[0]) == pytest.approx(first, abs=1e-12)
    first_strict = ordering_probability(K + 1, lambda R: R[1] > R[0] and R[K] > R[1]) if K > 1 else 0.0
    assert float(_initial_step(r, strict=True)[0]) == pytest.approx(first_strict, abs=1e-12)


@pytest.mark.parametrize(
    ("strict", "steps"),
    first_fast(
        [(True, 3), (False, 3), (True, 1), (False, 1), (True, 2), (False, 2), (True, 6), (False, 6)], several=True
    ),
)
def test_probabilities_match_monte_carlo_of_the_clean_rule(strict: bool, steps: int) -> None:
    """p_k against the share of M draws of the clean rewards, N(observed, sigma^2 I), that TP-GRPO marks at k."""
    gen = torch.Generator().manual_seed(steps)
    sigma, batch, draws = 0.02, 12, 200_000
    observed = torch.cumsum(torch.randn(batch, steps + 1, generator=gen, dtype=torch.float64) * 0.025, 1)
    p = turning_point_probability(observed, sigma, strict=strict)
    hits = torch.zeros(batch, steps, dtype=torch.float64)
    for _ in range(10):
        clean = observed + sigma * torch.randn(draws // 10, batch, steps + 1, generator=gen, dtype=torch.float64)
        marks = turning_points(clean.reshape(-1, steps + 1), strict=strict).reshape(-1, batch, steps)
        hits += marks.double().sum(0)
    # a share of M draws has SD <= 0.5 / sqrt(M) = 0.0011; 5 SD over these 12 x K entries
    torch.testing.assert_close(p, hits / draws, atol=5 * 0.5 / math.sqrt(draws), rtol=0)
    assert float(p.max()) > 0.05 or (strict and steps == 1)  # not all trivially 0 (a strict K = 1 is: R_K - R_1 = 0)


def reference_prob_credit(R: list[list[float]], p: list[list[float]], balance_key: str):
    """Loop-based water-filling balance (docs/math.md section 10.3) and the mix p * r_agg + (1 - p) * d."""
    B, K = len(R), len(R[0]) - 1

    def key(b: int, k: int) -> float:
        return R[b][K] - R[b][k] if balance_key == "r_agg" else R[b][K] - R[b][0]

    cells = [(b, k) for b in range(B) for k in range(K)]  # flattened order, for ties
    pos = [c for c in cells if p[c[0]][c[1]] > 0 and key(*c) > 0]
    neg = [c for c in cells if p[c[0]][c[1]] > 0 and key(*c) < 0]
    mass_pos, mass_neg = sum(p[b][k] for b, k in pos), sum(p[b][k] for b, k in neg)
    kept = [row[:] for row in p]
    if mass_pos > 0 and mass_neg > 0:
        kept = [[0.0] * K for _ in range(B)]
        budget = min(mass_pos, mass_neg)
        for members in (pos, neg):
            used = 0.0
            for b, k in sorted(members, key=lambda c: -abs(key(*c))):  # stable: ties keep flattened order
                kept[b][k] = min(p[b][k], max(0.0, budget - used))
                used += p[b][k]
    rewards = [
        [kept[b][k] * (R[b][K] - R[b][k]) + (1 - kept[b][k]) * (R[b][k + 1] - R[b][k]) for k in range(K)]
        for b in range(B)
    ]
    return rewards, [[kept[b][k] > 0.5 for k in range(K)] for b in range(B)]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("balance_key", ["r_agg", "trajectory"])
def test_prob_credit_matches_loop_reference(ties: bool, balance_key: str) -> None:
    for seed in range(25):
        rollout = random_rollout(seed, groups=3, group_size=4, steps=5, ties=ties)
        sigma = 0.05 + 0.05 * (seed % 4)
        credit = get_algorithm("tp_prob", noise_sd=sigma, balance_key=balance_key)(rollout)
        R = rollout.completion_rewards.double().tolist()
        p = turning_point_probability(rollout.completion_rewards, sigma).tolist()
        rewards, tp = reference_prob_credit(R, p, balance_key)
        assert_matches_loop_reference(credit, rollout, rewards, tp, seed)


def test_prob_worked_example_of_the_docs() -> None:
    R = torch.tensor(EXAMPLE, dtype=torch.float64)
    assert rounded(turning_point_probability(R, 0.01)) == [0.0786, 0.2372, 0.7473, 0.0002, 0.0]
    assert rounded(turning_point_probability(R, 0.02), 3) == [0.236, 0.315, 0.526, 0.032, 0.0]
    credit = get_algorithm("tp_prob", noise_sd=0.01)(one(EXAMPLE))
    assert rounded(credit.step_rewards) == [-0.0145, 0.0090, 0.0724, -0.0100, 0.0400]
    assert credit.turning_points.tolist() == [[False, False, True, False, False]]


def test_exact_ties_are_never_turning_points() -> None:
    """r_agg_k = R_K - R_k = 0 rules step k out at every sigma, as in TP-GRPO."""
    R = torch.tensor([[0.5, 0.4, 0.6, 0.4, 0.5]], dtype=torch.float64)  # R_K = R_0 = R_4: r_agg_0 = 0
    p = turning_point_probability(R, 0.05, strict=False)
    assert p[0, 0] == 0 and p[0, 1:3].min() > 0


# ------------------------------------------------------------------------------------------ RTS smoothing


def reference_smoothing(R: list[list[float]], sigma: float, q: list[float]) -> list[list[float]]:
    """The posterior mean as one linear system per trajectory: (I + sigma^2 D^T diag(1/q) D) R_hat = R (numpy)."""
    K = len(R[0]) - 1
    D = np.zeros((K, K + 1))
    for k in range(K):
        D[k, k], D[k, k + 1] = -1.0, 1.0
    system = np.eye(K + 1) + sigma**2 * D.T @ np.diag(1.0 / np.array(q)) @ D
    return [np.linalg.solve(system, np.array(row)).tolist() for row in R]


def test_rts_worked_examples_of_the_docs() -> None:
    smoothed = smooth_completion_rewards(torch.tensor([[0.50, 0.60, 0.52]], dtype=torch.float64), 0.05, 0.0025)
    torch.testing.assert_close(smoothed, torch.tensor([[0.5275, 0.5550, 0.5375]], dtype=torch.float64))
    credit = get_algorithm("tp_grpo_strict_rts", noise_sd=0.01, process_var=0.0004)(one(EXAMPLE))
    assert credit.turning_points.tolist() == [[False, False, True, False, False]]
    assert rounded(credit.step_rewards) == [-0.0139, -0.0034, 0.0640, 0.0034, 0.0272]


@pytest.mark.parametrize("ties", [False, True])
def test_rts_matches_the_linear_system_and_the_loop_references(ties: bool) -> None:
    for seed in range(20):
        rollout = random_rollout(seed, groups=3, group_size=4, steps=5, ties=ties)
        sigma = 0.02 + 0.01 * (seed % 4)  # small against the increments: every estimated q_k > 0
        R = rollout.completion_rewards.double().tolist()
        K = len(R[0]) - 1
        q = [max(0.0, sum((r[k + 1] - r[k]) ** 2 for r in R) / len(R) - 2 * sigma**2) for k in range(K)]
        assert min(q) > 0
        smoothed = reference_smoothing(R, sigma, q)
        got = smooth_completion_rewards(rollout.completion_rewards, sigma)
        torch.testing.assert_close(got.double(), torch.tensor(smoothed, dtype=torch.float64), atol=1e-6, rtol=0)
        increments = get_algorithm("incremental_rts", noise_sd=sigma)(rollout)
        expected = [[row[k + 1] - row[k] for k in range(K)] for row in smoothed]
        torch.testing.assert_close(increments.step_rewards.double(), torch.tensor(expected, dtype=torch.float64))
        strict = get_algorithm("tp_grpo_strict_rts", noise_sd=sigma)(rollout)
        rewards, tp = reference_step_rewards("tp_grpo_strict", got.double().tolist())
        assert_matches_loop_reference(strict, rollout, rewards, tp, seed)


def test_rts_process_variance_is_estimated_per_step_by_moments() -> None:
    R = torch.tensor([[0.0, 0.3, 0.31], [0.0, -0.3, -0.32]], dtype=torch.float64)
    q = increment_variance(R, 0.05)  # mean d^2 = [.09, .00025]; minus 2 sigma^2 = .005
    torch.testing.assert_close(q, torch.tensor([0.085, 0.0], dtype=torch.float64))
    smoothed = smooth_completion_rewards(R, 0.05)
    torch.testing.assert_close(smoothed[:, 2], smoothed[:, 1], atol=1e-12, rtol=0)  # q = 0: held flat
    assert (smoothed[:, 1] - smoothed[:, 0]).abs().min() > 0.2  # the real step survives
