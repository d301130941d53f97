"""Where and how often turning points occur, recomputed offline from a run's rollout records.

Turning points follow TP-GRPO (Tong et al. 2026, "Alleviating Sparse Rewards by Modeling Step-Wise and Long-Term
Sampling Effects in Flow-Based GRPO", arXiv 2602.06422): Definition 4.1 (``tp_grpo``), Definition 5.1 with the
consistency constraint (``tp_grpo_strict``), Remark 4.2's initial step (off in the ``*_noinit`` variants) and the
batch balancing of docs/math.md section 3. The released rule's variants (``tp_grpo_release``,
``tp_grpo_strict_release``) mark as ``tp_grpo`` / ``tp_grpo_strict`` do and balance nothing. Every variant is
replayed on the same recorded completion rewards R_0 .. R_K, one record (one training batch) at a time, exactly as
the learner would have balanced it, so the variants can be compared on identical rollouts.

Counts are reported for the balanced turning points (what training credits) and, for the balancing itself, the
unbalanced ones: balancing only unmarks, so ``removed_by_balancing = before_balancing - total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch

from creditzoo.algorithms import get_algorithm
from creditzoo.algorithms.tp_grpo import turning_points as mark_turning_points
from creditzoo.analysis.credit import Record

TP_VARIANTS: dict[str, dict[str, bool]] = {
    "tp_grpo": {"strict": False, "initial_step": True},
    "tp_grpo_strict": {"strict": True, "initial_step": True},
    "tp_grpo_noinit": {"strict": False, "initial_step": False},
    "tp_grpo_strict_noinit": {"strict": True, "initial_step": False},
    "tp_grpo_release": {"strict": False, "initial_step": True},
    "tp_grpo_strict_release": {"strict": True, "initial_step": True},
}
"""Registry name of every turning-point variant -> its definition's switches (for the unbalanced marks)."""
UNBALANCED_VARIANTS = ("tp_grpo_release", "tp_grpo_strict_release")
"""Variants that never balance (the released rule): they take no ``balance_key``."""


@dataclass(frozen=True)
class VariantTurningPoints:
    """One variant's turning points over a run's records (I iterations, K steps, N trajectories in all).

    Attributes:
        variant: registry name (e.g. ``tp_grpo_strict``).
        total: number of turning points after balancing.
        rate: total / (N * K).
        rate_per_step: [K] share of trajectories marked at each step.
        rate_per_iteration: [I] share of (trajectory, step) marked in each iteration.
        heatmap: [K][I] share of trajectories marked at step k in iteration i.
        initial_share: share of the turning points that sit at step 0 (None when there are none).
        positive: turning points whose aggregated reward r_agg = R_K - R_k is > 0.
        negative: those with r_agg < 0.
        before_balancing: turning points before balancing.
        removed_by_balancing: before_balancing - total.
        per_trajectory: histogram: entry j is the number of trajectories with exactly j turning points.
        mean_per_trajectory: total / N.
    """

    variant: str
    total: int
    rate: float
    rate_per_step: list[float]
    rate_per_iteration: list[float]
    heatmap: list[list[float]]
    initial_share: float | None
    positive: int
    negative: int
    before_balancing: int
    removed_by_balancing: int
    per_trajectory: list[int]
    mean_per_trajectory: float


@dataclass(frozen=True)
class PairAgreement:
    """How far two variants mark the same (trajectory, step) pairs.

    Attributes:
        first: a variant name.
        second: another variant name.
        jaccard: |A & B| / |A | B| of the two turning-point sets (1.0 when both are empty).
        equal_share: share of all (trajectory, step) pairs that both mark or both leave unmarked.
    """

    first: str
    second: str
    jaccard: float
    equal_share: float


@dataclass(frozen=True)
class TurningPointReport:
    """Turning-point statistics of one run, for every variant, on the same rollouts.

    Attributes:
        iterations: the iteration of each record, [I].
        trajectories: N, trajectories over all records.
        steps: K, trained steps per trajectory.
        rewards: "noisy" (the rewards the run trained on) or "clean".
        zero_increment_share: share of increments d_k = R_{k+1} - R_k that are exactly zero.
        no_trend_share: share of trajectories with no overall trend (R_K == R_0).
        variants: per variant, :class:`VariantTurningPoints`.
        agreement: every pair of variants, :class:`PairAgreement`.
        recorded_algo: the algorithm the run trained with.
        recorded_matches_replay: whether the replayed turning points of ``recorded_algo`` equal the recorded ones
            (None when the run's algorithm is not a turning-point variant).
    """

    iterations: list[int]
    trajectories: int
    steps: int
    rewards: str
    zero_increment_share: float
    no_trend_share: float
    variants: dict[str, VariantTurningPoints]
    agreement: list[PairAgreement]
    recorded_algo: str | None = None
    recorded_matches_replay: bool | None = None


def _round(value: float) -> float:
    return round(float(value), 6)


def variant_turning_points(
    records: list[Record], variant: str, *, clean: bool = False, balance_key: str = "r_agg"
) -> tuple[VariantTurningPoints, list[torch.Tensor]]:
    """Replay one variant on every record and summarise its turning points.

    Args:
        records: the run's records, all with completion rewards [B_i, K+1].
        variant: a key of :data:`TP_VARIANTS`.
        clean: replay on the clean rewards instead of the noisy ones the run trained on.
        balance_key: the balancing key the run used (``r_agg`` or ``trajectory``); the released rule's variants
            balance nothing and ignore it.

    Returns:
        The summary, and the balanced turning points of each record (bool [B_i, K]).
    """
    if variant not in TP_VARIANTS:
        raise ValueError(f"unknown turning-point variant {variant!r}; valid: {', '.join(TP_VARIANTS)}")
    options = {} if variant in UNBALANCED_VARIANTS else {"balance_key": balance_key}
    algorithm = get_algorithm(variant, **options)
    marks, unbalanced, aggregated = [], 0, []
    for record in records:
        rewards = record.completion_rewards(clean=clean)  # [B, K+1]
        marks.append(algorithm(record.rollout(clean=clean)).turning_points)  # [B, K]
        unbalanced += int(mark_turning_points(rewards, **TP_VARIANTS[variant]).sum())
        aggregated.append(rewards[:, -1:] - rewards[:, :-1])  # [B, K] r_agg
    every = torch.cat(marks)  # [N, K]
    r_agg = torch.cat(aggregated)  # [N, K]
    total = int(every.sum())
    counts = every.sum(1)  # [N]
    summary = VariantTurningPoints(
        variant=variant,
        total=total,
        rate=_round(every.float().mean()),
        rate_per_step=[_round(x) for x in every.float().mean(0)],
        rate_per_iteration=[_round(m.float().mean()) for m in marks],
        heatmap=[[_round(m[:, k].float().mean()) for m in marks] for k in range(every.shape[1])],
        initial_share=_round(every[:, 0].sum() / total) if total else None,
        positive=int((every & (r_agg > 0)).sum()),
        negative=int((every & (r_agg < 0)).sum()),
        before_balancing=unbalanced,
        removed_by_balancing=unbalanced - total,
        per_trajectory=[int(x) for x in torch.bincount(counts, minlength=every.shape[1] + 1)],
        mean_per_trajectory=_round(counts.float().mean()),
    )
    return summary, marks


def pair_agreement(first: str, a: torch.Tensor, second: str, b: torch.Tensor) -> PairAgreement:
    """Jaccard overlap and equal-marking share of two turning-point masks of equal shape (bool [N, K])."""
    union = int((a | b).sum())
    jaccard = int((a & b).sum()) / union if union else 1.0
    return PairAgreement(first, second, _round(jaccard), _round((a == b).float().mean()))


def turning_point_report(
    records: list[Record],
    *,
    clean: bool = False,
    variants: tuple[str, ...] = tuple(TP_VARIANTS),
    config: dict | None = None,
) -> TurningPointReport:
    """Turning-point statistics of a run for every variant, with their pairwise agreement.

    Args:
        records: the run's records (see :func:`creditzoo.analysis.load_records`).
        clean: use the clean completion rewards instead of the noisy ones the run trained on.
        variants: which turning-point variants to replay.
        config: the run's ``config.json`` (its algorithm and ``balance_key`` option), if known.

    Raises:
        ValueError: the records hold no completion rewards (e.g. a ``flow_grpo`` run), or their K differ.
    """
    if not records or not all(record.has_completions for record in records):
        raise ValueError(
            "this run recorded no completion rewards (flow_grpo trains on final rewards only): "
            "there are no turning points to replay"
        )
    steps = {record.completion_rewards().shape[1] - 1 for record in records}
    if len(steps) != 1:
        raise ValueError(f"records disagree on the number of trained steps K: {sorted(steps)}")
    config = config or {}
    options = config.get("algo_options") or {}
    balance_key = str(options.get("balance_key", "r_agg"))
    rewards = torch.cat([record.completion_rewards(clean=clean) for record in records])  # [N, K+1]
    increments = rewards[:, 1:] - rewards[:, :-1]  # [N, K]
    summaries, masks = {}, {}
    for name in variants:
        summaries[name], marks = variant_turning_points(records, name, clean=clean, balance_key=balance_key)
        masks[name] = torch.cat(marks)  # [N, K]
    agreement = [pair_agreement(a, masks[a], b, masks[b]) for a, b in combinations(variants, 2)]
    algo = config.get("algo")
    matches = None
    if algo in TP_VARIANTS and algo in masks and not clean and options.get("balance", True):
        recorded = torch.cat([record.tensors["turning_points"] for record in records])
        matches = bool(torch.equal(recorded, masks[algo]))
    return TurningPointReport(
        iterations=[record.iteration for record in records],
        trajectories=rewards.shape[0],
        steps=steps.pop(),
        rewards="clean" if clean else "noisy",
        zero_increment_share=_round((increments == 0).float().mean()),
        no_trend_share=_round((rewards[:, -1] == rewards[:, 0]).float().mean()),
        variants=summaries,
        agreement=agreement,
        recorded_algo=algo,
        recorded_matches_replay=matches,
    )
