"""The markdown report of a :class:`~creditzoo.analysis.compare.Comparison`: verdicts in words first.

Its first screen says which scores and which statistics were used, then one sentence per contrast (what holds and
what does not at the chosen level, with the guards), then a ranked table per stratum. Budgets, interactions, the
cost to reach a threshold, categories, figures and the run list follow.
"""

from __future__ import annotations

from creditzoo.analysis.compare import BUDGET_AXES, Comparison, Crossing, GroupSummary
from creditzoo.analysis.stats import Contrast, Estimate


def _num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _p_is(value: float | None) -> str:
    """``= 0.006`` or ``< 0.001``: a p value after its name in a sentence."""
    text = _p(value)
    return text if text.startswith("<") else f"= {text}"


def _estimate(e: Estimate | None, digits: int = 3) -> str:
    if e is None:
        return "n/a"
    return f"{e.mean:.{digits}f} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def _interval(low: float | None, high: float | None, digits: int = 3) -> str:
    return "" if low is None or high is None else f" [{low:+.{digits}f}, {high:+.{digits}f}]"


def established(contrast: Contrast, alpha: float) -> bool:
    """Whether a contrast holds at ``alpha``.

    Its adjusted p must be below ``alpha`` and, in a paired design, its bootstrap interval must exclude zero too.
    """
    if contrast.p_adjusted is None or contrast.p_adjusted >= alpha:
        return False
    if contrast.bootstrap_low is not None and contrast.bootstrap_low <= 0 <= contrast.bootstrap_high:
        return False
    return True


def _budget_clause(group: GroupSummary, base_name: str, axis: str) -> str:
    contrast = group.budget_contrasts.get(axis, {}).get("100%")
    if contrast is None:
        return ""
    holds = contrast.low is not None and (contrast.low > 0 or contrast.high < 0)
    verdict = "holds, unadjusted" if holds else "not established"
    return (
        f"; at {base_name}'s {BUDGET_AXES[axis]} budget the difference is {contrast.difference:+.3f}"
        f"{_interval(contrast.low, contrast.high)} ({verdict})"
    )


def _guard_clause(group: GroupSummary, baseline: GroupSummary, names: dict[str, str]) -> str:
    parts = []
    for metric, estimate in group.guards.items():
        theirs = baseline.guards.get(metric)
        if estimate is not None and theirs is not None:
            parts.append(f"{names[metric]} {estimate.mean:.2f} vs {theirs.mean:.2f}")
    return "; its " + ", ".join(parts) if parts else ""


def verdict(group: GroupSummary, baseline: GroupSummary, comparison: Comparison) -> str:
    """One sentence: the contrast at equal iterations, at the baseline's budget, and the guards."""
    contrast = group.contrast
    assert contrast is not None
    name, base_name = group.name, baseline.name
    test = "p" if contrast.primary else "Holm p"
    interval = _interval(contrast.low, contrast.high)
    paired = ""
    if contrast.bootstrap_low is not None:
        paired = f", seeds-and-prompts bootstrap{_interval(contrast.bootstrap_low, contrast.bootstrap_high)}"
    stats = f"{contrast.difference:+.3f}{interval} ({test} {_p_is(contrast.p_adjusted)}{paired})"
    if contrast.p_value is None:
        head = f"{name} vs {base_name}: {contrast.difference:+.3f} at equal iterations, untestable (fewer than 2 seeds"
        head += " or no spread)"
    elif established(contrast, comparison.alpha):
        head = f"{name} {'beats' if contrast.difference > 0 else 'trails'} {base_name} by {stats} at equal iterations"
    else:
        head = f"{name} vs {base_name}: {stats} at equal iterations, not established at {comparison.alpha:g}"
    axis = comparison.budget_axes[0] if comparison.budget_axes else None
    budget = _budget_clause(group, base_name, axis) if axis else ""
    return head + budget + _guard_clause(group, baseline, comparison.metrics) + "."


def _method_lines(comparison: Comparison) -> list[str]:
    family = (
        f"Holm's adjustment over the {comparison.family} tests of this report (contrasts and interactions)"
        if comparison.family
        else "no adjustment (no other test)"
    )
    primary = ""
    if comparison.primary is not None:
        primary = f" The primary contrast {comparison.primary.group} vs {comparison.primary.baseline} is tested alone."
    interval = (
        "Intervals: 95% Student-t over seeds (a percentile bootstrap of 3 seeds returns their range); differences: "
        "Welch's t interval and test, Hedges' g, P(improvement) = share of run pairs in which the group's run "
        "scores higher (rliable's definition)."
    )
    ranges: dict[str, list[str]] = {}  # range -> labels of the metrics bounded to it
    for metric, bounds in comparison.bounds.items():
        if bounds is not None:
            ranges.setdefault(f"[{bounds[0]:g}, {bounds[1]:g}]", []).append(comparison.metrics[metric])
    if ranges:
        listing = "; ".join(f"{', '.join(labels)} to {span}" for span, labels in ranges.items())
        interval += (
            f" Intervals of bounded metrics' means are clipped to their range ({listing}): at a few seeds the "
            "symmetric t interval can run past a bound; differences are not clipped."
        )
    if comparison.paired:
        interval += (
            " The runs share per-image evaluation noise, so each contrast also gets a hierarchical bootstrap interval "
            "(seeds within each group, then test prompts drawn jointly for every run, within categories): it adds "
            "the uncertainty of the test set; a contrast is called established only when both agree."
        )
    return [
        f"**Scores**: {comparison.scores_source}.",
        "",
        f"**Statistics**: {interval} p values: {family}, at level {comparison.alpha:g}.{primary}",
    ]


def _ranked_table(comparison: Comparison, members: list[GroupSummary]) -> list[str]:
    axis = comparison.budget_axes[0] if comparison.budget_axes else None
    guards = [m for m in comparison.metrics if m != comparison.metric]
    cost_axis = "model_evals" if "model_evals" in comparison.budget_axes else axis
    header = (
        "| rank | group | seeds | mean [95% CI] | per seed | difference to baseline [95% CI] | p (Holm) | g | "
        f"P(better) | at baseline's {BUDGET_AXES[axis] if axis else 'budget'} | "
        + " | ".join(comparison.metrics[m] for m in guards)
        + f" | {BUDGET_AXES[cost_axis] if cost_axis else 'cost'} per iteration |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    ranked = sorted(members, key=lambda g: -g.final.mean)
    for rank, g in enumerate(ranked, start=1):
        c = g.contrast
        if c is None:
            diff, p, hedges, better = "baseline", "", "", ""
        else:
            diff = f"{c.difference:+.3f}{_interval(c.low, c.high)}"
            p = _p(c.p_adjusted) + (" (primary)" if c.primary else "")
            hedges, better = _num(c.hedges_g, 2), _num(c.prob_improvement, 2)
        at_budget = _estimate(g.budget[axis]["100%"]) if axis else "n/a"
        cost = f"{g.cost_per_iteration[cost_axis]:,.0f}" if cost_axis else "n/a"
        seeds = ", ".join(f"{v:.3f}" for v in g.final.values)
        lines.append(
            f"| {rank} | {g.name} | {len(g.runs)} | {_estimate(g.final)} | {seeds} | {diff} | {p} | {hedges} "
            f"| {better} | {at_budget} | " + " | ".join(_estimate(g.guards[m]) for m in guards) + f" | {cost} |"
        )
    return lines


def _budget_section(comparison: Comparison) -> list[str]:
    lines = ["", "## Budget-matched scores", ""]
    lines += [
        "Each run's test curve, interpolated at 25%, 50% and 100% of its baseline's mean total cost (a run that "
        "spent less keeps its last score); area: the area under the test curve over iterations divided by their "
        f"span (the curve's mean level); last {comparison.last_k}: the mean of the last {comparison.last_k} "
        "evaluations. Differences to the baseline with Welch's t interval, not adjusted.",
        "",
    ]
    for axis in comparison.budget_axes:
        lines += [
            f"**{BUDGET_AXES[axis]}**",
            "",
            "| group | 25% | 50% | 100% | difference at 100% |",
            "|---|---|---|---|---|",
        ]
        for g in comparison.groups:
            c = g.budget_contrasts.get(axis, {}).get("100%")
            diff = "baseline" if c is None else f"{c.difference:+.3f}{_interval(c.low, c.high)}"
            cells = " | ".join(_estimate(g.budget[axis][share]) for share in ("25%", "50%", "100%"))
            lines.append(f"| {g.name} | {cells} | {diff} |")
        lines.append("")
    lines += [f"| group | area under the test curve | last {comparison.last_k} evaluations |", "|---|---|---|"]
    for g in comparison.groups:
        lines.append(f"| {g.name} | {_estimate(g.area)} | {_estimate(g.last_k)} |")
    return lines


def _interaction_section(comparison: Comparison) -> list[str]:
    if not comparison.interactions:
        return []
    keys = ", ".join(comparison.strata)
    lines = [
        "",
        f"## Does {keys} change the lead? (difference in differences)",
        "",
        f"Lead = group minus baseline within a stratum; change = lead at the stratum minus lead at "
        f"{comparison.reference}; Welch-Satterthwaite t interval and test, seeds as observations, Holm-adjusted.",
        "",
        "| group | stratum | lead at reference | lead here | change [95% CI] | p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in comparison.interactions:
        holds = x.p_adjusted is not None and x.p_adjusted < comparison.alpha
        verdict = "the lead changes" if holds else "no change established"
        lines.append(
            f"| {x.group} | {x.level} | {x.lead_reference:+.3f} | {x.lead_level:+.3f} "
            f"| {x.difference:+.3f}{_interval(x.low, x.high)} | {_p(x.p_adjusted)} | {verdict} |"
        )
    return lines


def _cost(crossing: Crossing, digits: int) -> str:
    if crossing.value is None:
        return f"not reached ({crossing.not_reached} resamples never cross)"
    high = _num(crossing.high, digits) if crossing.high is not None else "not reached"
    return f"{crossing.value:.{digits}f} [{_num(crossing.low, digits)}, {high}]"


RATIO_POINT = {
    "low": "baseline not reached",
    "high": "not reached",
    "neither": "neither reached",
    "baseline_at_start": "n/a (baseline at no cost)",
}
"""What the cost table shows for a point ratio that is not a finite number (:attr:`Crossing.ratio_censored`)."""


def _ratio(crossing: Crossing) -> str:
    point = RATIO_POINT.get(crossing.ratio_censored or "", "n/a") if crossing.ratio is None else f"{crossing.ratio:.2f}"
    with_ratio = crossing.resamples - crossing.both_never - crossing.baseline_at_start
    if with_ratio <= 0:
        return point
    low = _num(crossing.ratio_low, 2) if crossing.ratio_low is not None else "baseline not reached"
    high = _num(crossing.ratio_high, 2) if crossing.ratio_high is not None else "not reached"
    return f"{point} [{low}, {high}]"


def _threshold_section(comparison: Comparison) -> list[str]:
    lines = [
        "",
        f"## Cost to reach {comparison.threshold:.4f}",
        "",
        f"Threshold: {comparison.threshold_source}. The first crossing of the running maximum of the group's mean "
        "test curve (interpolated between evaluations); bootstrap over seeds, with resamples that never cross "
        "counted as not reached (an interval end among them reads 'not reached'). Ratios are to the group's "
        "baseline (in a grid, the baseline at the same grid value, reaching the same threshold; below 1: cheaper), "
        "each group resample against a baseline resample: where only the group reaches the threshold the ratio "
        "is below any finite one (an end among those reads 'baseline not reached'), where only the baseline does "
        "it is above any, and where neither does there is no ratio; the last three columns count those resamples.",
        "",
        "| group | iterations | ratio | model evaluations | ratio | group never reaches | baseline never reaches "
        "| neither reaches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    at_start = 0
    for g in comparison.groups:
        t = g.to_threshold
        counts = t["iterations"]  # reaching or not is one event on every axis
        at_start = max(at_start, *(c.baseline_at_start for c in t.values()))
        lines.append(
            f"| {g.name} | {_cost(t['iterations'], 1)} | {_ratio(t['iterations'])} | {_cost(t['model_evals'], 0)} "
            f"| {_ratio(t['model_evals'])} | {counts.group_never} | {counts.baseline_never} | {counts.both_never} |"
        )
    lines.append(f"\nOf {comparison.groups[0].to_threshold['iterations'].resamples} resamples per group.")
    if at_start:
        lines[-1] += (
            f" In up to {at_start} the baseline reaches the threshold at no cost (its curve starts there): "
            "those have no ratio."
        )
    return lines


def render_report(
    comparison: Comparison,
    figures: dict[str, str],
    *,
    title: str = "Comparison",
    notes: list[str] | None = None,
    command: str | None = None,
) -> str:
    """A self-contained markdown report of a :class:`Comparison`, verdicts and the ranked table first.

    Args:
        comparison: the result of :func:`creditzoo.analysis.compare.compare_runs`.
        figures: caption -> PNG path relative to the report.
        title: the report's heading.
        notes: lines listed under "Left out" (e.g. unfinished runs).
        command: the command line that produced the report, quoted at its top.
    """
    groups = comparison.groups
    by_label = {g.label: g for g in groups}
    lines = [f"# {title}", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    base = comparison.base_score.get(comparison.metric)
    lines += [
        f"{sum(len(g.runs) for g in groups)} runs in {len(groups)} groups (configuration minus seed). Metric: "
        f"`{comparison.metric}`, base model {_num(base)}. Baseline: `{comparison.baseline}`"
        + (f", compared within each {', '.join(comparison.strata)}." if comparison.strata else "."),
        "",
        *_method_lines(comparison),
        "",
    ]
    if comparison.warnings:
        lines += [*[f"> warning: {w}" for w in comparison.warnings], ""]
    lines += ["## Verdicts", ""]
    if comparison.primary is not None:
        p = comparison.primary
        first = next(g for g in groups if g.label == p.group)
        second = by_label[p.baseline]
        shown = first if first.contrast is not None and first.contrast.primary else _as_group(first, p)
        lines.append("- **primary**: " + verdict(shown, second, comparison))
    for g in groups:
        if g.contrast is not None and not (comparison.primary and g.contrast.primary):
            lines.append("- " + verdict(g, by_label[g.baseline], comparison))
    for x in comparison.interactions:
        holds = x.p_adjusted is not None and x.p_adjusted < comparison.alpha
        lines.append(
            f"- {x.group}'s lead over {x.baseline} goes from {x.lead_reference:+.3f} at {x.reference} to "
            f"{x.lead_level:+.3f} at {x.level}: a change of {x.difference:+.3f}{_interval(x.low, x.high)} "
            f"(Holm p {_p_is(x.p_adjusted)}), {'established' if holds else 'not established'}."
        )
    strata = list(dict.fromkeys(g.stratum for g in groups))
    for stratum in strata:
        members = [g for g in groups if g.stratum == stratum]
        lines += ["", f"## Ranked: {stratum}" if stratum else "## Ranked", ""]
        lines += _ranked_table(comparison, members)
    lines += _interaction_section(comparison)
    lines += _budget_section(comparison)
    lines += _threshold_section(comparison)
    names = sorted({name for g in groups for name in g.categories})
    if names:
        lines += ["", "## Final score per category (last evaluation file of each run)", ""]
        lines += ["| group | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for g in groups:
            lines.append(f"| {g.name} | " + " | ".join(_num(g.categories.get(n)) for n in names) + " |")
    if figures:
        lines += ["", "## Figures", ""]
        for caption, path in figures.items():
            lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    if notes:
        lines += ["", "## Left out", "", *[f"- {note}" for note in notes]]
    lines += ["", "## Runs", ""]
    for g in groups:
        lines.append(f"- {g.name} (`{g.label}`): " + ", ".join(f"`{run}`" for run in g.runs))
    return "\n".join(lines) + "\n"


def _as_group(group: GroupSummary, contrast: Contrast) -> GroupSummary:
    """``group`` carrying ``contrast`` (the primary contrast, whose baseline may be another group)."""
    return GroupSummary(**{**group.__dict__, "contrast": contrast, "budget_contrasts": {}})
