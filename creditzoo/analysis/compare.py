"""Comparing training runs: learning curves with bootstrap bands, cost to reach a threshold, final scores.

Runs are grouped by their configuration minus the seed (and minus ``run_dir`` / ``device``, which do not change what
is learned); the seeds of a group are its samples. Everything is computed from what the runs recorded
(``metrics.jsonl``, ``eval/``); nothing is sampled.

* Curves: the clean train reward (``reward_clean_mean``, iterations >= 1) and the test score (eval iterations,
  iteration 0 being the base model) against iterations, cumulative model evaluations (sum of ``model_evals``) and
  cumulative wall-clock seconds (sum of ``seconds.total``). At each iteration the band is a seeded percentile
  bootstrap of the mean over seeds (95%); the cost axes use the seeds' mean cumulative cost at that iteration.
* Cost to reach a threshold (the paper's "steps to reach Flow-GRPO's reward", TP-GRPO, Tong et al. 2026,
  arXiv 2602.06422): the first crossing of the group's mean test-score curve, linearly interpolated between the
  two evaluations around it, in iterations and in the cumulative model evaluations and seconds interpolated at
  the same place. The default threshold is the baseline group's final mean test score. Ratios to the baseline come
  with a bootstrap interval (seeds of each group resampled independently; resamples that never cross are
  dropped and counted).
* Final score: mean of each run's last test score; the difference to the baseline with Welch's t-test.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from creditzoo.analysis.runs import RunData

IGNORED_KEYS = ("seed", "run_dir", "device")
"""Configuration keys that do not define a group (seeds are a group's samples)."""

COST_AXES = ("iterations", "model_evals", "seconds")
CONFIDENCE = 0.95


def bootstrap_interval(
    values: np.ndarray, *, resamples: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Seeded percentile-bootstrap interval of the mean of ``values`` [n] (a point for n = 1)."""
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return float(values[0]), float(values[0])
    means = bootstrap_means(values[:, None], resamples=resamples, rng=np.random.default_rng(seed))[:, 0]
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def bootstrap_means(matrix: np.ndarray, *, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means over rows of ``matrix`` [n, J] for ``resamples`` resamplings of its rows: [R, J]."""
    index = rng.integers(0, matrix.shape[0], size=(resamples, matrix.shape[0]))  # [R, n]
    return matrix[index].mean(axis=1)


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
    """A group's mean curve over seeds, with a bootstrap band, at the iterations every seed recorded.

    Attributes:
        iterations: [J] iteration numbers.
        model_evals: [J] seeds' mean cumulative model evaluations at those iterations.
        seconds: [J] seeds' mean cumulative wall-clock seconds.
        mean: [J] mean value over seeds.
        low: [J] lower end of the band.
        high: [J] upper end of the band.
    """

    iterations: list[int]
    model_evals: list[float]
    seconds: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]


def _aligned(group: RunGroup, metric: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Iterations [J] that every seed recorded ``metric`` at, values [n, J], and cumulative costs [n, J] per axis."""
    per_run = [run.series(metric) for run in group.runs]
    common = sorted(set.intersection(*(set(its.tolist()) for its, _ in per_run)))
    if not common:
        raise ValueError(f"the runs of group {group.label!r} share no iteration with {metric!r} recorded")
    values = np.array([[dict(zip(its.tolist(), vals, strict=True))[i] for i in common] for its, vals in per_run])
    costs = {}
    for axis in ("model_evals", "seconds"):
        rows = []
        for run in group.runs:
            lookup = dict(zip(run.iterations().tolist(), run.cumulative(axis), strict=True))
            rows.append([lookup[i] for i in common])
        costs[axis] = np.array(rows, dtype=float)
    return np.array(common), values, costs


def group_curve(group: RunGroup, metric: str, *, resamples: int = 2000, seed: int = 0) -> Curve:
    """The group's mean ``metric`` curve over seeds with a percentile-bootstrap band (module docstring)."""
    iterations, values, costs = _aligned(group, metric)
    if values.shape[0] > 1:
        means = bootstrap_means(values, resamples=resamples, rng=np.random.default_rng(seed))  # [R, J]
        tail = 100 * (1 - CONFIDENCE) / 2
        low, high = np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)
    else:
        low = high = values[0]
    return Curve(
        iterations=[int(i) for i in iterations],
        model_evals=[round(float(x), 3) for x in costs["model_evals"].mean(0)],
        seconds=[round(float(x), 4) for x in costs["seconds"].mean(0)],
        mean=[round(float(x), 6) for x in values.mean(0)],
        low=[round(float(x), 6) for x in low],
        high=[round(float(x), 6) for x in high],
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

    Attributes:
        value: the crossing of the group's mean curve (None if it never reaches the threshold).
        low: lower end of the bootstrap interval of the crossing (None if no resample crosses).
        high: upper end.
        ratio: value / the baseline's value (None when either is missing or the baseline's is 0).
        ratio_low: lower end of the bootstrap interval of the ratio.
        ratio_high: upper end.
        reached_share: share of bootstrap resamples whose mean curve reaches the threshold.
    """

    value: float | None
    low: float | None
    high: float | None
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    reached_share: float


def _bootstrap_crossings(group: RunGroup, metric: str, threshold: float, resamples: int, seed: int):
    """Crossing of the full-sample mean curve, and of ``resamples`` resampled mean curves ([R] per axis, NaN = none)."""
    iterations, values, costs = _aligned(group, metric)
    point = first_crossing(iterations, values.mean(0), {a: c.mean(0) for a, c in costs.items()}, threshold)
    rng = np.random.default_rng([seed, zlib.crc32(group.label.encode())])  # groups resampled independently
    index = rng.integers(0, values.shape[0], size=(resamples, values.shape[0]))  # [R, n]
    curves = values[index].mean(1)  # [R, J]
    axes = {
        "iterations": np.broadcast_to(iterations.astype(float), curves.shape),
        **{
            axis: cost[index].mean(1)
            for axis, cost in costs.items()  # [R, J]
        },
    }
    samples = first_crossings(curves, axes, threshold)
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


def _interval(samples: np.ndarray) -> tuple[float | None, float | None]:
    kept = samples[np.isfinite(samples)]
    if kept.size == 0:
        return None, None
    tail = 100 * (1 - CONFIDENCE) / 2
    return round(float(np.percentile(kept, tail)), 4), round(float(np.percentile(kept, 100 - tail)), 4)


def _crossings(point, samples, base_point, base_samples) -> dict[str, Crossing]:
    result = {}
    for axis in COST_AXES:
        value = None if point is None else point[axis]
        base = None if base_point is None else base_point[axis]
        ratio = value / base if value is not None and base else None
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = samples[axis] / np.where(base_samples[axis] > 0, base_samples[axis], np.nan)
        low, high = _interval(samples[axis])
        ratio_low, ratio_high = _interval(ratios)
        result[axis] = Crossing(
            value=None if value is None else round(value, 4),
            low=low,
            high=high,
            ratio=None if ratio is None else round(ratio, 4),
            ratio_low=ratio_low,
            ratio_high=ratio_high,
            reached_share=round(float(np.isfinite(samples[axis]).mean()), 4),
        )
    return result


# ----------------------------------------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class GroupSummary:
    """One group's results in a comparison.

    Attributes:
        label: the group's label.
        algo: its algorithm.
        runs: the run directories (one per seed).
        final_scores: each run's last test score, [n].
        final_mean: their mean.
        final_low: lower end of the bootstrap interval of the mean.
        final_high: upper end.
        difference: final_mean minus the baseline's (0 for the baseline itself).
        p_value: Welch's t-test of the final scores against the baseline's (None with < 2 runs on either side,
            for the baseline itself, or when both sides have zero variance).
        to_threshold: axis -> :class:`Crossing`.
        categories: category -> mean final score of the runs.
        train_curve: the clean train reward, :class:`Curve`.
        test_curve: the test score, :class:`Curve`.
    """

    label: str
    algo: str
    runs: list[str]
    final_scores: list[float]
    final_mean: float
    final_low: float
    final_high: float
    difference: float
    p_value: float | None
    to_threshold: dict[str, Crossing]
    categories: dict[str, float]
    train_curve: Curve | None
    test_curve: Curve
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """A comparison of run groups against a baseline group.

    Attributes:
        metric: the test metric (``test_partial_score`` or ``test_strict_accuracy``).
        baseline: the baseline group's label.
        threshold: the score the threshold costs are measured to.
        threshold_source: how the threshold was chosen.
        groups: per group, :class:`GroupSummary` (the baseline first).
    """

    metric: str
    baseline: str
    threshold: float
    threshold_source: str
    groups: list[GroupSummary]


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


def _welch(values: list[float], base: list[float]) -> float | None:
    from scipy.stats import ttest_ind

    if len(values) < 2 or len(base) < 2 or (np.var(values) == 0 and np.var(base) == 0):
        return None
    return round(float(ttest_ind(values, base, equal_var=False).pvalue), 6)


def compare_runs(
    runs: list[RunData],
    *,
    baseline: str = "flow_grpo",
    threshold: float | None = None,
    metric: str = "test_partial_score",
    resamples: int = 1000,
    seed: int = 0,
) -> Comparison:
    """Group the runs, compute curves, threshold costs and final-score tests (module docstring).

    Args:
        runs: the runs (see :func:`creditzoo.analysis.runs.load_run`).
        baseline: baseline group label or algorithm name.
        threshold: the test score to reach (default: the baseline's final mean).
        metric: ``test_partial_score`` or ``test_strict_accuracy``.
        resamples: bootstrap resamples.
        seed: bootstrap seed.

    Raises:
        ValueError: runs of different environments or rewards, no baseline, a run without ``metric``, or a
            threshold no group reaches.
    """
    if metric not in ("test_partial_score", "test_strict_accuracy"):
        raise ValueError(f"unknown metric {metric!r}; valid: test_partial_score, test_strict_accuracy")
    if not runs:
        raise ValueError("no runs to compare")
    check_comparable(runs)
    groups = group_runs(runs)
    base = pick_baseline(groups, baseline)
    groups = [base, *[g for g in groups if g is not base]]
    finals = {g.label: [final_score(run, metric) for run in g.runs] for g in groups}
    source = "given (--threshold)"
    if threshold is None:
        threshold = float(np.mean(finals[base.label]))
        source = f"final mean {metric} of the baseline {base.label!r}"
    crossings = {g.label: _bootstrap_crossings(g, metric, threshold, resamples, seed) for g in groups}
    if all(point is None for point, _ in crossings.values()):
        best = max(float(np.mean(v)) for v in finals.values())
        raise ValueError(f"no group reaches the threshold {threshold:.4f} ({metric}; best final group mean {best:.4f})")
    summaries = [_summarise(g, finals, base, crossings, metric=metric, resamples=resamples, seed=seed) for g in groups]
    return Comparison(metric, base.label, round(threshold, 6), source, summaries)


def _summarise(group, finals, base, crossings, *, metric: str, resamples: int, seed: int) -> GroupSummary:
    scores = finals[group.label]
    low, high = bootstrap_interval(np.array(scores), resamples=resamples, seed=seed)
    key = "partial_score" if metric == "test_partial_score" else "strict_accuracy"
    categories: dict[str, list[float]] = {}
    for run in group.runs:
        for name, values in run.categories.items():
            if key in values:
                categories.setdefault(name, []).append(float(values[key]))
    has_train = all(run.series("reward_clean_mean")[1].size for run in group.runs)
    return GroupSummary(
        label=group.label,
        algo=group.algo,
        runs=[str(run.path) for run in group.runs],
        final_scores=[round(s, 6) for s in scores],
        final_mean=round(float(np.mean(scores)), 6),
        final_low=round(low, 6),
        final_high=round(high, 6),
        difference=round(float(np.mean(scores) - np.mean(finals[base.label])), 6),
        p_value=None if group is base else _welch(scores, finals[base.label]),
        to_threshold=_crossings(*crossings[group.label], *crossings[base.label]),
        categories={name: round(float(np.mean(v)), 6) for name, v in sorted(categories.items())},
        train_curve=group_curve(group, "reward_clean_mean", resamples=resamples, seed=seed) if has_train else None,
        test_curve=group_curve(group, metric, resamples=resamples, seed=seed),
        config=group.config,
    )


# ----------------------------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cost(crossing: Crossing, digits: int) -> str:
    if crossing.value is None:
        return f"not reached ({crossing.reached_share:.0%} of resamples)"
    return f"{crossing.value:.{digits}f} [{_fmt(crossing.low, digits)}, {_fmt(crossing.high, digits)}]"


def _ratio(crossing: Crossing) -> str:
    if crossing.ratio is None:
        return "n/a"
    return f"{crossing.ratio:.2f} [{_fmt(crossing.ratio_low, 2)}, {_fmt(crossing.ratio_high, 2)}]"


def render_report(
    comparison: Comparison,
    figures: dict[str, str],
    *,
    title: str = "Comparison",
    notes: list[str] | None = None,
    command: str | None = None,
) -> str:
    """A self-contained markdown report of a :class:`Comparison`.

    Args:
        comparison: the result of :func:`compare_runs`.
        figures: caption -> PNG path relative to the report.
        title: the report's heading.
        notes: lines listed under "Left out" (e.g. unfinished runs).
        command: the command line that produced the report, quoted at its top.
    """
    metric, groups = comparison.metric, comparison.groups
    lines = [f"# {title}", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [
        f"{sum(len(g.runs) for g in groups)} runs in {len(groups)} groups (configuration minus seed). "
        f"Test metric: `{metric}`. Baseline: `{comparison.baseline}`. "
        f"Threshold {comparison.threshold:.4f} ({comparison.threshold_source}).",
        "",
        "Intervals are 95% percentile-bootstrap intervals over seeds; the threshold cost is the first crossing of "
        "the group's mean test curve, interpolated linearly between evaluations; ratios are to the baseline "
        "(below 1: cheaper). p: Welch's t-test of the final scores against the baseline.",
        "",
        "## Final test score",
        "",
        "| group | seeds | final mean [95% CI] | difference to baseline | p |",
        "|---|---|---|---|---|",
    ]
    for g in groups:
        lines.append(
            f"| {g.label} | {len(g.runs)} | {g.final_mean:.4f} [{g.final_low:.4f}, {g.final_high:.4f}] "
            f"| {g.difference:+.4f} | {_fmt(g.p_value, 4)} |"
        )
    lines += [
        "",
        f"## Cost to reach {comparison.threshold:.4f}",
        "",
        "| group | iterations | ratio | model evaluations | ratio | seconds | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        t = g.to_threshold
        lines.append(
            f"| {g.label} | {_cost(t['iterations'], 1)} | {_ratio(t['iterations'])} "
            f"| {_cost(t['model_evals'], 0)} | {_ratio(t['model_evals'])} "
            f"| {_cost(t['seconds'], 1)} | {_ratio(t['seconds'])} |"
        )
    names = sorted({name for g in groups for name in g.categories})
    if names:
        lines += ["", "## Final score per category", "", "| group | " + " | ".join(names) + " |"]
        lines.append("|---|" + "---|" * len(names))
        for g in groups:
            lines.append(f"| {g.label} | " + " | ".join(_fmt(g.categories.get(n)) for n in names) + " |")
    if figures:
        lines += ["", "## Figures", ""]
        for caption, path in figures.items():
            lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    if notes:
        lines += ["", "## Left out", "", *[f"- {note}" for note in notes]]
    lines += ["", "## Runs", ""]
    for g in groups:
        lines.append(f"- {g.label}: " + ", ".join(f"`{run}`" for run in g.runs))
    return "\n".join(lines) + "\n"
