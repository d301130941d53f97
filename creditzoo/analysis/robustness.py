"""Robustness of credit assignment to reward noise: the counterfactual study and the noise sweep.

Counterfactual study: on a run's recorded **clean** completion rewards R_0 .. R_K (docs/math.md section 2), inject
a noise model (section 6, :mod:`creditzoo.rewards.noise`) many times with different seeds, replay every algorithm
(section 3) on the clean and on each noisy copy, record by record (one training batch each, so balancing and group
statistics are those of training), and measure what the noise changed:

* turning-point precision |TP_noisy & TP_clean| / |TP_noisy| and recall |TP_noisy & TP_clean| / |TP_clean|
  (1 when the denominator set is empty; None for algorithms that never mark turning points);
* the rate at which an increment d_k = R_{k+1} - R_k changes sign (the same for every algorithm);
* the Spearman rank correlation and the sign agreement of the advantages with the clean ones.

Each noisy copy draws every score once, R_K included, as a noisy reward model would during training.
Turning points are those of TP-GRPO (Tong et al. 2026, arXiv 2602.06422). Each figure is the pool over all records
of one repeat; the reported value is the mean over repeats with the 2.5-97.5 percentile range across repeats.

Noise sweep: runs trained with several ``--reward-noise`` levels give the final clean test score against the noise
level per algorithm, with a bootstrap interval across seeds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from creditzoo.algorithms import get_algorithm
from creditzoo.analysis.compare import (
    IGNORED_KEYS,
    RunGroup,
    bootstrap_interval,
    check_distinct_seeds,
    final_score,
    group_runs,
)
from creditzoo.analysis.credit import Record
from creditzoo.analysis.runs import RunData
from creditzoo.analysis.turning_points import TP_VARIANTS
from creditzoo.rewards.noise import NoiseSpec, NoisyReward, parse_noise_spec
from creditzoo.shapes import get_shape

DEFAULT_NOISE = ("gaussian:0", "gaussian:0.01", "gaussian:0.02", "gaussian:0.05", "gaussian:0.1")
"""Gaussian reward noise at several standard deviations (rewards in [0, 1])."""

DEFAULT_ALGOS = ("flow_grpo", "incremental", "tp_grpo", "tp_grpo_strict")


@dataclass(frozen=True)
class Estimate:
    """A figure over repeats (or seeds): its mean and an interval.

    Attributes:
        mean: the mean.
        low: lower end of the interval.
        high: upper end of the interval.
    """

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class NoiseEffect:
    """What one noise model did to one algorithm's credit (see the module docstring).

    Attributes:
        algo: algorithm name.
        noise: canonical noise spec (``"none"`` for no noise).
        kind: the noise kind (``gaussian``, ...; ``none``).
        level: the noise's scale parameter (SD, HALFWIDTH, SCALE, STEP or P; 0 for none).
        repeats: noisy copies drawn.
        tp_precision: :class:`Estimate`, or None for algorithms without turning points.
        tp_recall: :class:`Estimate`, or None for algorithms without turning points.
        increment_sign_change: share of increments d_k whose sign differs from the clean one.
        advantage_spearman: rank correlation of the advantages with the clean ones (None when undefined).
        advantage_sign_agreement: share of (trajectory, step) whose advantage has the clean sign.
    """

    algo: str
    noise: str
    kind: str
    level: float
    repeats: int
    tp_precision: Estimate | None
    tp_recall: Estimate | None
    increment_sign_change: Estimate | None
    advantage_spearman: Estimate | None
    advantage_sign_agreement: Estimate


def parse_noise_list(specs: list[str] | tuple[str, ...]) -> list[NoiseSpec | None]:
    """Parse every spec; raises the parser's one-line ValueError on the first that does not parse."""
    return [parse_noise_spec(text) for text in specs]


def noise_level(spec: NoiseSpec | None) -> float:
    """The scale of a noise model: its last parameter (SCALE for student_t), 0 for no noise."""
    return 0.0 if spec is None else float(spec.params[-1])


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two flat arrays (average ranks for ties); None if either is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else None


def _estimate(values: list[float | None]) -> Estimate | None:
    kept = np.array([v for v in values if v is not None], dtype=float)
    if kept.size == 0:
        return None
    return Estimate(
        round(float(kept.mean()), 6),
        round(float(np.percentile(kept, 2.5)), 6),
        round(float(np.percentile(kept, 97.5)), 6),
    )


def _passthrough(scores: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """A "reward" whose scores are its input [B]: lets :class:`NoisyReward` perturb recorded scores."""
    return scores


def _noisy_copy(rewards: torch.Tensor, per_score: list[str], noise: NoisyReward) -> torch.Tensor:
    """Draw every score of ``rewards`` [B, ...] once through ``noise``; per_score: one prompt per score, row-major."""
    flat = rewards.reshape(-1)  # [B * ...]: the "images" the passthrough reward returns as its scores
    return noise.score(flat, per_score).noisy.view_as(rewards)


def _precision_recall(noisy: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    hits = int((noisy & clean).sum())
    marked, true = int(noisy.sum()), int(clean.sum())
    return (hits / marked if marked else 1.0), (hits / true if true else 1.0)


def counterfactual_study(
    records: list[Record],
    specs: list[NoiseSpec | None],
    *,
    algos: tuple[str, ...] | list[str] = DEFAULT_ALGOS,
    repeats: int = 8,
    seed: int = 0,
) -> list[NoiseEffect]:
    """Inject each noise model ``repeats`` times into the recorded clean completion rewards (module docstring).

    Args:
        records: records with their clean scores (:meth:`Record.scores`: completion rewards [B, K+1] of a
            chain, branch rewards [B, K, L] of anchor rollouts, leaf rewards [B] of a tree).
        specs: noise models (None: no noise).
        algos: algorithms to replay (registry names).
        repeats: noisy copies per noise model (>= 1).
        seed: seed of the draws; copy r of a spec draws from ``seed * 1_000_003 + 1000 * crc32(spec) + r``, so a
            spec's draws do not depend on which other specs are studied.

    Returns:
        One :class:`NoiseEffect` per (spec, algorithm), specs outermost.

    Raises:
        ValueError: no completion rewards recorded, repeats < 1, or an unknown algorithm.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not records or any(record.scores(clean=True) is None for record in records):
        raise ValueError(
            "this run recorded no completion rewards (flow_grpo trains on final rewards only): "
            "there is nothing to inject noise into"
        )
    algorithms = {name: get_algorithm(name) for name in algos}
    clean_credit = {name: [fn(record.rollout(clean=True)) for record in records] for name, fn in algorithms.items()}
    along_paths = all(get_shape(record.shape).scores_along_path for record in records)  # only then increments d_k
    clean_increments = torch.cat([record.scores(clean=True).diff(dim=1) for record in records]) if along_paths else None
    prompts = [_score_prompts(record) for record in records]
    effects = []
    for spec in specs:
        samples: dict[str, dict[str, list]] = {name: {} for name in algorithms}
        sign_changes = []
        for repeat in range(repeats):
            noise = NoisyReward(_passthrough, spec, seed=seed)
            noise.manual_seed(seed * 1_000_003 + 1000 * zlib.crc32(str(spec).encode()) + repeat)
            scores = [
                _noisy_copy(record.scores(clean=True), per_score, noise)  # the shape of the record's scores
                for record, per_score in zip(records, prompts, strict=True)
            ]
            rollouts = [record.rollout_with(noisy) for record, noisy in zip(records, scores, strict=True)]
            if clean_increments is not None:
                increments = torch.cat([noisy.diff(dim=1) for noisy in scores])
                sign_changes.append(float((torch.sign(increments) != torch.sign(clean_increments)).float().mean()))
            for name, fn in algorithms.items():
                _measure(samples[name], [fn(rollout) for rollout in rollouts], clean_credit[name])
        for name in algorithms:
            effects.append(_effect(name, spec, repeats, samples[name], sign_changes))
    return effects


def _score_prompts(record: Record) -> list[str]:
    """The prompt of every score of a record, row-major over its scores (for per-prompt bias noise)."""
    group_ids = record.tensors["group_ids"]
    prompts = record.prompts if len(record.prompts) == group_ids.shape[0] else [f"group {int(g)}" for g in group_ids]
    width = record.scores(clean=True)[0].numel()
    return [prompt for prompt in prompts for _ in range(width)]


def _measure(sample: dict[str, list], noisy: list, clean: list) -> None:
    tp_noisy = torch.cat([c.turning_points for c in noisy])  # [N, K]
    tp_clean = torch.cat([c.turning_points for c in clean])  # [N, K]
    adv_noisy = torch.cat([c.advantages for c in noisy])  # [N, K]
    adv_clean = torch.cat([c.advantages for c in clean])  # [N, K]
    precision, recall = _precision_recall(tp_noisy, tp_clean)
    sample.setdefault("any_tp", []).append(bool(tp_noisy.any() or tp_clean.any()))
    sample.setdefault("precision", []).append(precision)
    sample.setdefault("recall", []).append(recall)
    sample.setdefault("spearman", []).append(spearman(adv_noisy.flatten().numpy(), adv_clean.flatten().numpy()))
    agree = (torch.sign(adv_noisy) == torch.sign(adv_clean)).float().mean()
    sample.setdefault("sign_agreement", []).append(float(agree))


def _effect(name: str, spec: NoiseSpec | None, repeats: int, sample: dict[str, list], changes: list) -> NoiseEffect:
    has_tp = name in TP_VARIANTS or any(sample["any_tp"])
    return NoiseEffect(
        algo=name,
        noise="none" if spec is None else str(spec),
        kind="none" if spec is None else spec.kind,
        level=noise_level(spec),
        repeats=repeats,
        tp_precision=_estimate(sample["precision"]) if has_tp else None,
        tp_recall=_estimate(sample["recall"]) if has_tp else None,
        increment_sign_change=_estimate(changes),  # None for anchor and tree records: they have no increments
        advantage_spearman=_estimate(sample["spearman"]),
        advantage_sign_agreement=_estimate(sample["sign_agreement"]),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class NoiseScore:
    """Final clean test score of the runs of one algorithm trained at one reward-noise level.

    Attributes:
        algo: the algorithm, plus the options in which its group differs from the others (``key=value``).
        noise: the runs' ``reward_noise`` (``"none"`` without noise).
        kind: its kind (``gaussian``, ...; ``none``).
        level: its scale (see :func:`noise_level`).
        seeds: how many runs (seeds).
        score: mean final test score with a bootstrap 95% interval across seeds.
    """

    algo: str
    noise: str
    kind: str
    level: float
    seeds: int
    score: Estimate


def noise_sweep_scores(
    runs: list[RunData], *, metric: str = "test_partial_score", resamples: int = 2000, seed: int = 0
) -> list[NoiseScore]:
    """Final clean test score against the training reward-noise level, per group (sorted by group, level).

    Runs are grouped by configuration minus seed and minus ``reward_noise`` (so runs that differ in anything else,
    e.g. the completion mode, stay apart); each group's runs are then split by their noise.

    Raises:
        ValueError: a run without any ``metric`` in its metrics lines, or one seed twice at one noise level.
    """
    scores = []
    for group in group_runs(runs, ignore=(*IGNORED_KEYS, "reward_noise"), check_seeds=False):
        by_noise: dict[str, list[RunData]] = {}
        for run in group.runs:
            by_noise.setdefault(run.config.get("reward_noise") or "none", []).append(run)
        for text, members in by_noise.items():
            check_distinct_seeds(RunGroup(f"{group.label} reward_noise={text}", group.config, members))
            values = np.array([final_score(run, metric) for run in members])
            low, high = bootstrap_interval(values, resamples=resamples, seed=seed)
            estimate = Estimate(round(float(values.mean()), 6), round(low, 6), round(high, 6))
            spec = parse_noise_spec(text)
            kind = "none" if spec is None else spec.kind
            scores.append(NoiseScore(group.label, text, kind, noise_level(spec), len(members), estimate))
    return sorted(scores, key=lambda s: (s.algo, s.level))
