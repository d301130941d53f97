"""Turning-point misclassification under Gaussian reward noise: what the theory predicts (docs/math.md section 8.1).

Every score R_0 .. R_K of a trajectory gets its own draw of N(0, sigma^2) noise, as ``gaussian:SD`` does
(:mod:`creditzoo.rewards.noise`). Then, given the clean scores:

* an increment d_k = R_{k+1} - R_k changes sign with probability Phi(-|d_k| / (sqrt(2) sigma))
  (:func:`flip_probability`): it carries two scores' noise;
* step k is marked as a turning point (TP-GRPO, Tong et al. 2026, arXiv 2602.06422: Definition 4.1, the
  consistency constraint of Definition 5.1, Remark 4.2's initial step) exactly when the noisy scores satisfy one of
  two mirror-image patterns of strict orderings, e.g. for an upward trajectory R_k < R_{k-1}, R_k < R_{k+1},
  R_0 < R_K (and R_{k+1} < R_K under the consistency constraint). The scores are independent normals, so each
  pattern's probability is a Gaussian integral; the increments sharing a score are correlated (-sigma^2), and the
  trend R_K - R_0 shares R_0 and R_K with the first and last increments. :func:`mark_probabilities` computes it
  exactly (up to quadrature error below 1e-9): cycles in the pattern are removed by inclusion-exclusion, what is
  left are chains of at most five scores, integrated by Gauss-Hermite quadrature over the middle score with the
  bivariate normal (Owen's T) on either side;
* the same with a margin m (``TurningPointRule.margin``): ``tp_margin`` (docs/math.md section 10.2) gives a difference
  a sign only where its magnitude exceeds m = c * sqrt(2) * sigma_told, so each ordering must hold by more than m
  (an offset; inclusion-exclusion adds complements with offset -m). :func:`sign_change_rule` reads the rule off an
  algorithm, told an SD;
* from those probabilities, the expected turning-point precision and recall over a set of clean rollouts
  (:func:`predict_turning_points`).

Marks are the rule's marks before balancing: balancing depends on the whole batch and is not part of the theory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

METHODS = ("exact", "independent", "clean_trend")
"""How :func:`mark_probabilities` treats the noise: exactly; as if every ordering's noise were independent of the
others (ignores that neighbouring increments and the trend share scores); or with the trend sign taken as clean."""

QUADRATURE_NODES = 64
"""Gauss-Hermite nodes of the integral over a chain's middle score (smooth integrand: error far below 1e-9)."""

MAX_CHAIN = 5
"""Longest chain of orderings :func:`ordering_probability` integrates (TP-GRPO's strict pattern has five scores)."""

Ordering = tuple[int, int]
"""(lo, hi): the noisy score at index lo is below the one at index hi (by more than the rule's margin)."""

Edge = tuple[int, int, float]
"""(lo, hi, offset): score hi - score lo > offset. A rule's orderings carry its margin; inclusion-exclusion adds their
complements, score lo - score hi >= -offset, with the offset negated (docs/math.md section 8.1)."""

Chain = tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]
"""(score indices in order, relations, offsets): relation +1 means the next score is above the one before it by more
than the link's offset, -1 below it by more than the offset."""


@dataclass(frozen=True)
class TurningPointRule:
    """A sign-change turning-point rule of TP-GRPO, before balancing (docs/math.md section 3), with an optional margin.

    Attributes:
        strict: the consistency constraint of Definition 5.1 (``tp_grpo_strict``).
        initial_step: Remark 4.2's initial-step extension (off in the ``*_noinit`` variants).
        margin: m >= 0, in reward units: a score difference (an increment, the trend R_K - R_0, the consistency term
            R_K - R_{k+1}) has a sign only where its magnitude exceeds m, as ``tp_margin`` counts them with
            m = c * sqrt(2) * sigma (docs/math.md section 10.2); 0 is TP-GRPO's rule exactly.
    """

    strict: bool = False
    initial_step: bool = True
    margin: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "margin", _check_margin(self.margin))

    @property
    def name(self) -> str:
        """The TP-GRPO variant that marks with this rule (``tp_grpo_strict``, ...), and its margin if not 0.

        ``tp_grpo_strict, margin 0.02758``: ``tp_margin``'s rule with c = 0.39 told sigma = 0.05.
        """
        name = "tp_grpo" + ("_strict" if self.strict else "") + ("" if self.initial_step else "_noinit")
        return name if self.margin == 0 else f"{name}, margin {self.margin:.4g}"

    @property
    def clean_version(self) -> TurningPointRule:
        """The same rule without a margin: what a noise-aware scheme marks when told no noise (its clean version)."""
        return replace(self, margin=0.0)


@dataclass(frozen=True)
class FlipPrediction:
    """Predicted sign changes of the increments d_k under ``gaussian:sigma``, per window step.

    Attributes:
        sigma: the noise SD on every score.
        flip_rate: [K] mean over the untied clean increments (d_k != 0) of Phi(-|d_k| / (sqrt(2) sigma));
            None at a step whose clean increments are all tied.
        tie_share: [K] share of clean increments that are exactly 0.
        sign_change_rate: [K] expected share of increments whose noisy sign differs from the clean sign(d_k), ties
            included: a tied increment (sign 0) gets a non-zero noisy sign with probability 1 when sigma > 0.
        flip_rate_all: the untied mean over every step (None when every increment is tied).
        tie_share_all: tie_share over every step.
        sign_change_all: sign_change_rate over every step.
    """

    sigma: float
    flip_rate: list[float | None]
    tie_share: list[float]
    sign_change_rate: list[float]
    flip_rate_all: float | None
    tie_share_all: float
    sign_change_all: float


@dataclass(frozen=True)
class TurningPointPrediction:
    """Expected turning points of one rule under ``gaussian:sigma`` over a set of clean rollouts, per window step.

    With c_bk the clean mark of trajectory b at step k and p_bk = P(noisy mark), precision is
    sum c p / sum p and recall sum c p / sum c (ratios of expectations, see docs/math.md section 8.1).

    Attributes:
        rule: the rule's name (:attr:`TurningPointRule.name`).
        reference: the name of the rule whose clean marks c_bk are the truth (the rule without its margin unless
            told otherwise).
        sigma: the noise SD on every score.
        method: one of :data:`METHODS`.
        clean_rate: [K] share of trajectories the rule marks on the clean scores.
        mark_rate: [K] expected share marked on the noisy scores.
        precision: [K] expected precision (None where no mark is expected).
        recall: [K] expected recall (None where the clean scores mark nothing).
        clean_rate_all: clean_rate over every step.
        mark_rate_all: mark_rate over every step.
        precision_all: precision pooled over every step.
        recall_all: recall pooled over every step.
    """

    rule: str
    reference: str
    sigma: float
    method: str
    clean_rate: list[float]
    mark_rate: list[float]
    precision: list[float | None]
    recall: list[float | None]
    clean_rate_all: float
    mark_rate_all: float
    precision_all: float | None
    recall_all: float | None


def _ndtr(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def _check_sigma(sigma: float) -> float:
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def _check_margin(margin: float) -> float:
    if isinstance(margin, bool) or not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0 (a score difference), got {margin!r}")
    return float(margin)


def flip_probability(increments: np.ndarray, sigma: float) -> np.ndarray:
    """P(the noisy increment's sign is not the clean one's) under Gaussian noise of SD ``sigma`` on every score.

    The noisy increment is d + e' - e with e, e' ~ N(0, sigma^2) independent, so N(d, 2 sigma^2), and its sign
    differs from sign(d) with probability Phi(-|d| / (sqrt(2) sigma)). At d = 0 that is 1/2 (either sign, equally
    likely); with sigma = 0 nothing changes (0).

    Args:
        increments: float array [...] of clean increments d.
        sigma: noise SD on each score (>= 0).

    Returns:
        float64 array [...] of probabilities.
    """
    sigma = _check_sigma(sigma)
    d = np.abs(np.asarray(increments, dtype=np.float64))
    if sigma == 0:
        return np.zeros_like(d)
    return _ndtr(-d / (math.sqrt(2.0) * sigma))


def predict_flips(rewards: np.ndarray, sigma: float) -> FlipPrediction:
    """Predicted increment sign changes per window step over a set of clean rollouts (:class:`FlipPrediction`).

    Args:
        rewards: float [N, K+1] clean completion rewards R_0 .. R_K of N trajectories.
        sigma: noise SD on every score (>= 0).
    """
    rewards = _as_rewards(rewards)
    d = np.diff(rewards, axis=1)  # [N, K]
    tied = d == 0  # [N, K]
    flips = flip_probability(d, sigma)  # [N, K]
    changed = np.where(tied, 1.0 if sigma > 0 else 0.0, flips)  # [N, K]: a tie's sign 0 turns into +-1
    untied = (~tied).sum(0)  # [K]
    per_step = [float(flips[~tied[:, k], k].mean()) if untied[k] else None for k in range(d.shape[1])]
    return FlipPrediction(
        sigma=sigma,
        flip_rate=_rounded(per_step),
        tie_share=_rounded(tied.mean(0).tolist()),
        sign_change_rate=_rounded(changed.mean(0).tolist()),
        flip_rate_all=None if tied.all() else round(float(flips[~tied].mean()), 9),
        tie_share_all=round(float(tied.mean()), 9),
        sign_change_all=round(float(changed.mean()), 9),
    )


# ----------------------------------------------------------------------------------------------- patterns


def turning_point_patterns(step: int, steps: int, rule: TurningPointRule) -> list[list[Ordering]]:
    """The mutually exclusive ordering patterns of the noisy scores that mark ``step`` as a turning point.

    Each pattern is a list of (lo, hi) pairs, "score lo < score hi" strictly, or with the rule's margin m,
    "score hi - score lo > m"; the step is marked iff one pattern holds (and r_agg = R_K - R_k != 0, which has
    probability 1 under continuous noise). The first pattern is the upward trajectory's (R_0 < R_K), the second its
    mirror image. For step k >= 1: R_k < R_{k-1}, R_k < R_{k+1} and R_0 < R_K (s_{k-1} < 0 < s_k), plus
    R_{k+1} < R_K with the consistency constraint; for step 0 (initial-step extension): R_0 < R_1 and R_0 < R_K, plus
    R_1 < R_K. A pair (i, i) can never hold (e.g. R_K < R_K at the last step under the consistency constraint; with a
    margin, 0 > m). Every pair is one of the differences ``tp_margin`` puts a dead zone on (an increment, the trend,
    the consistency term), so the same patterns, each ordering by more than m, are its marks.

    Args:
        step: window step k in [0, K).
        steps: K, the number of window steps.
        rule: the turning-point rule.

    Returns:
        Zero patterns (step 0 without the initial-step extension) or two.
    """
    if not 0 <= step < steps:
        raise ValueError(f"step must lie in [0, {steps}), got {step}")
    last = steps
    if step == 0:
        if not rule.initial_step:
            return []
        upward = [(0, 1), (0, last)]
    else:
        upward = [(step, step - 1), (step, step + 1), (0, last)]
    if rule.strict:
        upward.append((step + 1, last))
    return [upward, [(hi, lo) for lo, hi in upward]]


def ordering_probability(
    pattern: list[Ordering], means: np.ndarray, sigma: float, *, margin: float = 0.0
) -> np.ndarray:
    """P(every ordering of ``pattern`` holds) for independent scores N(means[:, i], sigma^2).

    An ordering (lo, hi) holds when score hi - score lo > ``margin``; 0 is the strict ordering score lo < score hi.

    Args:
        pattern: (lo, hi) pairs.
        means: float [N, n] clean scores (the noise's means) of N trajectories.
        sigma: noise SD (> 0).
        margin: how far each difference must exceed 0, in score units (>= 0; docs/math.md section 8.1).

    Returns:
        float64 [N] probabilities.

    Raises:
        ValueError: the pattern, once its cycles are resolved, holds a chain longer than :data:`MAX_CHAIN` or a
            score with more than two neighbours (no TP-GRPO rule does).
    """
    if _check_sigma(sigma) == 0:
        raise ValueError("sigma must be > 0 here; with sigma = 0 a pattern holds or not (see clean_marks)")
    margin = _check_margin(margin)
    means = np.asarray(means, dtype=np.float64)
    total = np.zeros(means.shape[0])
    for sign, chains in _resolve(frozenset((lo, hi, margin) for lo, hi in pattern)):
        product = np.ones(means.shape[0])
        for chain in chains:
            product = product * _chain_probability(chain, means, sigma)
        total = total + sign * product
    return total


def _normalised(edges: frozenset[Edge]) -> frozenset[Edge] | None:
    """The same event with at most one edge per pair of scores, or None when it is impossible.

    X_i - X_i > o holds always (o < 0) or never; two edges one way keep the larger offset; edges both ways,
    X_hi - X_lo > a and X_lo - X_hi > b, leave a < X_hi - X_lo < -b: empty when a + b >= 0.
    """
    if any(lo == hi and offset >= 0 for lo, hi, offset in edges):
        return None
    tightest: dict[tuple[int, int], float] = {}
    for lo, hi, offset in edges:
        if lo != hi:
            tightest[(lo, hi)] = max(offset, tightest.get((lo, hi), -math.inf))
    for (lo, hi), offset in tightest.items():
        if (hi, lo) in tightest:
            if offset + tightest[(hi, lo)] >= 0:
                return None
            raise ValueError("a pattern that bounds a score difference from both sides is not supported")
    return frozenset((lo, hi, offset) for (lo, hi), offset in tightest.items())


@cache
def _resolve(edges: frozenset[Edge]) -> tuple[tuple[int, tuple[Chain, ...]], ...]:
    """Inclusion-exclusion terms (sign, independent chains) whose signed sum is the probability of ``edges``."""
    normal = _normalised(edges)
    if normal is None:
        return ()
    cycle = _find_cycle(normal)
    if cycle is None:
        return ((1, _chains(normal)),)
    offsets = {(lo, hi): offset for lo, hi, offset in normal}
    along = [(a, b, offsets[(a, b)]) for a, b in cycle if (a, b) in offsets]  # ordered the way the cycle is walked
    against = [(b, a, offsets[(b, a)]) for a, b in cycle if (b, a) in offsets]
    if not along or not against:  # a directed cycle: the differences around it sum to 0, so 0 > sum of offsets
        if math.fsum(offset for *_, offset in along + against) >= 0:
            return ()
        raise ValueError("a directed cycle of orderings whose offsets sum below 0 is not supported")
    minority, majority = (along, against) if len(along) <= len(against) else (against, along)
    if len(minority) == 1:
        # the majority walks from the minority's lo to its hi: X_hi - X_lo > sum of its offsets (fsum: exact sums)
        if math.fsum(offset for *_, offset in majority) >= minority[0][2]:
            return _resolve(normal - {minority[0]})  # implied by the chain of the others
        raise ValueError("a cycle whose one opposing ordering is not implied by the others is not supported")
    lo, hi, offset = minority[0]
    rest = normal - {minority[0]}
    kept = _resolve(rest)
    flipped = _resolve(rest | {(hi, lo, -offset)})  # not (X_hi - X_lo > o) is X_lo - X_hi >= -o (ties: probability 0)
    return kept + tuple((-sign, chains) for sign, chains in flipped)  # P(A and S) = P(S) - P(not A and S)


def _neighbours(edges: frozenset[Edge]) -> dict[int, list[int]]:
    graph: dict[int, list[int]] = {}
    for lo, hi, _ in sorted(edges):
        graph.setdefault(lo, []).append(hi)
        graph.setdefault(hi, []).append(lo)
    return graph


def _find_cycle(edges: frozenset[Edge]) -> list[tuple[int, int]] | None:
    """One cycle of the undirected graph of the edges, as walked pairs [(a, b), (b, c), ..., (z, a)]."""
    graph = _neighbours(edges)
    seen: set[int] = set()
    for start in sorted(graph):
        if start in seen:
            continue
        parent: dict[int, int | None] = {start: None}
        stack = [start]
        while stack:
            node = stack.pop()
            seen.add(node)
            for other in graph[node]:
                if other == parent[node]:
                    continue
                if other in parent:  # a second way to reach other: the tree paths meet at a common ancestor
                    up_node, up_other = _ancestors(node, parent), _ancestors(other, parent)
                    meet = next(a for a in up_node if a in up_other)
                    walk = up_other[: up_other.index(meet) + 1] + up_node[: up_node.index(meet)][::-1]
                    return list(zip(walk, walk[1:] + walk[:1], strict=True))  # other .. meet .. node, back
                parent[other] = node
                stack.append(other)
    return None


def _ancestors(node: int, parent: dict[int, int | None]) -> list[int]:
    """node, its parent, ..., the root of the search tree."""
    chain = [node]
    while parent[chain[-1]] is not None:
        chain.append(parent[chain[-1]])  # type: ignore[arg-type]
    return chain


def _chains(edges: frozenset[Edge]) -> tuple[Chain, ...]:
    """The acyclic edges' connected components, each a chain (scores in order, relations, offsets)."""
    graph = _neighbours(edges)
    if any(len(others) > 2 for others in graph.values()):
        raise ValueError("a turning-point pattern with a score compared to more than two others is not supported")
    offsets = {(lo, hi): offset for lo, hi, offset in edges}
    chains, seen = [], set()
    for start in sorted(graph):
        if start in seen or len(graph[start]) == 2:
            continue
        order = [start]
        while True:
            following = [other for other in graph[order[-1]] if other not in order]
            if not following:
                break
            order.append(following[0])
        seen.update(order)
        if len(order) > MAX_CHAIN:
            raise ValueError(f"a chain of {len(order)} scores is longer than the {MAX_CHAIN} this integrates")
        links = list(zip(order, order[1:], strict=False))
        relations = tuple(1 if (a, b) in offsets else -1 for a, b in links)
        chains.append((tuple(order), relations, tuple(offsets.get((a, b), offsets.get((b, a))) for a, b in links)))
    return tuple(chains)


def _chain_probability(chain: Chain, means: np.ndarray, sigma: float) -> np.ndarray:
    """P(a chain of orderings) [N]: Gauss-Hermite over its middle score, exact factors on either side."""
    scores, relations, offsets = chain
    mu = means[:, list(scores)]  # [N, m]
    if len(scores) == 2:
        return _ndtr((relations[0] * (mu[:, 1] - mu[:, 0]) - offsets[0]) / (math.sqrt(2.0) * sigma))
    middle = (len(scores) - 1) // 2
    nodes, weights = np.polynomial.hermite.hermgauss(QUADRATURE_NODES)  # [Q] each
    x = mu[:, middle : middle + 1] + math.sqrt(2.0) * sigma * nodes  # [N, Q] the middle score
    # walk outwards: on the left every link is read backwards, so its relation flips; its offset stays
    left = _side(mu[:, :middle][:, ::-1], [-r for r in relations[:middle][::-1]], offsets[:middle][::-1], x, sigma)
    right = _side(mu[:, middle + 1 :], list(relations[middle:]), offsets[middle:], x, sigma)
    return (left * right) @ (weights / math.sqrt(math.pi))  # [N]


def _side(mu: np.ndarray, relations: list[int], offsets: tuple[float, ...], x: np.ndarray, sigma: float) -> np.ndarray:
    """P(the scores walked outwards from the middle score x keep their relations | x): [N, Q].

    Args:
        mu: [N, j] means of the j <= 2 scores, nearest first.
        relations: j signs; +1: a score is above the one before it (the first: above x).
        offsets: j offsets; a relation holds when the signed difference exceeds its offset.
        x: [N, Q] the middle score's quadrature values.
        sigma: noise SD.
    """
    if not relations:
        return np.ones_like(x)
    first = (relations[0] * (mu[:, :1] - x) - offsets[0]) / sigma  # [N, Q]: standardised mean of s1 (X_a - x) - o1
    if len(relations) == 1:
        return _ndtr(first)
    second = (relations[1] * (mu[:, 1:2] - mu[:, :1]) - offsets[1]) / (math.sqrt(2.0) * sigma)  # [N, 1]
    rho = -relations[0] * relations[1] / math.sqrt(2.0)  # corr of s1 (X_a - x) and s2 (X_b - X_a)
    return bivariate_normal_cdf(first, np.broadcast_to(second, first.shape), rho)


def bivariate_normal_cdf(h: np.ndarray, k: np.ndarray, rho: float) -> np.ndarray:
    """P(Z1 <= h, Z2 <= k) for standard normals of correlation ``rho`` (|rho| < 1), by Owen's T function.

    Owen (1956): Phi2 = Phi(h)/2 + Phi(k)/2 - T(h, a_h) - T(k, a_k) - beta, a_h = (k - rho h) / (h sqrt(1 - rho^2)),
    a_k likewise, beta = 1/2 when hk < 0 or (hk = 0 and h + k < 0), else 0; at h = k = 0 it is
    1/4 + arcsin(rho) / (2 pi).

    Args:
        h: float array [...].
        k: float array of the same shape.
        rho: correlation in (-1, 1).

    Returns:
        float64 array [...].
    """
    from scipy.special import owens_t

    h, k = np.broadcast_arrays(np.asarray(h, dtype=np.float64), np.asarray(k, dtype=np.float64))
    h, k = h + 0.0, k + 0.0  # -0.0 becomes +0.0: the formula takes a zero argument as +0 (a_h = sign(k) * inf)
    root = math.sqrt(1.0 - rho * rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_h = (k - rho * h) / (h * root)  # +-inf at h = 0: T(0, +-inf) = +-1/4
        a_k = (h - rho * k) / (k * root)
        value = 0.5 * (_ndtr(h) + _ndtr(k)) - owens_t(h, a_h) - owens_t(k, a_k)
    value = value - 0.5 * ((h * k < 0) | ((h * k == 0) & (h + k < 0)))
    both_zero = (h == 0) & (k == 0)
    value = np.where(both_zero, 0.25 + math.asin(rho) / (2 * math.pi), value)
    return np.clip(value, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------- predictions


def _as_rewards(rewards: np.ndarray) -> np.ndarray:
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"completion rewards must have shape [N, K+1] with K >= 1, got {list(rewards.shape)}")
    return rewards


def clean_marks(rewards: np.ndarray, rule: TurningPointRule) -> np.ndarray:
    """The rule's marks on the clean scores, bool [N, K]: a pattern holds and r_agg = R_K - R_k != 0.

    An ordering (lo, hi) holds where R_hi - R_lo > the rule's margin (0: R_lo < R_hi strictly), as
    :func:`~creditzoo.algorithms.tp_grpo.turning_points` counts a sign outside its dead zone.
    """
    rewards = _as_rewards(rewards)
    steps = rewards.shape[1] - 1
    marks = np.zeros((rewards.shape[0], steps), dtype=bool)
    for k in range(steps):
        for pattern in turning_point_patterns(k, steps, rule):
            marks[:, k] |= np.all([rewards[:, hi] - rewards[:, lo] > rule.margin for lo, hi in pattern], axis=0)
    return marks & (rewards[:, -1:] != rewards[:, :-1])


def mark_probabilities(
    rewards: np.ndarray, sigma: float, rule: TurningPointRule, *, method: str = "exact"
) -> np.ndarray:
    """P(step k of trajectory b is marked as a turning point) under Gaussian noise of SD ``sigma`` on every score.

    Args:
        rewards: float [N, K+1] clean completion rewards R_0 .. R_K.
        sigma: noise SD (>= 0); at 0 the result is the clean marks (0 or 1).
        rule: the turning-point rule (before balancing), its margin included.
        method: ``"exact"``; ``"independent"`` multiplies each ordering's own probability, as if the orderings'
            noise were independent; ``"clean_trend"`` takes sign(R_K - R_0) from the clean scores (see
            :data:`METHODS`). The two approximations show what the shared scores contribute.

    Returns:
        float64 [N, K] probabilities.
    """
    rewards = _as_rewards(rewards)
    sigma = _check_sigma(sigma)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if sigma == 0:
        return clean_marks(rewards, rule).astype(np.float64)
    steps = rewards.shape[1] - 1
    probabilities = np.zeros((rewards.shape[0], steps))  # [N, K]
    for k in range(steps):
        for pattern in turning_point_patterns(k, steps, rule):
            probabilities[:, k] += _pattern_probability(pattern, rewards, sigma, method, rule.margin)
    return probabilities


def _pattern_probability(pattern: list[Ordering], rewards: np.ndarray, sigma: float, method: str, margin: float):
    """P(the pattern holds, each ordering by more than ``margin``) [N], exactly or by one of the approximations."""
    if method == "independent":
        unique = set(pattern)
        if any(lo == hi for lo, hi in unique):  # 0 > margin never holds
            return np.zeros(rewards.shape[0])
        product = np.ones(rewards.shape[0])
        for lo, hi in unique:
            product = product * _ndtr((rewards[:, hi] - rewards[:, lo] - margin) / (math.sqrt(2.0) * sigma))
        return product
    if method == "clean_trend":
        last = rewards.shape[1] - 1
        trend = [pair for pair in pattern if set(pair) == {0, last}]
        rest = [pair for pair in pattern if set(pair) != {0, last}]
        holds = np.all([rewards[:, hi] - rewards[:, lo] > margin for lo, hi in trend], axis=0)
        return np.where(holds, ordering_probability(rest, rewards, sigma, margin=margin) if rest else 1.0, 0.0)
    return ordering_probability(pattern, rewards, sigma, margin=margin)


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else round(numerator / denominator, 9)


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(float(v), 9) for v in values]


def predict_turning_points(
    rewards: np.ndarray,
    sigma: float,
    rule: TurningPointRule,
    *,
    method: str = "exact",
    reference: TurningPointRule | None = None,
) -> TurningPointPrediction:
    """Expected turning-point rates, precision and recall of ``rule`` under ``gaussian:sigma`` (per step and pooled).

    Args:
        rewards: float [N, K+1] clean completion rewards of N trajectories.
        sigma: noise SD on every score (>= 0).
        rule: the rule that marks the noisy scores (before balancing), its margin included.
        method: see :func:`mark_probabilities`.
        reference: the rule whose marks on the clean scores are the true turning points; default
            :attr:`TurningPointRule.clean_version`, the rule without its margin (a margin answers noise: on clean
            scores a noise-aware scheme is told sigma = 0, as ``analyze robustness`` replays it).

    Returns:
        :class:`TurningPointPrediction`.
    """
    rewards = _as_rewards(rewards)
    reference = rule.clean_version if reference is None else reference
    clean = clean_marks(rewards, reference).astype(np.float64)  # [N, K]
    noisy = mark_probabilities(rewards, sigma, rule, method=method)  # [N, K]
    hits = clean * noisy  # [N, K] expected hits
    steps = range(clean.shape[1])
    return TurningPointPrediction(
        rule=rule.name,
        reference=reference.name,
        sigma=float(sigma),
        method=method,
        clean_rate=_rounded(clean.mean(0).tolist()),
        mark_rate=_rounded(noisy.mean(0).tolist()),
        precision=[_ratio(hits[:, k].sum(), noisy[:, k].sum()) for k in steps],
        recall=[_ratio(hits[:, k].sum(), clean[:, k].sum()) for k in steps],
        clean_rate_all=round(float(clean.mean()), 9),
        mark_rate_all=round(float(noisy.mean()), 9),
        precision_all=_ratio(hits.sum(), noisy.sum()),
        recall_all=_ratio(hits.sum(), clean.sum()),
    )


SIGN_CHANGE_OPTIONS = frozenset({"strict", "initial_step", "balance", "balance_key", "std_mode", "eps"})
"""Options of the TP-GRPO kernels that leave the marking rule a pure sign-change rule (balancing acts after it)."""

MARGIN_OPTIONS = SIGN_CHANGE_OPTIONS | {"noise_sd", "margin"}
"""Options of ``tp_margin``: its rule has margin c * sqrt(2) * sigma (c: ``margin``, sigma: ``noise_sd``)."""


def sign_change_rule(algo: str, *, noise_sd: float | None = None) -> TurningPointRule | None:
    """The sign-change rule an algorithm marks turning points with, or None if it marks them otherwise (or never).

    An algorithm qualifies when its kernel is :func:`~creditzoo.algorithms.tp_grpo.tp_grpo` or
    :func:`~creditzoo.algorithms.tp_grpo.tp_grpo_release` and it takes no option beyond :data:`SIGN_CHANGE_OPTIONS`,
    or when its kernel is :func:`~creditzoo.algorithms.tp_margin.tp_margin` and it takes no option beyond
    :data:`MARGIN_OPTIONS`: then the rule has margin c * sqrt(2) * sigma, computed as the kernel computes it (a kernel
    that grew another option, a probability say, would mark differently, and gets None).

    Args:
        algo: a registry name (or ``"package.module:RECORD"``).
        noise_sd: sigma, the SD a noise-aware scheme is told (as ``analyze robustness`` tells it the injected noise's
            :func:`~creditzoo.rewards.noise.per_call_sd`); None: the ``noise_sd`` bound in its options (0 unless set).
            Schemes without a ``noise_sd`` option ignore it.

    Raises:
        ValueError: an unknown algorithm, or a ``noise_sd`` the scheme rejects (their one-line messages).
    """
    from creditzoo.algorithms import base_function, get_algorithm
    from creditzoo.algorithms.tp_grpo import tp_grpo, tp_grpo_release
    from creditzoo.algorithms.tp_margin import tp_margin

    algorithm = get_algorithm(algo)
    kernel = base_function(algorithm.fn)
    if kernel in (tp_grpo, tp_grpo_release) and set(algorithm.bound_options) <= SIGN_CHANGE_OPTIONS:
        margin = 0.0
    elif kernel is tp_margin and set(algorithm.bound_options) <= MARGIN_OPTIONS:
        if noise_sd is not None:
            algorithm = get_algorithm(algo, **{**algorithm.options, "noise_sd": noise_sd})  # the kernel checks it
        margin = algorithm.bound_options["margin"] * math.sqrt(2.0) * algorithm.bound_options["noise_sd"]
    else:
        return None
    options = algorithm.bound_options
    return TurningPointRule(
        strict=bool(options["strict"]), initial_step=bool(options.get("initial_step", True)), margin=margin
    )
