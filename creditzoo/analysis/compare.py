"""Comparing groups of training runs: final scores with honest small-sample statistics, budgets, curves.

Runs are grouped by their configuration minus the seed (and minus ``run_dir``, ``device``, ``provenance`` and
``notes``, which do not change what is learned: the notes are caveats written from the other fields); the seeds of
a group are its samples. Everything is computed from what the runs recorded (``metrics.jsonl``, ``eval/``);
nothing is sampled. The statistics are in :mod:`.stats`, the report in :mod:`.report`.

* Scores: when every run holds a per-image final evaluation (``eval/final.json``) under one protocol, each run's
  scores come from it (same prompts and noise for every run: the comparison is paired); otherwise from the last
  in-run test score in ``metrics.jsonl``. The report says which, and why.
* Final score per group: mean over seeds with a Student-t interval, per-seed values, and the guards (the task's
  other metrics, e.g. GenEval's strict accuracy and extra-object rate) beside the score. The metrics are the
  runs' task's (:attr:`~creditzoo.tasks.Task.metrics`); the verdicts are about its primary one unless told.
  Intervals of a bounded metric's means (a rate, an accuracy, a partial score:
  :attr:`~creditzoo.tasks.Metric.bounds`) are clipped to its range.
* Contrasts: each group against the baseline scheme's group in the same stratum (a grid key that varies within
  both the baseline and another scheme, e.g. ``reward_noise``): Welch's t, Hedges' g, P(improvement), Holm over
  the report's family (``--primary A:B`` tests one contrast alone); paired designs add a hierarchical bootstrap
  interval (seeds, then prompts). Interactions: does a scheme's lead change between strata (difference in
  differences, Welch-Satterthwaite t).
* Budgets: each run's test curve interpolated at 25/50/100% of its stratum baseline's mean total cost on every
  cost axis the runs record; the area under the test curve (its mean level) and the mean of the last k evaluations.
* Curves: the mean test score (and clean train reward) over seeds at each iteration with a t band, against
  iterations, cumulative model evaluations and seconds.
* Cost to reach a threshold (default: the baseline's final mean on its test curve, so that the baseline reaches
  its own end whatever protocol the final scores use): the first crossing of the running maximum of the group's
  mean test curve, with a bootstrap interval over seeds; resamples that never cross are counted as
  "not reached" (censored at the group's budget), never dropped. Its ratio to its baseline's (in a grid, the
  baseline at the same grid value, as for the contrasts), resample against
  resample, keeps both censorings: a group that never reaches is above any finite ratio, a group that reaches what
  the baseline never does is below any (an open lower end, not a ratio of 0); neither reaching gives no ratio. Each
  case is counted (:class:`Crossing`).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from creditzoo.analysis.runs import RunData, run_task
from creditzoo.analysis.stats import Contrast, Estimate, Interaction, running_max

if TYPE_CHECKING:
    from creditzoo.tasks import Task

IGNORED_KEYS = ("seed", "run_dir", "device", "provenance", "notes")
"""Configuration keys that do not define a group (seeds are a group's samples)."""

COST_AXES = ("iterations", "model_evals", "seconds")
"""The x axes of the learning curves and of the cost to reach a threshold."""

BUDGET_AXES = {
    "model_evals": "model evaluations",
    "sampling_evals": "sampling model evaluations",
    "completion_evals": "completion model evaluations",
    "train_evals": "training model evaluations",
    "reward_calls": "reward calls (decodes)",
    "seconds": "wall-clock seconds",
    "iterations": "iterations",
}
"""Cost axes a budget can be matched on (metrics.jsonl keys, summed over iterations) and their names."""

CONFIDENCE = 0.95
BUDGET_FRACTIONS = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class CompareOptions:
    """What :func:`compare_runs` computes.

    Attributes:
        baseline: baseline group label or algorithm name.
        metric: the test metric the verdicts are about, a metrics-line key (``test_partial_score``); None: the
            task's primary metric. The task's other metrics are reported as guards.
        threshold: the test score to reach (default: the baseline's final mean).
        primary: ``"A:B"``, one contrast (group labels or algorithm names) tested alone, outside Holm's family.
        budget_axes: cost axes to match budgets on (default: every axis of :data:`BUDGET_AXES` the runs record).
        last_k: how many of the last test evaluations the late-training mean averages.
        alpha: the level at which a verdict calls a difference established.
        resamples: bootstrap resamples (threshold crossings, the paired bootstrap).
        seed: bootstrap seed.
    """

    baseline: str = "flow_grpo"
    metric: str | None = None
    threshold: float | None = None
    primary: str | None = None
    budget_axes: tuple[str, ...] | None = None
    last_k: int = 3
    alpha: float = 0.05
    resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"--resamples must be >= 1, got {self.resamples}")
        if self.last_k < 1:
            raise ValueError(f"--last-k must be >= 1, got {self.last_k}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"--alpha must be in (0, 1), got {self.alpha}")
        for axis in self.budget_axes or ():
            if axis not in BUDGET_AXES:
                raise ValueError(f"unknown budget axis {axis!r}; valid: {', '.join(BUDGET_AXES)}")


def final_score(run: RunData, metric: str) -> float:
    """The last recorded value of ``metric`` in a run's metrics.

    Raises:
        ValueError: the run never recorded ``metric``.
    """
    _, values = run.series(metric)
    if values.size == 0:
        raise ValueError(f"run {str(run.path)!r} recorded no {metric!r} in its metrics.jsonl")
    return float(values[-1])


# ----------------------------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class RunGroup:
    """Runs that share a configuration up to the seed.

    Attributes:
        label: a short name: the algorithm plus the options in which groups differ (``key=value``).
        config: the shared configuration (without the ignored keys).
        runs: the group's runs, one per seed.
    """

    label: str
    config: dict
    runs: list[RunData]

    @property
    def algo(self) -> str:
        """The group's algorithm."""
        return str(self.config.get("algo"))


def check_comparable(runs: list[RunData]) -> None:
    """Fail unless all runs share one environment and one reward.

    Raises:
        ValueError: naming the differing values and a run of each.
    """
    for key in ("env", "reward"):
        seen: dict[str, str] = {}
        for run in runs:
            seen.setdefault(str(run.config.get(key)), str(run.path))
        if len(seen) > 1:
            listing = "; ".join(f"{value} ({path})" for value, path in seen.items())
            raise ValueError(f"runs of different {key}s in one comparison: {listing}")


def check_test_sets(runs: list[RunData]) -> None:
    """Fail unless all runs were evaluated on one test set (``--prompts``), naming the sets.

    Raises:
        ValueError: naming each test set and a run evaluated on it.
    """
    from creditzoo.analysis.evaluation import evaluation_set_name

    seen: dict[str, str] = {}
    for run in runs:
        seen.setdefault(evaluation_set_name(run.config), str(run.path))
    if len(seen) > 1:
        listing = "; ".join(f"{name} ({path})" for name, path in seen.items())
        raise ValueError(f"runs evaluated on different test sets cannot be compared: {listing}")


def provenance_warnings(runs: list[RunData]) -> list[str]:
    """One line when the runs differ in recorded commit, dirty tree or versions; one when some record none."""
    lines = []
    unknown = [run for run in runs if not isinstance(run.provenance, dict)]
    if unknown:
        lines.append(
            f"provenance unknown for {len(unknown)} of {len(runs)} runs (config.json records no commit or versions)"
        )
    fields: dict[str, dict[str, int]] = {}
    for run in runs:
        record = run.provenance
        if not isinstance(record, dict):
            continue
        versions = record.get("versions")  # creditzoo.provenance records them flat; a nested dict is read too
        if not isinstance(versions, dict):
            versions = {key: record[key] for key in ("creditzoo", "torch", "diffusers", "python") if key in record}
        items = {"git_commit": record.get("git_commit"), "git_dirty": record.get("git_dirty")}
        items.update({f"versions.{k}": v for k, v in versions.items()})
        for key, value in items.items():
            fields.setdefault(key, {}).setdefault(str(value), 0)
            fields[key][str(value)] += 1
    differing = [
        f"{key} ({', '.join(f'{v} in {n}' for v, n in counts.items())})"
        for key, counts in fields.items()
        if len(counts) > 1
    ]
    if differing:
        lines.append("runs differ in provenance: " + "; ".join(differing))
    return lines


def group_runs(
    runs: list[RunData], *, ignore: tuple[str, ...] = IGNORED_KEYS, check_seeds: bool = True
) -> list[RunGroup]:
    """Group runs by their configuration minus ``ignore`` (default :data:`IGNORED_KEYS`), in order of appearance.

    Args:
        runs: the runs.
        ignore: configuration keys that do not define a group.
        check_seeds: fail when a group holds one seed twice (off when ``ignore`` names more than the seed's kin).

    Raises:
        ValueError: ``check_seeds`` and a group holds the same seed twice (a run named twice, or a copy of it).
    """
    keyed: dict[str, list[RunData]] = {}
    configs: dict[str, dict] = {}
    for run in runs:
        config = {k: v for k, v in run.config.items() if k not in ignore}
        key = json.dumps(config, sort_keys=True, default=str)
        keyed.setdefault(key, []).append(run)
        configs[key] = config
    varying = sorted(
        k for k in {k for c in configs.values() for k in c} if len({json.dumps(c.get(k)) for c in configs.values()}) > 1
    )
    groups = []
    for key, members in keyed.items():
        config = configs[key]
        extras = [f"{k}={_short(config.get(k))}" for k in varying if k != "algo"]
        label = " ".join([str(config.get("algo")), *extras])
        groups.append(RunGroup(label=label, config=config, runs=members))
    if check_seeds:
        for group in groups:
            check_distinct_seeds(group)
    labels = [g.label for g in groups]
    if len(set(labels)) != len(labels):  # cannot happen with distinct configs, but never merge two groups silently
        groups = [RunGroup(f"{g.label} #{i}", g.config, g.runs) for i, g in enumerate(groups)]
    return groups


def check_distinct_seeds(group: RunGroup) -> None:
    """Fail if a group holds one seed twice: bootstrap intervals over seeds would count one run twice."""
    seen: dict[object, Path] = {}
    for run in group.runs:
        seed = run.config.get("seed")
        if seed in seen:
            raise ValueError(
                f"group {group.label!r} holds seed {seed} twice ({seen[seed]} and {run.path}): "
                "name each run once, with distinct seeds"
            )
        seen[seed] = run.path


def _short(value: object) -> str:
    return "none" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)


# ----------------------------------------------------------------------------------------------- curves


@dataclass(frozen=True)
class Curve:
    """A group's mean curve over seeds, with a Student-t band, at the iterations every seed recorded.

    Attributes:
        iterations: [J] iteration numbers.
        model_evals: [J] seeds' mean cumulative model evaluations at those iterations.
        seconds: [J] seeds' mean cumulative wall-clock seconds.
        mean: [J] mean value over seeds.
        low: [J] lower end of the band (95% t interval of the mean at each iteration).
        high: [J] upper end of the band.
        per_seed: [n][J] each seed's values.
    """

    iterations: list[int]
    model_evals: list[float]
    seconds: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    per_seed: list[list[float]] = field(default_factory=list)


def _aligned(
    group: RunGroup, metric: str, axes: tuple[str, ...] = ("model_evals", "seconds")
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Iterations [J] that every seed recorded ``metric`` at, values [n, J], and cumulative costs [n, J] per axis."""
    per_run = [run.series(metric) for run in group.runs]
    common = sorted(set.intersection(*(set(its.tolist()) for its, _ in per_run)))
    if not common:
        raise ValueError(f"the runs of group {group.label!r} share no iteration with {metric!r} recorded")
    values = np.array([[dict(zip(its.tolist(), vals, strict=True))[i] for i in common] for its, vals in per_run])
    costs = {}
    for axis in axes:
        rows = []
        for run in group.runs:
            lookup = dict(zip(run.iterations().tolist(), run.cumulative(axis), strict=True))
            rows.append([lookup[i] for i in common])
        costs[axis] = np.array(rows, dtype=float)
    return np.array(common), values, costs


def group_curve(group: RunGroup, metric: str, *, bounds: tuple[float, float] | None = None) -> Curve:
    """The group's mean ``metric`` curve over seeds with a 95% Student-t band at each iteration.

    ``bounds``: the metric's range (:attr:`creditzoo.tasks.Metric.bounds`); the band is clipped to it.
    """
    from scipy.stats import t

    iterations, values, costs = _aligned(group, metric)
    mean = values.mean(0)  # [J]
    if values.shape[0] > 1:
        half = t.ppf(0.5 + CONFIDENCE / 2, values.shape[0] - 1) * values.std(0, ddof=1) / np.sqrt(values.shape[0])
    else:
        half = np.zeros_like(mean)
    low, high = mean - half, mean + half  # [J] each
    if bounds is not None:
        low, high = np.maximum(low, bounds[0]), np.minimum(high, bounds[1])
    return Curve(
        iterations=[int(i) for i in iterations],
        model_evals=[round(float(x), 3) for x in costs["model_evals"].mean(0)],
        seconds=[round(float(x), 4) for x in costs["seconds"].mean(0)],
        mean=[round(float(x), 6) for x in mean],
        low=[round(float(x), 6) for x in low],
        high=[round(float(x), 6) for x in high],
        per_seed=[[round(float(x), 6) for x in row] for row in values],
    )


# ----------------------------------------------------------------------------------------------- threshold


def first_crossing(iterations: np.ndarray, curve: np.ndarray, costs: dict[str, np.ndarray], threshold: float):
    """Where ``curve`` [J] first reaches ``threshold``, per cost axis, linearly interpolated; None if never.

    Args:
        iterations: [J] iteration numbers.
        curve: [J] values.
        costs: axis -> [J] cumulative cost at those iterations.
        threshold: the level to reach.

    Returns:
        ``{"iterations": x, "model_evals": x, "seconds": x}`` or None.
    """
    reached = np.nonzero(curve >= threshold)[0]
    if reached.size == 0:
        return None
    j = int(reached[0])
    axes = {"iterations": iterations.astype(float), **costs}
    if j == 0:
        return {axis: float(values[0]) for axis, values in axes.items()}
    t = (threshold - curve[j - 1]) / (curve[j] - curve[j - 1])
    return {axis: float(values[j - 1] + t * (values[j] - values[j - 1])) for axis, values in axes.items()}


@dataclass(frozen=True)
class Crossing:
    """Cost for a group to reach the threshold on one axis, and its ratio to the baseline.

    The group's resample r is paired with the baseline's resample r (groups are resampled independently). A resample
    in which only the baseline reaches the threshold has a ratio above any finite one (censored high); one in which
    only the group reaches has a ratio below any finite one (censored low: the group reached what the baseline did
    not); one in which neither reaches, or the baseline reaches at no cost, has no ratio. All four are counted.

    Attributes:
        value: the crossing of the running maximum of the group's mean curve (None if it never reaches it).
        low: lower end of the bootstrap interval of the crossing (None: the lower tail never reaches).
        high: upper end (None: the upper tail never reaches; the interval is open).
        ratio: value / the baseline's value (None when it is not a finite number: see ``ratio_censored``).
        ratio_low: lower end of the bootstrap interval of the ratio, over the resamples that have one (None: the end
            falls among the censored-low resamples, or no resample has a ratio).
        ratio_high: upper end (None: it falls among the censored-high resamples, or no resample has a ratio).
        reached_share: share of bootstrap resamples whose curve reaches the threshold.
        not_reached: how many resamples never reach it (counted as not reached, censored at the budget).
        ratio_censored: why ``ratio`` is None: ``"low"`` (only the group's mean curve reaches), ``"high"`` (only the
            baseline's), ``"neither"``, ``"baseline_at_start"`` (the baseline's crossing costs 0); None: a finite ratio.
        resamples: bootstrap resamples R.
        group_never: resamples in which the group never reaches and the baseline does (ratio censored high).
        baseline_never: resamples in which the baseline never reaches and the group does (ratio censored low).
        both_never: resamples in which neither reaches (no ratio).
        baseline_at_start: resamples in which both reach and the baseline at cost 0 (no ratio).
    """

    value: float | None
    low: float | None
    high: float | None
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    reached_share: float
    not_reached: int = 0
    ratio_censored: str | None = None
    resamples: int = 0
    group_never: int = 0
    baseline_never: int = 0
    both_never: int = 0
    baseline_at_start: int = 0


@dataclass(frozen=True)
class CostRatios:
    """Ratios of a group's cost to reach a threshold to the baseline's, one per resample, with censoring kept.

    Attributes:
        ratios: [R] group cost / baseline cost; ``-inf`` where only the group reaches (below any finite ratio),
            ``+inf`` where only the baseline reaches (above any), NaN where there is no ratio (neither reaches, or
            the baseline reaches at cost 0).
        group_never: entries in which only the baseline reaches.
        baseline_never: entries in which only the group reaches.
        both_never: entries in which neither reaches.
        baseline_at_start: entries in which both reach and the baseline's cost is 0.
    """

    ratios: np.ndarray
    group_never: int
    baseline_never: int
    both_never: int
    baseline_at_start: int


def cost_ratios(costs: np.ndarray, base_costs: np.ndarray) -> CostRatios:
    """Pairwise ``costs`` [R] / ``base_costs`` [R], where ``inf`` marks "never reaches", censoring kept and counted.

    A group that never reaches costs more than any baseline that does (``+inf``); a group that reaches what the
    baseline never does costs less than any finite multiple of it (``-inf``, so that it sorts below every finite
    ratio, a ratio of 0 included: 0 is the group reaching at its start). See :class:`CostRatios`.
    """
    costs, base_costs = np.asarray(costs, dtype=float), np.asarray(base_costs, dtype=float)
    group, base = np.isfinite(costs), np.isfinite(base_costs)  # [R] each: reaches
    at_start = group & base & (base_costs == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(group & base & ~at_start, costs / base_costs, np.nan)  # [R]
    ratios = np.where(group & ~base, -np.inf, np.where(~group & base, np.inf, ratios))
    return CostRatios(
        ratios=ratios,
        group_never=int((~group & base).sum()),
        baseline_never=int((group & ~base).sum()),
        both_never=int((~group & ~base).sum()),
        baseline_at_start=int(at_start.sum()),
    )


def _bootstrap_crossings(group: RunGroup, metric: str, threshold: float, resamples: int, seed: int):
    """Crossing of the running-max mean curve, and of ``resamples`` resampled ones ([R] per axis, inf = never)."""
    iterations, values, costs = _aligned(group, metric)
    mean_costs = {a: c.mean(0) for a, c in costs.items()}
    point = first_crossing(iterations, running_max(values.mean(0)), mean_costs, threshold)
    rng = np.random.default_rng([seed, zlib.crc32(group.label.encode())])  # groups resampled independently
    index = rng.integers(0, values.shape[0], size=(resamples, values.shape[0]))  # [R, n]
    curves = running_max(values[index].mean(1))  # [R, J]
    axes = {
        "iterations": np.broadcast_to(iterations.astype(float), curves.shape),
        **{axis: cost[index].mean(1) for axis, cost in costs.items()},  # [R, J]
    }
    samples = {axis: np.where(np.isnan(x), np.inf, x) for axis, x in first_crossings(curves, axes, threshold).items()}
    return point, samples


def first_crossings(curves: np.ndarray, axes: dict[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """:func:`first_crossing` for many curves at once: curves [R, J], axes name -> [R, J]; NaN where never."""
    reached = curves >= threshold  # [R, J]
    ever = reached.any(1)  # [R]
    j = reached.argmax(1)  # [R] first index at or above the threshold
    before = np.maximum(j - 1, 0)
    rows = np.arange(curves.shape[0])
    low, high = curves[rows, before], curves[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(j > 0, (threshold - low) / (high - low), 0.0)  # [R]
    result = {}
    for axis, values in axes.items():
        start, end = values[rows, before], values[rows, j]
        result[axis] = np.where(ever, start + t * (end - start), np.nan)
    return result


def censored_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Percentile interval of ``samples`` [R] where ``+inf`` and ``-inf`` mark censored values: an end on one is None.

    The ends are order statistics (no interpolation), so a tail of censored resamples (a crossing never reached, a
    ratio censored high or low) shows as an open end instead of being dropped.
    """
    tail = (1 - confidence) / 2
    low = float(np.quantile(samples, tail, method="lower"))
    high = float(np.quantile(samples, 1 - tail, method="higher"))
    return (round(low, 4) if np.isfinite(low) else None), (round(high, 4) if np.isfinite(high) else None)


RATIO_CENSORED = {(True, False): "low", (False, True): "high", (False, False): "neither"}
"""Why a point ratio is not finite, by (the group's mean curve reaches, the baseline's does)."""


def _crossings(point, samples, base_point, base_samples) -> dict[str, Crossing]:
    """Each axis's :class:`Crossing`: the group's point and resamples [R] (inf = never) against the baseline's."""
    result = {}
    for axis in COST_AXES:
        value = None if point is None else point[axis]
        base = None if base_point is None else base_point[axis]
        pointwise = cost_ratios(
            np.array([np.inf if value is None else value]), np.array([np.inf if base is None else base])
        )
        ratio = float(pointwise.ratios[0])
        censored = None
        if not np.isfinite(ratio):
            censored = RATIO_CENSORED.get((value is not None, base is not None), "baseline_at_start")
        paired = cost_ratios(samples[axis], base_samples[axis])
        ratios = paired.ratios[~np.isnan(paired.ratios)]  # [R'] the resamples with a ratio, censored ones kept
        low, high = censored_interval(samples[axis])
        ratio_low, ratio_high = censored_interval(ratios) if ratios.size else (None, None)
        never = int(np.isinf(samples[axis]).sum())
        result[axis] = Crossing(
            value=None if value is None else round(value, 4),
            low=low,
            high=high,
            ratio=None if censored else round(ratio, 4),
            ratio_low=ratio_low,
            ratio_high=ratio_high,
            reached_share=round(1 - never / samples[axis].size, 4),
            not_reached=never,
            ratio_censored=censored,
            resamples=int(samples[axis].size),
            group_never=paired.group_never,
            baseline_never=paired.baseline_never,
            both_never=paired.both_never,
            baseline_at_start=paired.baseline_at_start,
        )
    return result


# ----------------------------------------------------------------------------------------------- strata and labels

KEY_NAMES = {
    "reward_noise": "noise",
    "learning_rate": "lr",
    "window_size": "window",
    "window_start": "window start",
    "group_size": "G",
    "num_steps": "K",
    "std_mode": "std",
    "algo_options": "options",
}
"""Short names of configuration keys in automatic group labels."""


def _varying(groups: list[RunGroup]) -> list[str]:
    """Configuration keys (other than the algorithm) whose value differs between groups."""
    configs = [g.config for g in groups]
    keys = {k for c in configs for k in c} - {"algo"}
    return sorted(k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1)


def find_strata(groups: list[RunGroup], base: RunGroup) -> list[str]:
    """Grid keys: varying keys that take several values within the baseline's algorithm and within another's."""
    strata = []
    for key in _varying(groups):
        values: dict[str, set[str]] = {}
        for g in groups:
            values.setdefault(g.algo, set()).add(json.dumps(g.config.get(key), sort_keys=True, default=str))
        others = [len(v) > 1 for algo, v in values.items() if algo != base.algo]
        if len(values.get(base.algo, ())) > 1 and any(others):
            strata.append(key)
    return strata


def _parts(config: dict, keys: list[str]) -> list[str]:
    return [f"{k}={_short(config.get(k))}" for k in keys]


def short_label(label: str) -> str:
    """A group label with long key names shortened (``reward_noise=gaussian:0.02`` -> ``noise=gaussian:0.02``)."""
    words = []
    for word in label.split(" "):
        key, sep, value = word.partition("=")
        words.append(f"{KEY_NAMES.get(key, key)}={value}" if sep else word)
    return " ".join(words)


def _resolve(name: str, groups: list[RunGroup], stratum_of: dict[str, str], reference: str) -> RunGroup | None:
    """The group labelled ``name``, else the group of algorithm ``name`` in the reference stratum, else the first."""
    for group in groups:
        if group.label == name:
            return group
    matches = [g for g in groups if g.algo == name]
    preferred = [g for g in matches if stratum_of[g.label] == reference]
    return (preferred or matches or [None])[0]


def parse_primary(spec: str, groups: list[RunGroup], stratum_of: dict[str, str], reference: str):
    """``A:B`` -> (group A, group B); labels may hold colons, so every split that names two groups is tried.

    Raises:
        ValueError: no split names two distinct groups (listing the groups).
    """
    for i, char in enumerate(spec):
        if char != ":":
            continue
        first = _resolve(spec[:i], groups, stratum_of, reference)
        second = _resolve(spec[i + 1 :], groups, stratum_of, reference)
        if first is not None and second is not None and first is not second:
            return first, second
    listing = ", ".join(g.label for g in groups)
    raise ValueError(f"--primary {spec!r} does not name two groups as A:B; groups: {listing}")


def parse_labels(items: list[str], groups: list[RunGroup]) -> dict[str, str]:
    """``--label NAME=TEXT`` items -> {group label or algorithm: TEXT}.

    NAME may hold ``=`` (every grid group's label does: ``flow_grpo reward_noise=none``), so an item is split at the
    ``=`` that ends its longest prefix naming a group: a group's label, its automatic display name
    (:func:`short_label`, ``flow_grpo noise=none``) or its algorithm; TEXT is the rest and may hold ``=`` too.

    Args:
        items: the ``--label`` values.
        groups: the comparison's groups.

    Raises:
        ValueError: an item without ``=`` or with an empty side, or a NAME (the item up to its last ``=``) that names
            no group, listing the groups.
    """
    names = {g.algo: g.algo for g in groups}
    names.update({short_label(g.label): g.label for g in groups})
    names.update({g.label: g.label for g in groups})  # a label wins over another group's display name
    result = {}
    for item in items:
        cuts = [i for i, char in enumerate(item) if char == "="]
        cut = next((i for i in reversed(cuts) if item[:i] in names), None)
        if cut is None and cuts and item[: cuts[-1]] and item[cuts[-1] + 1 :]:
            listing = ", ".join(g.label for g in groups)
            raise ValueError(f"--label {item[: cuts[-1]][:80]!r} names no group; groups: {listing}")
        if cut is None or not item[cut + 1 :]:
            raise ValueError(f"--label {item[:80]!r} is not NAME=TEXT (NAME: a group's label, display name or algo)")
        result[names[item[:cut]]] = item[cut + 1 :]
    return result


# ----------------------------------------------------------------------------------------------- per-run values


def _final_value(run: RunData, metric: str) -> float | None:
    _, values = run.series(metric)
    return float(values[-1]) if values.size else None


def _fallback_scores(group: RunGroup, metric: str, metrics: list[str]) -> dict[str, list[float] | None]:
    """Each run's last in-run test value per metric (the chosen metric must exist; a guard may be missing)."""
    scores: dict[str, list[float] | None] = {metric: [final_score(run, metric) for run in group.runs]}
    for guard in metrics:
        if guard != metric:
            values = [_final_value(run, guard) for run in group.runs]
            scores[guard] = None if None in values else values
    return scores


def _paired_scores(group: RunGroup, paired, metrics: list[str]) -> dict[str, list[float] | None]:
    """Each run's category-balanced final-evaluation score per metric."""
    scores: dict[str, list[float] | None] = {}
    for metric in metrics:
        key = metric.removeprefix("test_")
        images = [paired.runs[str(run.path)] for run in group.runs]
        scores[metric] = [s.summary(key) for s in images] if all(key in s.scores for s in images) else None
    return scores


def recorded_axes(runs: list[RunData]) -> list[str]:
    """The budget axes every run recorded on every training iteration."""

    def has(run: RunData, axis: str) -> bool:
        lines = [line for line in run.metrics if line["iteration"] >= 1]
        if axis == "iterations":
            return True
        if axis == "seconds":
            return bool(lines) and all(isinstance(line.get("seconds"), dict) for line in lines)
        return bool(lines) and all(isinstance(line.get(axis), int | float) for line in lines)

    return [axis for axis in BUDGET_AXES if all(has(run, axis) for run in runs)]


def _choose_axes(runs: list[RunData], requested: tuple[str, ...] | None) -> list[str]:
    recorded = recorded_axes(runs)
    if requested is None:
        return [axis for axis in ("model_evals", "reward_calls", "seconds") if axis in recorded]
    for axis in requested:
        if axis not in recorded:
            raise ValueError(f"budget axis {axis!r} is not recorded by every run; recorded: {', '.join(recorded)}")
    return list(dict.fromkeys(requested))


def _cost_curve(run: RunData, metric: str, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative cost [M] on ``axis`` at each evaluation of ``metric``, and the values [M]."""
    its, values = run.series(metric)
    if axis == "iterations":
        return its.astype(float), values
    lookup = dict(zip(run.iterations().tolist(), run.cumulative(axis), strict=True))
    return np.array([lookup[i] for i in its.tolist()], dtype=float), values


def _total_cost(run: RunData, axis: str) -> float:
    return float(run.metrics[-1]["iteration"]) if axis == "iterations" else float(run.cumulative(axis)[-1])


# ----------------------------------------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class GroupSummary:
    """One group's results in a comparison.

    Attributes:
        label: the group's label (algorithm plus the options in which groups differ).
        name: its display name (automatic short label, or ``--label``).
        algo: its algorithm.
        scheme: its label without the stratum keys.
        stratum: its stratum (``key=value`` of the grid keys; empty without a grid).
        baseline: the label of the group it is compared with (itself for a baseline).
        runs: the run directories (one per seed).
        final: the chosen metric's final value per seed, mean and t interval.
        guards: metric -> the same for the other test metrics (None when a run did not record it).
        contrast: the final score against ``baseline`` (None for a baseline).
        budget: axis -> ``"25%"``/``"50%"``/``"100%"`` -> score at that share of the baseline's budget.
        budget_contrasts: axis -> share -> the difference to the baseline at the same budget (unadjusted).
        baseline_budget: axis -> the baseline's mean total cost the shares are of.
        area: the area under the test curve over iterations, divided by their span (the curve's mean level).
        last_k: the mean of each run's last k test evaluations.
        cost_per_iteration: axis -> mean cost of one training iteration.
        to_threshold: axis -> :class:`Crossing`.
        categories: category -> mean final score of the runs.
        train_curve: the clean train reward, :class:`Curve`.
        test_curve: the test score, :class:`Curve`.
        config: the group's configuration.
    """

    label: str
    name: str
    algo: str
    scheme: str
    stratum: str
    baseline: str
    runs: list[str]
    final: Estimate
    guards: dict[str, Estimate | None]
    contrast: Contrast | None
    budget: dict[str, dict[str, Estimate]]
    budget_contrasts: dict[str, dict[str, Contrast]]
    baseline_budget: dict[str, float]
    area: Estimate
    last_k: Estimate
    cost_per_iteration: dict[str, float]
    to_threshold: dict[str, Crossing]
    categories: dict[str, float]
    train_curve: Curve | None
    test_curve: Curve
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """A comparison of run groups against baseline groups.

    Attributes:
        metric: the test metric the verdicts are about.
        metrics: every test metric of the runs' task, in its order: metrics-line key -> its label in reports.
        baseline: the baseline group's label (in the reference stratum).
        scores_source: which scores the final values come from, and why.
        paired: whether they come from per-image final evaluations under one protocol.
        protocol: that protocol (None when not paired).
        strata: grid keys within which groups are compared with the baseline.
        reference: the baseline's stratum (interactions are measured from it).
        base_score: metric -> the base model's score under the final scores' protocol (None when unknown).
        curve_base_score: metric -> the base model's score on the in-run test curves (their iteration 0), the
            level the curves, budgets and thresholds are read against; the same as ``base_score`` when not paired.
        threshold: the score the threshold costs are measured to.
        threshold_source: how the threshold was chosen.
        groups: per group, :class:`GroupSummary` (the baseline first).
        interactions: differences in differences between strata.
        primary: the contrast tested alone, when one was declared.
        family: how many tests share Holm's adjustment.
        alpha: the level of the verdicts.
        last_k: the k of the late-training mean.
        budget_axes: the axes budgets were matched on.
        warnings: one line each (provenance, fallbacks).
        bounds: metric -> [low, high], the range of a bounded metric (:attr:`creditzoo.tasks.Metric.bounds`), to
            which every interval of its means (final, guards, budgets, area, last k, the test curve's band) is
            clipped; None: unbounded, nothing clipped. Differences are not clipped.
    """

    metric: str
    metrics: dict[str, str]
    baseline: str
    scores_source: str
    paired: bool
    protocol: dict | None
    strata: list[str]
    reference: str
    base_score: dict[str, float | None]
    curve_base_score: dict[str, float | None]
    threshold: float
    threshold_source: str
    groups: list[GroupSummary]
    interactions: list[Interaction]
    primary: Contrast | None
    family: int
    alpha: float
    last_k: int
    budget_axes: list[str]
    warnings: list[str] = field(default_factory=list)
    bounds: dict[str, list[float] | None] = field(default_factory=dict)


def pick_baseline(groups: list[RunGroup], baseline: str) -> RunGroup:
    """The group whose label is ``baseline``, else the first whose algorithm is ``baseline``.

    Raises:
        ValueError: no such group (listing the groups).
    """
    for group in groups:
        if group.label == baseline:
            return group
    for group in groups:
        if group.algo == baseline:
            return group
    raise ValueError(f"no baseline group {baseline!r} among the runs; groups: {', '.join(g.label for g in groups)}")


def _base_scores(runs: list[RunData], paired, metrics: list[str]) -> dict[str, float | None]:
    """The base model's score per metric: eval/base.json when paired, else the runs' mean iteration-0 test score."""
    if paired is None:
        return _curve_base_scores(runs, metrics)
    result: dict[str, float | None] = {}
    for metric in metrics:
        key = metric.removeprefix("test_")
        result[metric] = paired.base.summary(key) if paired.base and key in paired.base.scores else None
    return result


def _curve_base_scores(runs: list[RunData], metrics: list[str]) -> dict[str, float | None]:
    """The base model's score per metric on the in-run test curves: the runs' mean iteration-0 value.

    None for a metric unless every run recorded it at iteration 0.
    """
    result: dict[str, float | None] = {}
    for metric in metrics:
        first = [run.series(metric) for run in runs]
        values = [float(v[0]) for its, v in first if its.size and its[0] == 0]
        result[metric] = float(np.mean(values)) if len(values) == len(runs) else None
    return result


def compare_runs(
    runs: list[RunData], options: CompareOptions | None = None, *, labels: dict[str, str] | None = None
) -> Comparison:
    """Group the runs and compute final-score contrasts, budgets, interactions, curves and threshold costs.

    Args:
        runs: the runs (see :func:`creditzoo.analysis.runs.load_run`).
        options: what to compute (:class:`CompareOptions`; defaults when None).
        labels: display names, group label or algorithm -> text (``--label NAME=TEXT`` items go through
            :func:`parse_labels`).

    Raises:
        ValueError: runs of different environments, rewards or test sets, an unregistered environment, a metric
            that is not a higher-is-better metric of their task, no baseline, a run without the metric, an
            unrecorded budget axis, a bad ``--primary`` or ``--label``, or a threshold no group reaches.
    """
    from creditzoo.analysis.evaluation import paired_evaluation

    options = options or CompareOptions()
    if not runs:
        raise ValueError("no runs to compare")
    check_comparable(runs)
    check_test_sets(runs)
    task = run_task(runs)
    metrics = [metric.test_key for metric in task.metrics]
    bounds = {metric.test_key: metric.bounds for metric in task.metrics}
    options = replace(options, metric=_chosen_metric(options.metric, task))
    groups = group_runs(runs)
    base = pick_baseline(groups, options.baseline)
    groups = [base, *[g for g in groups if g is not base]]
    axes = _choose_axes(runs, options.budget_axes)
    layout = _layout(groups, base)
    names = _display_names(groups, labels or {})
    paired, source = paired_evaluation([run.path for run in runs], task.metrics)
    scores = {
        g.label: _paired_scores(g, paired, metrics) if paired else _fallback_scores(g, options.metric, metrics)
        for g in groups
    }
    by_label = {g.label: g for g in groups}
    summaries = [
        _summarise(g, by_label[layout.baseline_of[g.label]], scores, options, axes, layout, names[g.label], bounds)
        for g in groups
    ]
    primary = None
    if options.primary is not None:
        first, second = parse_primary(options.primary, groups, layout.stratum_of, layout.stratum_of[base.label])
        primary = _contrast(first, second, scores, options.metric, primary=True)
    if paired is not None:
        summaries, primary = _add_paired_bootstrap(summaries, primary, groups, paired, options)
    interactions = _interactions(groups, layout, scores, options.metric)
    summaries, interactions, primary, family = _adjust(summaries, interactions, primary)
    threshold, threshold_source, summaries = _threshold(groups, summaries, options, layout.baseline_of)
    warnings = provenance_warnings(runs) + _missing_baseline_warnings(groups, layout, base)
    if paired is None:
        warnings.append(f"scores: {source}")
    return Comparison(
        metric=options.metric,
        metrics={metric.test_key: metric.label for metric in task.metrics},
        baseline=base.label,
        scores_source=source,
        paired=paired is not None,
        protocol=None if paired is None else paired.protocol,
        strata=layout.strata,
        reference=layout.stratum_of[base.label],
        base_score=_base_scores(runs, paired, metrics),
        curve_base_score=_curve_base_scores(runs, metrics),
        threshold=round(threshold, 6),
        threshold_source=threshold_source,
        groups=summaries,
        interactions=interactions,
        primary=primary,
        family=family,
        alpha=options.alpha,
        last_k=options.last_k,
        budget_axes=axes,
        warnings=warnings,
        bounds={metric: None if pair is None else list(pair) for metric, pair in bounds.items()},
    )


def _chosen_metric(metric: str | None, task: Task) -> str:
    """The metrics-line key the verdicts are about: ``metric``, else the task's primary metric.

    Raises:
        ValueError: ``metric`` is not a higher-is-better metric of the task (listing those).
    """
    valid = [m.test_key for m in task.metrics if m.higher_is_better]
    if metric is None:
        return task.primary.test_key
    if metric not in valid:
        raise ValueError(f"unknown metric {metric!r} for task {task.name!r}; valid: {', '.join(valid)}")
    return metric


@dataclass(frozen=True)
class _Layout:
    """Where each group sits in the grid: its stratum, its scheme and its baseline group."""

    strata: list[str]
    stratum_of: dict[str, str]
    scheme_of: dict[str, str]
    baseline_of: dict[str, str]


def _layout(groups: list[RunGroup], base: RunGroup) -> _Layout:
    strata = find_strata(groups, base)
    others = [k for k in _varying(groups) if k not in strata]
    stratum_of = {g.label: " ".join(_parts(g.config, strata)) for g in groups}
    scheme_of = {g.label: " ".join([g.algo, *_parts(g.config, others)]) for g in groups}
    baseline_of = {}
    for g in groups:
        candidates = [h for h in groups if h.algo == base.algo and stratum_of[h.label] == stratum_of[g.label]]
        preferred = [h for h in candidates if scheme_of[h.label] == scheme_of[base.label]]
        baseline_of[g.label] = (preferred or candidates or [base])[0].label
    return _Layout(strata, stratum_of, scheme_of, baseline_of)


def _missing_baseline_warnings(groups: list[RunGroup], layout: _Layout, base: RunGroup) -> list[str]:
    """One line per stratum that holds no group of the baseline's algorithm: its groups fall back to ``base``."""
    lacking = sorted({layout.stratum_of[g.label] for g in groups if layout.baseline_of[g.label] == base.label})
    lacking = [stratum for stratum in lacking if stratum != layout.stratum_of[base.label]]
    return [
        f"stratum {stratum!r} has no {base.algo} group: its groups are compared with {base.label!r} "
        "(another stratum's baseline, so the contrast mixes the grid value into the difference)"
        for stratum in lacking
    ]


def _display_names(groups: list[RunGroup], labels: dict[str, str]) -> dict[str, str]:
    """Display name per group label: ``labels`` by label or algorithm, else :func:`short_label`.

    Raises:
        ValueError: a ``--label`` that names no group, or two groups given one name.
    """
    known = {g.label for g in groups} | {g.algo for g in groups}
    for name in labels:
        if name not in known:
            raise ValueError(f"--label {name!r} names no group; groups: {', '.join(g.label for g in groups)}")
    names = {g.label: labels.get(g.label) or _relabel(g, labels) for g in groups}
    if len(set(names.values())) != len(names):
        raise ValueError("--label gives two groups the same name; names: " + ", ".join(names.values()))
    return names


def _relabel(group: RunGroup, labels: dict[str, str]) -> str:
    rest = group.label[len(group.algo) :]
    return short_label(labels[group.algo] + rest) if group.algo in labels else short_label(group.label)


def _contrast(group: RunGroup, base: RunGroup, scores: dict, metric: str, *, primary: bool = False) -> Contrast:
    from creditzoo.analysis.stats import welch_contrast

    result = welch_contrast(
        scores[group.label][metric], scores[base.label][metric], group=group.label, baseline=base.label
    )
    return Contrast(**{**result.__dict__, "primary": primary})


def _summarise(
    group: RunGroup,
    baseline: RunGroup,
    scores: dict,
    options: CompareOptions,
    axes: list[str],
    layout,
    name: str,
    bounds: dict[str, tuple[float, float] | None],
) -> GroupSummary:
    """One group's summary; every interval of a bounded metric's means clipped to its ``bounds``."""
    from functools import partial

    from creditzoo.analysis.stats import area_under_curve, t_interval, value_at_cost, welch_contrast

    metric = options.metric
    interval = partial(t_interval, bounds=bounds.get(metric))  # the chosen metric's values [n] -> Estimate
    own = scores[group.label]
    is_base = group is baseline
    budget: dict[str, dict[str, Estimate]] = {}
    budget_contrasts: dict[str, dict[str, Contrast]] = {}
    totals = {}
    for axis in axes:
        totals[axis] = float(np.mean([_total_cost(run, axis) for run in baseline.runs]))
        budget[axis], budget_contrasts[axis] = {}, {}
        for share in BUDGET_FRACTIONS:
            key = f"{share:.0%}"
            mine = [value_at_cost(*_cost_curve(run, metric, axis), share * totals[axis]) for run in group.runs]
            theirs = [value_at_cost(*_cost_curve(run, metric, axis), share * totals[axis]) for run in baseline.runs]
            budget[axis][key] = interval(mine)
            if not is_base:
                budget_contrasts[axis][key] = welch_contrast(mine, theirs, group=group.label, baseline=baseline.label)
    curves = [run.series(metric) for run in group.runs]
    key = metric.removeprefix("test_")
    categories: dict[str, list[float]] = {}
    for run in group.runs:
        for category, values in run.categories.items():
            if key in values:
                categories.setdefault(category, []).append(float(values[key]))
    has_train = all(run.series("reward_clean_mean")[1].size for run in group.runs)
    per_iteration = {
        axis: float(np.mean([_total_cost(run, axis) / max(run.metrics[-1]["iteration"], 1) for run in group.runs]))
        for axis in axes
    }
    return GroupSummary(
        label=group.label,
        name=name,
        algo=group.algo,
        scheme=layout.scheme_of[group.label],
        stratum=layout.stratum_of[group.label],
        baseline=baseline.label,
        runs=[str(run.path) for run in group.runs],
        final=interval(own[metric]),
        guards={
            m: None if values is None else t_interval(values, bounds=bounds.get(m))
            for m, values in own.items()
            if m != metric
        },
        contrast=None if is_base else _contrast(group, baseline, scores, metric),
        budget=budget,
        budget_contrasts=budget_contrasts,
        baseline_budget=totals,
        area=interval([area_under_curve(its, v) for its, v in curves]),
        last_k=interval([float(v[-options.last_k :].mean()) for _, v in curves]),
        cost_per_iteration=per_iteration,
        to_threshold={},
        categories={c: round(float(np.mean(v)), 6) for c, v in sorted(categories.items())},
        train_curve=group_curve(group, "reward_clean_mean") if has_train else None,
        test_curve=group_curve(group, metric, bounds=bounds.get(metric)),
        config=group.config,
    )


def _add_paired_bootstrap(summaries, primary, groups, paired, options):
    """Hierarchical bootstrap intervals (seeds, then prompts jointly) beside each contrast's t interval."""
    from creditzoo.analysis.stats import paired_bootstrap

    key = options.metric.removeprefix("test_")
    paths = [str(run.path) for g in groups for run in g.runs]
    table = [paired.runs[p].prompt_means(key) for p in paths]
    prompt_scores = np.stack([means for _, _, means in table])  # [N, P]
    categories = np.array(table[0][1])  # [P]
    index, start = {}, 0
    for g in groups:
        index[g.label] = np.arange(start, start + len(g.runs))
        start += len(g.runs)
    pairs = [(s.label, s.baseline) for s in summaries if s.contrast is not None]
    if primary is not None:
        pairs.append((primary.group, primary.baseline))
    intervals = paired_bootstrap(
        prompt_scores, categories, index, pairs, resamples=options.resamples, seed=options.seed
    )

    def with_interval(contrast: Contrast) -> Contrast:
        low, high = intervals[(contrast.group, contrast.baseline)]
        return Contrast(**{**contrast.__dict__, "bootstrap_low": low, "bootstrap_high": high})

    summaries = [
        s if s.contrast is None else GroupSummary(**{**s.__dict__, "contrast": with_interval(s.contrast)})
        for s in summaries
    ]
    return summaries, None if primary is None else with_interval(primary)


def _interactions(groups: list[RunGroup], layout: _Layout, scores: dict, metric: str) -> list[Interaction]:
    """For every scheme and every stratum other than the reference: the change of its lead over the baseline."""
    from creditzoo.analysis.stats import difference_in_differences

    if not layout.strata:
        return []
    base = groups[0]
    reference = layout.stratum_of[base.label]
    cell = {(layout.scheme_of[g.label], layout.stratum_of[g.label]): g.label for g in groups}
    base_scheme = layout.scheme_of[base.label]
    results = []
    for (scheme, level), label in cell.items():
        if scheme == base_scheme or level == reference or (scheme, reference) not in cell:
            continue
        if (base_scheme, level) not in cell:
            continue
        values = {
            "a_ref": scores[cell[(scheme, reference)]][metric],
            "b_ref": scores[cell[(base_scheme, reference)]][metric],
            "a_level": scores[label][metric],
            "b_level": scores[cell[(base_scheme, level)]][metric],
        }
        difference, low, high, df, p = difference_in_differences(values)
        results.append(
            Interaction(
                group=scheme,
                baseline=base_scheme,
                reference=reference,
                level=level,
                lead_reference=float(np.mean(values["a_ref"]) - np.mean(values["b_ref"])),
                lead_level=float(np.mean(values["a_level"]) - np.mean(values["b_level"])),
                difference=difference,
                low=low,
                high=high,
                df=df,
                p_value=p,
            )
        )
    return results


def _adjust(summaries, interactions, primary):
    """Holm over every contrast's and interaction's p (the primary contrast, when declared, stays unadjusted)."""
    from creditzoo.analysis.stats import holm

    skip = None if primary is None else (primary.group, primary.baseline)
    tests = [
        ("contrast", i, s.contrast.p_value)
        for i, s in enumerate(summaries)
        if s.contrast is not None and s.contrast.p_value is not None and (s.label, s.baseline) != skip
    ]
    tests += [("interaction", i, x.p_value) for i, x in enumerate(interactions) if x.p_value is not None]
    adjusted = dict(zip([(kind, i) for kind, i, _ in tests], holm([p for _, _, p in tests]), strict=True))
    summaries = list(summaries)
    for i, s in enumerate(summaries):
        if s.contrast is None:
            continue
        is_primary = (s.label, s.baseline) == skip
        p = s.contrast.p_value if is_primary else adjusted.get(("contrast", i))
        contrast = Contrast(**{**s.contrast.__dict__, "p_adjusted": p, "primary": is_primary})
        summaries[i] = GroupSummary(**{**s.__dict__, "contrast": contrast})
    interactions = [
        Interaction(**{**x.__dict__, "p_adjusted": adjusted.get(("interaction", i))})
        for i, x in enumerate(interactions)
    ]
    if primary is not None:
        primary = Contrast(**{**primary.__dict__, "p_adjusted": primary.p_value})
    return summaries, interactions, primary, len(tests)


def _threshold(groups, summaries, options: CompareOptions, baseline_of: dict[str, str]):
    """The threshold, its source, and every summary with its cost to reach it (running-max curves).

    One threshold for every group (the reference baseline's final mean unless given); each group's cost ratio is to
    its own baseline's cost (``baseline_of``: in a grid, the baseline's group at the same grid value), as its
    final-score contrast is.
    """
    base = groups[0]
    threshold, source = options.threshold, "given (--threshold)"
    if threshold is None:
        # the last point of the baseline's own curve, in the protocol the costs are read along (the in-run
        # evaluations): a final score under another protocol (eval/final.json) could lie above the whole curve
        threshold = float(np.mean([final_score(run, options.metric) for run in base.runs]))
        source = f"final mean {options.metric} of the baseline {base.label!r} on its test curve"
    crossings = {
        g.label: _bootstrap_crossings(g, options.metric, threshold, options.resamples, options.seed) for g in groups
    }
    if all(point is None for point, _ in crossings.values()):
        best = max(float(np.max(run.series(options.metric)[1])) for g in groups for run in g.runs)
        raise ValueError(
            f"no group reaches the threshold {threshold:.4f} ({options.metric}; best test score of a run {best:.4f})"
        )
    summaries = [
        GroupSummary(
            **{**s.__dict__, "to_threshold": _crossings(*crossings[s.label], *crossings[baseline_of[s.label]])}
        )
        for s in summaries
    ]
    return threshold, source, summaries
