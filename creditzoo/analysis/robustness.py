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
A noise-aware scheme (one with a ``noise_sd`` option, docs/math.md section 10) is told the per-call SD of the
noise injected (:func:`creditzoo.rewards.noise.per_call_sd`), as ``--reward-noise-sd X`` would tell it in training;
its clean reference is its clean version (sigma = 0).
Turning points are those of TP-GRPO (Tong et al. 2026, arXiv 2602.06422). Each figure is the pool over all records
of one repeat; the reported value is the mean over repeats with the 2.5-97.5 percentile range across repeats.

Theory beside measurement (:func:`theory_comparison`): for Gaussian noise, the increments' sign flips and the
turning points' rate, precision and recall that :mod:`creditzoo.analysis.noise_theory` predicts from the clean
rewards, per window step, beside the same quantities measured on the same noisy copies (mean over repeats with a
Student-t interval), for the TP-GRPO variants and for ``tp_margin`` (its margin rule, told the noise's SD).

Noise sweep: runs trained with several ``--reward-noise`` levels give the final clean test score against the noise
level per algorithm: the mean over seeds with a Student-t interval (:func:`creditzoo.analysis.stats.t_interval`, as
``analyze compare`` reports a group's mean; a percentile bootstrap of 3 seeds returns their range), clipped to the
metric's range when the task declares one, and every seed's value.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from creditzoo.algorithms import Algorithm, get_algorithm, option_names
from creditzoo.analysis.compare import IGNORED_KEYS, RunGroup, check_distinct_seeds, final_score, group_runs
from creditzoo.analysis.credit import Record
from creditzoo.analysis.noise_theory import (
    FlipPrediction,
    TurningPointPrediction,
    TurningPointRule,
    predict_flips,
    predict_turning_points,
    sign_change_rule,
)
from creditzoo.analysis.runs import RunData, run_task
from creditzoo.analysis.stats import Estimate as SeedEstimate
from creditzoo.analysis.stats import t_interval
from creditzoo.analysis.turning_points import TP_VARIANTS
from creditzoo.rewards.noise import NoiseSpec, NoisyReward, parse_noise_spec, per_call_sd
from creditzoo.rollout import Rollout
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
        told = {name: _told(fn, spec) for name, fn in algorithms.items()}
        samples: dict[str, dict[str, list]] = {name: {} for name in algorithms}
        sign_changes = []
        for repeat in range(repeats):
            rollouts = _noisy_rollouts(records, prompts, spec, seed=seed, repeat=repeat)
            if clean_increments is not None:
                increments = torch.cat([rollout.completion_rewards.diff(dim=1) for rollout in rollouts])
                sign_changes.append(float((torch.sign(increments) != torch.sign(clean_increments)).float().mean()))
            for name, fn in told.items():
                _measure(samples[name], [fn(rollout) for rollout in rollouts], clean_credit[name])
        for name in algorithms:
            effects.append(_effect(name, spec, repeats, samples[name], sign_changes))
    return effects


def _told(algorithm: Algorithm, spec: NoiseSpec | None) -> Algorithm:
    """A noise-aware scheme told the noise's per-call SD, as --reward-noise-sd would tell it (docs/math.md 10.1).

    Any other algorithm is returned as it is.
    """
    if "noise_sd" not in option_names(algorithm.spec.fn):
        return algorithm
    return get_algorithm(algorithm.name, **{**algorithm.options, "noise_sd": per_call_sd(spec)})


def _noisy_rollouts(
    records: list[Record], prompts: list[list[str]], spec: NoiseSpec | None, *, seed: int, repeat: int
) -> list[Rollout]:
    """Copy ``repeat`` of ``spec``: every record's clean scores drawn once through the noise, in record order."""
    noise = NoisyReward(_passthrough, spec, seed=seed)
    noise.manual_seed(seed * 1_000_003 + 1000 * zlib.crc32(str(spec).encode()) + repeat)
    rollouts = []
    for record, per_score in zip(records, prompts, strict=True):
        noisy = _noisy_copy(record.scores(clean=True), per_score, noise)  # the shape of the record's scores
        rollouts.append(record.rollout_with(noisy))
    return rollouts


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
        score: mean final test score over seeds with its 95% Student-t interval (n - 1 degrees of freedom; the
            point itself for one seed), clipped to the metric's range when it has one, and the per-seed values.
    """

    algo: str
    noise: str
    kind: str
    level: float
    seeds: int
    score: SeedEstimate


def noise_sweep_scores(runs: list[RunData], *, metric: str | None = None) -> list[NoiseScore]:
    """Final clean test score against the training reward-noise level, per group (sorted by group, level).

    Runs are grouped by configuration minus seed and minus ``reward_noise`` (so runs that differ in anything else,
    e.g. the completion mode, stay apart); each group's runs are then split by their noise.

    Args:
        runs: the runs (one task).
        metric: the metrics-line key of the test score (default: the task's primary, ``test_partial_score``).

    Raises:
        ValueError: a run without any ``metric`` in its metrics lines, or one seed twice at one noise level.
    """
    task = run_task(runs)
    metric = metric or task.primary.test_key
    bounds = next((m.bounds for m in task.metrics if m.test_key == metric), None)
    scores = []
    for group in group_runs(runs, ignore=(*IGNORED_KEYS, "reward_noise"), check_seeds=False):
        by_noise: dict[str, list[RunData]] = {}
        for run in group.runs:
            by_noise.setdefault(run.config.get("reward_noise") or "none", []).append(run)
        for text, members in by_noise.items():
            check_distinct_seeds(RunGroup(f"{group.label} reward_noise={text}", group.config, members))
            interval = t_interval([final_score(run, metric) for run in members], bounds=bounds)
            estimate = SeedEstimate(
                round(interval.mean, 6), round(interval.low, 6), round(interval.high, 6), interval.values
            )
            spec = parse_noise_spec(text)
            kind = "none" if spec is None else spec.kind
            scores.append(NoiseScore(group.label, text, kind, noise_level(spec), len(members), estimate))
    return sorted(scores, key=lambda s: (s.algo, s.level))


# ----------------------------------------------------------------------------------------------- theory vs measurement

THEORY_QUANTITIES = ("tie_share", "flip_rate", "sign_change", "mark_rate", "precision", "recall")
"""What :func:`theory_comparison` reports: the share of clean increments that are exactly 0 (a fact of the clean
rewards, in ``predicted``; nothing measured), sign flips of the untied increments, sign changes of all increments
(ties included), and the turning points' rate, precision and recall."""


@dataclass(frozen=True)
class TheoryRow:
    """One predicted figure beside its measurement, at one Gaussian noise level and one window step.

    Attributes:
        noise: canonical noise spec (``"none"`` for no noise).
        sigma: its SD.
        subject: ``"increments"`` (flip_rate, sign_change); ``"rule:NAME"``, the sign-change rule of the TP-GRPO
            variant NAME, or of the noise-aware scheme NAME (``tp_margin``: with the margin it is told at this
            level), before balancing (what the theory describes); or an algorithm's name, its turning points as it
            credits them (after balancing), set beside its rule's prediction.
        quantity: one of :data:`THEORY_QUANTITIES`.
        step: the window step, or None for every step pooled.
        predicted: docs/math.md section 8.1 (None where undefined, e.g. precision where nothing is marked).
        measured: mean over the repeats that define it, with its 95% Student-t interval (the repeats' spread / sqrt n).
        pooled: for ratios, the totals over every repeat divided (a ratio of sums, like the prediction); else None.
        repeats: how many repeats define the measurement (a precision needs at least one mark).
    """

    noise: str
    sigma: float
    subject: str
    quantity: str
    step: int | None
    predicted: float | None
    measured: Estimate | None
    pooled: float | None
    repeats: int


def _mean_interval(values: list[float]) -> Estimate | None:
    from creditzoo.analysis.stats import t_interval

    if not values:
        return None
    estimate = t_interval(values)
    return Estimate(round(estimate.mean, 6), round(estimate.low, 6), round(estimate.high, 6))


@dataclass(frozen=True)
class _Level:
    """The noise level rows are measured at, and the number of trajectories N they pool."""

    noise: str
    sigma: float
    trajectories: int


def _row(
    level: _Level,
    subject: str,
    quantity: str,
    step: int | None,
    *,
    predicted: float | None,
    values: list[float],
    pooled: float | None = None,
) -> TheoryRow:
    return TheoryRow(
        level.noise, level.sigma, subject, quantity, step, predicted, _mean_interval(values), pooled, len(values)
    )


def _counts(noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per step: hits, marked and true turning points, int [3, K], from bool marks [N, K]."""
    return torch.stack([(noisy & clean).sum(0), noisy.sum(0), clean.sum(0)])


def _ratio(per: list[torch.Tensor], top: int, bottom: int) -> tuple[list[float], float | None]:
    """Per-repeat ratios count[top] / count[bottom] (repeats with a zero bottom left out) and the ratio of totals."""
    values = [float(c[top]) / float(c[bottom]) for c in per if c[bottom] > 0]
    total = sum(float(c[bottom]) for c in per)
    return values, (round(sum(float(c[top]) for c in per) / total, 6) if total else None)


def _ratio_rows(
    counts: list[torch.Tensor], prediction: TurningPointPrediction, level: _Level, subject: str
) -> list[TheoryRow]:
    """mark_rate, precision and recall per step and pooled, from per-repeat counts [3, K] and the prediction."""
    rows = []
    steps = counts[0].shape[1]
    for step in [*range(steps), None]:
        per = [c[:, step] if step is not None else c.sum(1) for c in counts]  # [3] per repeat
        trials = level.trajectories * (1 if step is not None else steps)
        rates = [float(c[1]) / trials for c in per]
        rows.append(
            _row(level, subject, "mark_rate", step, predicted=_predicted(prediction, "mark_rate", step), values=rates)
        )
        for quantity, top, bottom in (("precision", 0, 1), ("recall", 0, 2)):
            values, pooled = _ratio(per, top, bottom)
            predicted = _predicted(prediction, quantity, step)
            rows.append(_row(level, subject, quantity, step, predicted=predicted, values=values, pooled=pooled))
    return rows


def _predicted(prediction: TurningPointPrediction, quantity: str, step: int | None) -> float | None:
    return getattr(prediction, f"{quantity}_all") if step is None else getattr(prediction, quantity)[step]


def _flip_rows(
    flips: list[torch.Tensor], changes: list[torch.Tensor], prediction: FlipPrediction, level: _Level
) -> list[TheoryRow]:
    """flip_rate (untied increments) and sign_change (all) per step and pooled.

    Args:
        flips: per repeat, int [2, K]: untied increments whose sign flipped, untied increments.
        changes: per repeat, bool [N, K]: the noisy sign differs from the clean one (ties included).
        prediction: the theory's.
        level: the noise level.
    """
    rows = []
    for step in [*range(flips[0].shape[1]), None]:
        per = [f[:, step] if step is not None else f.sum(1) for f in flips]  # [2] per repeat
        values, pooled = _ratio(per, 0, 1)
        predicted = prediction.flip_rate_all if step is None else prediction.flip_rate[step]
        rows.append(_row(level, "increments", "flip_rate", step, predicted=predicted, values=values, pooled=pooled))
        shares = [float((c if step is None else c[:, step]).float().mean()) for c in changes]
        predicted = prediction.sign_change_all if step is None else prediction.sign_change_rate[step]
        rows.append(_row(level, "increments", "sign_change", step, predicted=predicted, values=shares))
        ties = prediction.tie_share_all if step is None else prediction.tie_share[step]
        rows.append(_row(level, "increments", "tie_share", step, predicted=ties, values=[]))
    return rows


def theory_applies(records: list[Record]) -> bool:
    """Whether :func:`theory_comparison` can read ``records``: rewards along each row's path, R_0 .. R_K (chains)."""
    return bool(records) and all(get_shape(r.shape).scores_along_path and r.has_completions for r in records)


def theory_comparison(
    records: list[Record],
    specs: list[NoiseSpec | None],
    *,
    algos: tuple[str, ...] | list[str] = DEFAULT_ALGOS,
    repeats: int = 8,
    seed: int = 0,
) -> list[TheoryRow]:
    """Predicted increment flips and turning-point precision/recall beside the measured ones, per step and noise level.

    Only Gaussian noise (and none) has a prediction (:mod:`creditzoo.analysis.noise_theory`); other specs are left
    out. The noisy copies are the very ones :func:`counterfactual_study` draws (same seeds). Every algorithm whose
    turning points follow a TP-GRPO sign-change rule (:func:`~creditzoo.analysis.noise_theory.sign_change_rule`) adds
    its rule, measured before balancing (``rule:NAME``, what the theory describes), and itself, measured as it credits
    (after balancing); other algorithms add nothing but the increments' rows, which every spec gets. A noise-aware
    scheme (``tp_margin``) is told each level's :func:`~creditzoo.rewards.noise.per_call_sd`, as in
    :func:`counterfactual_study`, so its rule's margin, c * sqrt(2) sigma, follows the level; its subject is
    ``rule:`` and its own name. Every mark is scored against the clean version's marks (the algorithm as registered,
    on the clean scores: margin 0 for ``tp_margin``), and so is every prediction.

    Args:
        records: chain records with clean completion rewards [B, K+1].
        specs: noise models (None: no noise).
        algos: algorithms (registry names) whose rules to compare.
        repeats: noisy copies per noise model (>= 1).
        seed: seed of the draws, as in :func:`counterfactual_study`.

    Returns:
        :class:`TheoryRow` s, noise levels outermost; empty when no spec is Gaussian (or none).

    Raises:
        ValueError: records that are not chains with completion rewards, repeats < 1, or an unknown algorithm.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not theory_applies(records):
        raise ValueError("the theory needs chain records with completion rewards R_0 .. R_K")
    algorithms = {name: get_algorithm(name) for name in algos}
    rules = {name: rule for name in algos if (rule := sign_change_rule(name)) is not None}  # clean: as registered
    labels = {name: _rule_subject(algorithms[name], rule) for name, rule in rules.items()}
    clean = torch.cat([record.completion_rewards(clean=True) for record in records]).double()  # [N, K+1]
    clean_rollouts = [record.rollout(clean=True) for record in records]
    references = {labels[name]: _rule_marker(rule)(clean_rollouts) for name, rule in rules.items()}  # [N, K] each
    references.update({name: _algorithm_marker(algorithms[name])(clean_rollouts) for name in rules})
    prompts = [_score_prompts(record) for record in records]
    rows = []
    for spec in (spec for spec in specs if spec is None or spec.kind == "gaussian"):
        sigma = noise_level(spec)
        level = _Level("none" if spec is None else str(spec), sigma, clean.shape[0])
        # a noise-aware scheme is told the noise, as in counterfactual_study: tp_margin's margin is c sqrt(2) sigma
        # (telling changes a rule's margin, never whether there is one: no None here)
        told = {name: sign_change_rule(name, noise_sd=per_call_sd(spec)) for name in rules}
        markers = {labels[name]: _rule_marker(rule) for name, rule in told.items()}
        markers.update({name: _algorithm_marker(_told(algorithms[name], spec)) for name in rules})
        flips, changes, counts = [], [], {subject: [] for subject in markers}
        for repeat in range(repeats):
            rollouts = _noisy_rollouts(records, prompts, spec, seed=seed, repeat=repeat)
            noisy = torch.cat([rollout.completion_rewards for rollout in rollouts]).double()  # [N, K+1]
            changed = torch.sign(noisy.diff(dim=1)) != torch.sign(clean.diff(dim=1))  # [N, K]
            untied = clean.diff(dim=1) != 0  # [N, K]
            flips.append(torch.stack([(changed & untied).sum(0), untied.sum(0)]))  # [2, K]
            changes.append(changed)
            for subject, mark in markers.items():
                counts[subject].append(_counts(mark(rollouts), references[subject]))
        rows += _flip_rows(flips, changes, predict_flips(clean.numpy(), sigma), level)
        predictions = {  # the truth is the clean version's marks, as the references above
            labels[name]: predict_turning_points(clean.numpy(), sigma, rule, reference=rules[name])
            for name, rule in told.items()
        }
        for subject in markers:
            label = subject if subject.startswith("rule:") else labels[subject]  # an algorithm: its rule's prediction
            rows += _ratio_rows(counts[subject], predictions[label], level, subject)
    return rows


def _rule_subject(algorithm: Algorithm, rule: TurningPointRule) -> str:
    """``rule:NAME``: a sign-change rule's name; a noise-aware scheme's own name (its margin follows the noise)."""
    aware = "noise_sd" in option_names(algorithm.spec.fn)
    return f"rule:{algorithm.name if aware else rule.name}"


Marker = Callable[[list[Rollout]], torch.Tensor]
"""Turning-point marks bool [N, K] of a list of chain rollouts, concatenated."""


def _rule_marker(rule: TurningPointRule) -> Marker:
    """A sign-change rule's marks before balancing, with its margin."""
    from creditzoo.algorithms.tp_grpo import turning_points

    def mark(rollouts: list[Rollout]) -> torch.Tensor:
        rewards = torch.cat([rollout.completion_rewards for rollout in rollouts])  # [N, K+1]
        return turning_points(rewards, strict=rule.strict, initial_step=rule.initial_step, margin=rule.margin)

    return mark


def _algorithm_marker(algorithm: Algorithm) -> Marker:
    """An algorithm's marks as it credits them (balanced per rollout, i.e. per training batch)."""

    def mark(rollouts: list[Rollout]) -> torch.Tensor:
        return torch.cat([algorithm(rollout).turning_points for rollout in rollouts])

    return mark
