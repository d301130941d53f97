"""Small-sample statistics of run comparisons: intervals over seeds, contrasts, Holm, budgets, interactions.

Every estimate here treats a run (one seed) as one observation, because seeds are what a study replicates: with 3
seeds a percentile bootstrap of the mean returns the seed range, so means get Student-t intervals
(``scipy.stats.t``) and differences Welch's t (``scipy.stats.ttest_ind(equal_var=False)``, its interval on the
Welch-Satterthwaite degrees of freedom). Beside p come Hedges' g (``statsmodels``' bias-corrected standardised mean
difference) and the probability of improvement P(X > Y) as rliable defines it (Agarwal et al., "Deep RL at the
Edge of the Statistical Precipice", NeurIPS 2021: the Mann-Whitney U statistic over all pairs of runs, divided by
their number). Holm's step-down adjustment comes from ``statsmodels.stats.multitest.multipletests``.

Where every run was scored per image on the same evaluation noise (common random numbers), :func:`paired_bootstrap`
adds a hierarchical bootstrap of a difference of group means: seeds resampled within each group, then test prompts
resampled once per resample for all runs together (within each category), so that the pairing through the shared
prompts and noise is kept.

scipy and statsmodels are imported inside the functions: ``import creditzoo.analysis.stats`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its Student-t interval.

    Attributes:
        mean: the mean of ``values``.
        low: lower end of the interval (the mean itself with one value or no spread).
        high: upper end.
        values: the per-seed values, [n].
    """

    mean: float
    low: float
    high: float
    values: list[float]


@dataclass(frozen=True)
class Contrast:
    """A difference of two groups' means over seeds (``group`` minus ``baseline``).

    Attributes:
        group: the group's label.
        baseline: the label of the group it is compared with.
        difference: mean(group) - mean(baseline).
        low: lower end of the Welch t interval of the difference (None with < 2 runs on a side).
        high: upper end.
        p_value: Welch's two-sided t-test (None with < 2 runs on a side or no spread on either).
        p_adjusted: p after Holm's adjustment over the report's family (equal to ``p_value`` for a primary
            contrast or one outside the family).
        hedges_g: bias-corrected standardised mean difference (None without spread).
        prob_improvement: P(a run of ``group`` > a run of ``baseline``), ties counting one half.
        bootstrap_low: lower end of the hierarchical (seeds, then prompts) bootstrap interval, paired designs only.
        bootstrap_high: upper end.
        primary: declared with ``--primary`` and tested alone.
    """

    group: str
    baseline: str
    difference: float
    low: float | None
    high: float | None
    p_value: float | None
    p_adjusted: float | None = None
    hedges_g: float | None = None
    prob_improvement: float | None = None
    bootstrap_low: float | None = None
    bootstrap_high: float | None = None
    primary: bool = False


def t_interval(
    values: list[float] | np.ndarray, *, confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> Estimate:
    """Mean of ``values`` [n] with its Student-t interval on n - 1 degrees of freedom.

    A single value, or values without spread, give the point itself as the interval. With ``bounds`` (the range a
    bounded metric's mean cannot leave, e.g. a rate's [0, 1]) the interval is clipped to it: the t interval is
    symmetric and can run past a bound at small n, and intersecting an interval with the range its parameter must
    lie in keeps its coverage.
    """
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    spread = float(values.std(ddof=1)) if values.size > 1 else 0.0
    if spread == 0.0:
        return Estimate(mean, mean, mean, values.tolist())
    low, high = t.interval(confidence, values.size - 1, loc=mean, scale=spread / np.sqrt(values.size))
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Estimate(mean, float(low), float(high), values.tolist())


def welch_contrast(
    values: list[float], base: list[float], *, group: str, baseline: str, confidence: float = CONFIDENCE
) -> Contrast:
    """Welch's t-test and interval of mean(values) - mean(base), with Hedges' g and P(improvement).

    Args:
        values: the group's per-seed values, [n].
        base: the baseline's per-seed values, [m].
        group: the group's label.
        baseline: the baseline's label.
        confidence: the interval's coverage.
    """
    from scipy.stats import ttest_ind

    a, b = np.asarray(values, dtype=float), np.asarray(base, dtype=float)
    difference = float(a.mean() - b.mean())
    low = high = p = g = None
    if a.size >= 2 and b.size >= 2 and (a.std() > 0 or b.std() > 0):
        result = ttest_ind(a, b, equal_var=False)
        interval = result.confidence_interval(confidence)
        low, high, p = float(interval.low), float(interval.high), float(result.pvalue)
        g = hedges_g(a, b)
    return Contrast(
        group=group,
        baseline=baseline,
        difference=difference,
        low=low,
        high=high,
        p_value=p,
        hedges_g=g,
        prob_improvement=probability_of_improvement(a, b),
    )


def hedges_g(values: np.ndarray, base: np.ndarray) -> float | None:
    """Hedges' g of ``values`` [n] against ``base`` [m] (pooled SD, small-sample correction); None without spread."""
    from statsmodels.stats.meta_analysis import effectsize_smd

    if values.size < 2 or base.size < 2 or (values.std() == 0 and base.std() == 0):
        return None
    g, _ = effectsize_smd(values.mean(), values.std(ddof=1), values.size, base.mean(), base.std(ddof=1), base.size)
    return float(g)


def probability_of_improvement(values: np.ndarray, base: np.ndarray) -> float:
    """P(X > Y) over all pairs of a run of ``values`` [n] and one of ``base`` [m], ties one half (rliable's rule)."""
    from scipy.stats import mannwhitneyu

    if np.array_equal(np.sort(values), np.sort(base)):
        return 0.5
    return float(mannwhitneyu(values, base, alternative="greater").statistic / (values.size * base.size))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (``statsmodels.stats.multitest.multipletests``), in the order given."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, method="holm")[1]]


# ----------------------------------------------------------------------------------------------- interactions


@dataclass(frozen=True)
class Interaction:
    """A difference in differences: how much ``group``'s lead over the baseline changes from one stratum to another.

    Attributes:
        group: the scheme (its label without the stratum keys).
        baseline: the baseline scheme.
        reference: the reference stratum (e.g. ``reward_noise=none``).
        level: the other stratum.
        lead_reference: mean(group) - mean(baseline) at the reference stratum.
        lead_level: the same at ``level``.
        difference: lead_level - lead_reference.
        low: lower end of its t interval (Welch-Satterthwaite degrees of freedom).
        high: upper end.
        df: the degrees of freedom.
        p_value: two-sided t-test of ``difference`` = 0 (None without spread).
        p_adjusted: after Holm over the report's family.
    """

    group: str
    baseline: str
    reference: str
    level: str
    lead_reference: float
    lead_level: float
    difference: float
    low: float | None
    high: float | None
    df: float | None
    p_value: float | None
    p_adjusted: float | None = None


def difference_in_differences(
    cells: dict[str, list[float]], *, confidence: float = CONFIDENCE
) -> tuple[float, float | None, float | None, float | None, float | None]:
    """(A_level - B_level) - (A_ref - B_ref) with a Welch-Satterthwaite t interval and two-sided p.

    Args:
        cells: per-seed values of the four cells, keys ``"a_ref"``, ``"b_ref"``, ``"a_level"``, ``"b_level"``.
        confidence: the interval's coverage.

    Returns:
        (difference, low, high, degrees of freedom, p); the last four None when a cell has one run or no cell has
        spread. The variance is the sum of the four cells' squared standard errors; the degrees of freedom are
        Welch-Satterthwaite's, sum(v_i)^2 / sum(v_i^2 / (n_i - 1)).
    """
    from scipy.stats import t

    arrays = {name: np.asarray(cells[name], dtype=float) for name in ("a_ref", "b_ref", "a_level", "b_level")}
    signs = {"a_ref": -1.0, "b_ref": 1.0, "a_level": 1.0, "b_level": -1.0}
    difference = float(sum(signs[n] * x.mean() for n, x in arrays.items()))
    if any(x.size < 2 for x in arrays.values()):
        return difference, None, None, None, None
    variances = [x.var(ddof=1) / x.size for x in arrays.values()]
    total = float(sum(variances))
    if total == 0:
        return difference, None, None, None, None
    df = total**2 / sum(v**2 / (x.size - 1) for v, x in zip(variances, arrays.values(), strict=True))
    scale = np.sqrt(total)
    low, high = t.interval(confidence, df, loc=difference, scale=scale)
    p = float(2 * t.sf(abs(difference) / scale, df))
    return difference, float(low), float(high), float(df), p


# ----------------------------------------------------------------------------------------------- budgets


def value_at_cost(costs: np.ndarray, values: np.ndarray, budget: float) -> float:
    """The test curve ``values`` [J] at cumulative cost ``budget``, linearly interpolated on ``costs`` [J].

    A run whose last evaluation cost less than ``budget`` keeps its last value (it spent less than the budget and
    stopped there); a budget below the first evaluation's cost gets the first value.
    """
    return float(np.interp(budget, costs, values))


def area_under_curve(iterations: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under ``values`` [J] over ``iterations`` [J], divided by their span: the curve's mean level."""
    span = float(iterations[-1] - iterations[0])
    if span <= 0:
        return float(values[-1])
    return float(np.trapezoid(values, iterations) / span)


def running_max(curves: np.ndarray) -> np.ndarray:
    """The best value so far along the last axis of ``curves`` [..., J]."""
    return np.maximum.accumulate(curves, axis=-1)


# ----------------------------------------------------------------------------------------------- paired bootstrap


def paired_bootstrap(
    prompt_scores: np.ndarray,
    categories: np.ndarray,
    groups: dict[str, np.ndarray],
    contrasts: list[tuple[str, str]],
    *,
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> dict[tuple[str, str], tuple[float, float]]:
    """Hierarchical bootstrap intervals of differences of group means, keeping the pairing through shared prompts.

    Each resample draws, within each category, as many test prompts as it has (with replacement), once for all
    runs, and, within each group, as many of its runs as it has. A run's score is the mean over categories of
    its mean over the drawn prompts (the summary rule of the final evaluation).

    Args:
        prompt_scores: [N, P] each run's mean score per test prompt (over its samples), runs in any order.
        categories: [P] category id of each prompt.
        groups: label -> indices into the N runs.
        contrasts: (group, baseline) label pairs.
        resamples: bootstrap resamples R.
        seed: seed of the draws.
        confidence: the interval's coverage.

    Returns:
        (group, baseline) -> percentile interval of mean(group) - mean(baseline).
    """
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, prompt_scores.shape[1]))  # [R, P]
    names = np.unique(categories)
    for name in names:
        members = np.nonzero(categories == name)[0]
        drawn = members[rng.integers(0, members.size, size=(resamples, members.size))]  # [R, P_c]
        rows = np.repeat(np.arange(resamples), members.size)
        np.add.at(weights, (rows, drawn.ravel()), 1.0 / (members.size * names.size))
    scores = weights @ prompt_scores.T  # [R, N] every run's score under each resample of prompts
    means = {}
    for label, index in groups.items():
        picked = index[rng.integers(0, index.size, size=(resamples, index.size))]  # [R, n]
        means[label] = np.take_along_axis(scores, picked, axis=1).mean(1)  # [R]
    tail = 100 * (1 - confidence) / 2
    intervals = {}
    for group, baseline in contrasts:
        diffs = means[group] - means[baseline]
        intervals[(group, baseline)] = (float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail)))
    return intervals
