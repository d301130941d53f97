"""Probabilistic turning points: each step's credit mixes r_agg_k and d_k by the posterior that it is a turning point.

creditzoo's own scheme (docs/math.md section 10.3), answering the open question of TP-GRPO (Tong et al. 2026,
arXiv 2602.06422) about turning-point criteria with "probabilistic confidence". The completion rewards the
rollout holds are the clean ones plus independent Gaussian noise of SD sigma (``noise_sd``). Under a flat prior the
clean rewards are, given the observed ones, N(observed, sigma^2 I), and every turning-point condition of
``tp_grpo_strict`` (or of ``tp_grpo``) is a sign of a difference of two of them. The kernel computes

    p_k = sum over g in {+1, -1} of P(g * trend > 0) * P(g * d_{k-1} < 0, g * d_k > 0) [* P(g * (R_K - R_{k+1}) > 0)]

with the neighbouring increments' exact bivariate normal (they share the score R_k: correlation -1/2) and the
trend (and the consistency term) as independent factors; the initial step's probability is an exact bivariate
normal. Balancing keeps equal turning-point *mass* of each sign (water-filling by |key|, which is TP-GRPO's
balancing when every p_k is 0 or 1), and the step reward is p_k * r_agg_k + (1 - p_k) * d_k, the posterior mean
of TP-GRPO's step reward when r_agg_k and d_k are taken as observed. At sigma = 0 every p_k is TP-GRPO's
0/1 mark and the scheme is ``tp_grpo_strict`` bit for bit.

``algorithms/`` imports no scipy: the normal CDF is ``torch.erfc`` and the bivariate normal CDF is Sheppard's
integral over the correlation, by Gauss-Legendre quadrature (exact to float64 rounding for |rho| <= 1/2).
"""

from __future__ import annotations

import functools
import math

import torch

from creditzoo.algorithms._group import check_noise_sd, check_std_options, make_credit, require_completions
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.algorithms.tp_grpo import TP_GRPO_COST, balance_keys, check_tp_options, turning_points
from creditzoo.rollout import Credit, Rollout

LEGENDRE_NODES = 20
"""Gauss-Legendre nodes of the bivariate CDF's integral (Genz 2004 uses 20 for |rho| < 0.925)."""
HERMITE_NODES = 48
"""Gauss-Hermite nodes of the expectation over a pivot reward (docs/math.md section 10.3 gives the accuracy)."""
SQRT_HALF = math.sqrt(0.5)
"""The correlation of a reward with a difference it takes part in, e.g. corr(R_k, R_k - R_{k-1})."""


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x), the standard normal CDF, elementwise; erfc keeps the lower tail accurate."""
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


@functools.cache
def _legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights [n] on [-1, 1], float64 (Golub-Welsch: eigenvalues of the Jacobi matrix)."""
    i = torch.arange(1, n, dtype=torch.float64)
    off = i / torch.sqrt(4 * i * i - 1)  # [n-1]
    jacobi = torch.diag(off, 1) + torch.diag(off, -1)  # [n, n]
    nodes, vectors = torch.linalg.eigh(jacobi)
    return nodes, 2 * vectors[0] ** 2


def bivariate_normal_cdf(h: torch.Tensor, k: torch.Tensor, rho: float) -> torch.Tensor:
    """P(X <= h, Y <= k) for standard normals X, Y with correlation rho (|rho| <= 0.75), elementwise.

    Sheppard's formula Phi(h) Phi(k) + (1 / 2 pi) * integral over theta from 0 to asin(rho) of
    exp(-(h^2 + k^2 - 2 h k sin theta) / (2 cos^2 theta)), by 20-node Gauss-Legendre quadrature.

    Args:
        h: float [...] finite upper limits of X.
        k: float [...] finite upper limits of Y, broadcastable with ``h``.
        rho: the correlation.

    Returns:
        float64 [...] probabilities.
    """
    if not abs(rho) <= 0.75:
        raise ValueError(f"bivariate_normal_cdf is accurate for |rho| <= 0.75, got {rho}")
    h, k = torch.broadcast_tensors(h.double(), k.double())
    nodes, weights = _legendre(LEGENDRE_NODES)
    top = math.asin(rho)
    theta = (nodes.to(h.device) + 1) * (top / 2)  # [n] in [0, asin(rho)]
    sin, cos2 = torch.sin(theta), torch.cos(theta) ** 2
    hk, squares = (h * k).unsqueeze(-1), (h * h + k * k).unsqueeze(-1)  # [..., 1]
    integrand = torch.exp(-(squares - 2 * hk * sin) / (2 * cos2))  # [..., n]
    integral = (integrand * weights.to(h.device)).sum(-1) * (top / 2)
    return normal_cdf(h) * normal_cdf(k) + integral / (2 * math.pi)


@functools.cache
def _hermite(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite nodes and weights [n] for E[f(Z)], Z ~ N(0, 1), float64 (weights sum to 1; Golub-Welsch)."""
    off = torch.sqrt(torch.arange(1, n, dtype=torch.float64))  # [n-1]
    nodes, vectors = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
    return nodes, vectors[0] ** 2


def _expect(center: torch.Tensor, integrand) -> torch.Tensor:
    """E[integrand(X)] for X ~ N(center, 1) elementwise: ``center`` [...] -> [...], by Gauss-Hermite quadrature."""
    nodes, weights = _hermite(HERMITE_NODES)
    x = center.unsqueeze(-1) + nodes.to(center.device)  # [..., n]
    return (integrand(x) * weights.to(center.device)).sum(-1)


def turning_point_probability(
    rewards: torch.Tensor, noise_sd: float, *, strict: bool = True, initial_step: bool = True
) -> torch.Tensor:
    """p_k, the posterior probability that the clean rule marks step k, float64 [B, K] (docs/math.md section 10.3).

    The clean rewards are N(observed, sigma^2 I) given the observed ones (flat prior); p_k is the probability of
    TP-GRPO's conditions at step k under that law, summed over the two trend signs.

    Args:
        rewards: float [B, K+1] observed completion rewards R_0 .. R_K.
        noise_sd: sigma > 0 of each reward's noise (at 0, use :func:`turning_points`).
        strict: the conditions of ``tp_grpo_strict`` (else ``tp_grpo``).
        initial_step: step 0 may be a turning point (Remark 4.2).

    Returns:
        float64 [B, K] in [0, 1]; 0 where r_agg_k = R_K - R_k is exactly 0 (never a turning point).
    """
    r = rewards.double() / noise_sd  # [B, K+1]: each clean reward is N(r_i, 1) in units of sigma
    p = torch.zeros(r.shape[0], r.shape[1] - 1, dtype=torch.float64, device=r.device)  # [B, K]
    for g in (1.0, -1.0):  # the trend's sign; with g = -1 every condition is the rising one on -R
        if p.shape[1] > 1:
            p[:, 1:] += _strict_turn(g * r) if strict else _turn(g * r)
        if initial_step:
            p[:, 0] += _initial_step(g * r, strict=strict)
    return p * (rewards[:, -1:] - rewards[:, :-1] != 0)


def _turn(r: torch.Tensor) -> torch.Tensor:
    """P(R_{k-1} > R_k < R_{k+1} and R_K > R_0), k = 1 .. K-1, float64 [B, K-1]; R_i ~ N(r_i, 1) independent.

    Given the pivot R_k = x the two neighbours are independent: E_x[P(R_{k-1} > x) P(R_{k+1} > x)] times
    P(R_K > R_0). Where a neighbour is R_0 (k = 1) or R_K (k = K-1) the trend joins that neighbour's factor as
    a bivariate normal: P(R_0 > x, R_K > R_0) or P(R_K > x, R_K > R_0).
    """
    steps = r.shape[1] - 1
    k = torch.arange(1, steps, device=r.device)  # [K-1]
    first, last = (k == 1).unsqueeze(-1), (k == steps - 1).unsqueeze(-1)  # [K-1, 1]
    r0, rk = r[:, :1, None], r[:, -1:, None]  # [B, 1, 1]
    trend = (rk - r0) / math.sqrt(2.0)  # [B, 1, 1] standardised R_K - R_0
    below, above = r[:, :-2, None], r[:, 2:, None]  # [B, K-1, 1]: R_{k-1}, R_{k+1}

    def integrand(x: torch.Tensor) -> torch.Tensor:  # x: [B, K-1, n], the pivot R_k
        left = torch.where(first, bivariate_normal_cdf(r0 - x, trend, -SQRT_HALF), normal_cdf(below - x))
        right = torch.where(last, bivariate_normal_cdf(rk - x, trend, SQRT_HALF), normal_cdf(above - x))
        return left * torch.where(first & last, torch.ones_like(right), right)  # K = 2: R_2 > R_0 > x suffices

    outer = torch.where(first | last, torch.ones_like(trend), normal_cdf(trend)).squeeze(-1)  # [B, K-1]
    return outer * _expect(r[:, 1:-1], integrand)


def _strict_turn(r: torch.Tensor) -> torch.Tensor:
    """P(R_{k-1} > R_k < R_{k+1} < R_K and R_K > R_0), k = 1 .. K-1, float64 [B, K-1] (0 at k = K-1).

    k >= 2: given the pivot R_{k+1} = y, P(R_k < y, R_{k-1} > R_k) and P(R_K > y, R_K > R_0) are independent
    bivariate normals. k = 1 (R_{k-1} = R_0): given R_0 = a, split on R_2 < a or > a:
    P(R_K > a) P(R_2 < a, R_1 < R_2) + P(R_1 < a) P(R_2 > a, R_K > R_2).
    """
    steps = r.shape[1] - 1
    r0, rk = r[:, :1, None], r[:, -1:, None]  # [B, 1, 1]
    trend = (rk - r0) / math.sqrt(2.0)
    here, below = r[:, 1:-1, None], r[:, :-2, None]  # [B, K-1, 1]: R_k, R_{k-1}

    def pivot_next(y: torch.Tensor) -> torch.Tensor:  # y: [B, K-1, n], the pivot R_{k+1}
        left = bivariate_normal_cdf(y - here, (below - here) / math.sqrt(2.0), SQRT_HALF)
        return left * bivariate_normal_cdf(rk - y, trend, SQRT_HALF)

    p = _expect(r[:, 2:], pivot_next)  # [B, K-1]
    if steps >= 3:
        r1, r2 = r[:, 1:2, None], r[:, 2:3, None]  # [B, 1, 1]

        def pivot_first(a: torch.Tensor) -> torch.Tensor:  # a: [B, 1, n], the pivot R_0
            low = normal_cdf(rk - a) * bivariate_normal_cdf(a - r2, (r2 - r1) / math.sqrt(2.0), -SQRT_HALF)
            high = normal_cdf(a - r1) * bivariate_normal_cdf(r2 - a, (rk - r2) / math.sqrt(2.0), -SQRT_HALF)
            return low + high

        p[:, :1] = _expect(r[:, :1], pivot_first)
    p[:, -1] = 0.0  # R_K - R_K = 0 exactly: the last step never qualifies
    return p


def _initial_step(r: torch.Tensor, *, strict: bool) -> torch.Tensor:
    """P(step 0 is a turning point with a rising trend) [B], an exact bivariate normal (R_i ~ N(r_i, 1))."""
    steps = r.shape[1] - 1
    d0 = (r[:, 1] - r[:, 0]) / math.sqrt(2.0)  # [B] standardised d_0
    if strict:  # d_0 > 0 and R_K - R_1 > 0; they share R_1: correlation -1/2
        if steps == 1:
            return torch.zeros_like(d0)  # R_K - R_1 = 0
        return bivariate_normal_cdf(d0, (r[:, -1] - r[:, 1]) / math.sqrt(2.0), -0.5)
    if steps == 1:  # the trend is d_0 itself
        return normal_cdf(d0)
    return bivariate_normal_cdf((r[:, -1] - r[:, 0]) / math.sqrt(2.0), d0, 0.5)  # trend and d_0 share R_0


def balance_mass(p: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Balance turning-point probabilities: equal mass of each key sign, kept by |key| (water-filling).

    With M+ and M- the total p of positive- and negative-key steps: if both are > 0, each sign keeps mass
    M = min(M+, M-), filled in order of decreasing |key| (ties: flattened [B, K] order), so a step keeps
    min(p, max(0, M - mass ranked before it)); zero-key steps keep nothing. Otherwise ``p`` is kept whole.
    With p in {0, 1} this is :func:`creditzoo.algorithms.tp_grpo.balance_turning_points`.

    Args:
        p: float [B, K] turning-point probabilities.
        key: float [B, K] balancing key.

    Returns:
        float [B, K] balanced probabilities.
    """
    positive, negative = (p > 0) & (key > 0), (p > 0) & (key < 0)  # [B, K]
    mass_pos, mass_neg = (p * positive).sum(), (p * negative).sum()
    budget = torch.minimum(mass_pos, mass_neg)
    magnitude = key.abs()
    kept = _fill(p, positive, magnitude, budget) + _fill(p, negative, magnitude, budget)
    return torch.where((mass_pos > 0) & (mass_neg > 0), kept, p)


def _fill(p: torch.Tensor, members: torch.Tensor, magnitude: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """Members' p filled up to ``budget`` in order of decreasing magnitude; 0 elsewhere."""
    order = torch.sort(torch.where(members, magnitude, -1.0).flatten(), descending=True, stable=True).indices
    mass = torch.where(members, p, 0.0).flatten()[order]  # [B*K] in rank order
    before = torch.cumsum(mass, 0) - mass
    kept = torch.minimum(mass, (budget - before).clamp_min(0.0))
    return torch.empty_like(kept).index_copy_(0, order, kept).view_as(p)


def tp_prob(
    rollout: Rollout,
    *,
    noise_sd: float = 0.0,
    strict: bool = True,
    initial_step: bool = True,
    balance: bool = True,
    balance_key: str = "r_agg",
    std_mode: str = "group",
    eps: float = 1e-4,
) -> Credit:
    """TP-GRPO credit with turning-point probabilities: p_k * r_agg_k + (1 - p_k) * d_k.

    Args:
        rollout: needs ``completion_rewards`` [B, K+1].
        noise_sd: sigma, the SD of the noise on each completion reward the rollout holds (with N reward repeats,
            the per-call SD / sqrt(N)); the learner fills it from ``--reward-noise-sd``. 0: ``tp_grpo_strict``.
        strict: the consistency constraint (Definition 5.1); False gives the probabilistic ``tp_grpo``.
        initial_step: initial-step extension (Remark 4.2).
        balance: balance the turning-point mass of positive and negative keys over the batch.
        balance_key: "r_agg" (per step) or "trajectory" (R_K - R_0).
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], turning_points [B, K] (where the balanced p_k > 1/2) and
        advantages [B, K].
    """
    check_std_options(std_mode, eps)
    check_tp_options(strict=strict, initial_step=initial_step, balance=balance, balance_key=balance_key)
    check_noise_sd(noise_sd)
    rewards = require_completions(rollout, "tp_prob")  # [B, K+1]
    if noise_sd == 0:  # the limit: every probability is TP-GRPO's 0/1 mark (sign(0) = 0 rules ties out)
        p = turning_points(rewards, strict=strict, initial_step=initial_step).double()  # [B, K]
    else:
        p = turning_point_probability(rewards, noise_sd, strict=strict, initial_step=initial_step)  # [B, K]
    if balance:
        p = balance_mass(p, balance_keys(rewards, balance_key).double())
    p = p.to(rewards.dtype)
    increments = rewards[:, 1:] - rewards[:, :-1]  # [B, K]
    aggregated = rewards[:, -1:] - rewards[:, :-1]  # [B, K] r_agg
    step_rewards = p * aggregated + (1 - p) * increments  # [B, K]; exactly r_agg or d where p is 1 or 0
    return make_credit(rollout, step_rewards, p > 0.5, std_mode=std_mode, eps=eps)


TP_PROB = AlgorithmSpec(
    fn=tp_prob,
    shape="chain",
    needs_completions=True,
    paper="creditzoo (this work)",
    cost=TP_GRPO_COST,
    description="tp_grpo_strict with turning-point posteriors p_k: p_k*r_agg_k + (1-p_k)*d_k (noise_sd)",
)
