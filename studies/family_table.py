"""A declared family of contrasts, adjusted with Holm, printed as one markdown table (shared by the studies' scripts).

``studies/verdict/secondary_family.py`` and ``studies/noise-aware/family.py`` read their members' contrasts from
``creditzoo analyze compare``'s ``compare.json`` and call :func:`print_family`. While some members are still
training, Holm cannot be computed yet; each available contrast then shows the Bonferroni bound min(1, m p). A
Holm-adjusted p is never larger than m times its own p (each term of Holm's maximum, (m - j + 1) p_(j) for j up to
the contrast's rank, is at most m p; ``tests/test_compare_stats.py`` checks it), so a contrast whose bound is below
alpha stays significant whatever the pending members show. One above it is "not established yet".
"""

from __future__ import annotations

from statsmodels.stats.multitest import multipletests


def guard(group: dict, metric: str) -> str:
    """The group's mean of a guard metric from compare.json, or a dash where the runs did not record it."""
    values = (group.get("guards") or {}).get(metric)
    return f"{values['mean']:.3f}" if values else "-"


def print_family(
    rows: list[tuple[str, dict, dict]], size: int, alpha: float = 0.05, pending: tuple[str, ...] = ()
) -> list[bool]:
    """Print the family's table and return, per row, whether it is established (adjusted p below ``alpha``).

    Args:
        rows: (title, contrast, group) of each member present: the contrast as compare.json records it
            (difference, low, high, hedges_g, p_value), the group whose runs it describes.
        size: the declared family's size m. With fewer rows, the adjusted column is the bound min(1, m p).
        alpha: the family's level.
        pending: what is still training, named in the interim note printed under the table.
    """
    p_values = [contrast["p_value"] for _, contrast, _ in rows]
    if len(rows) < size:
        adjusted = [min(1.0, size * p) for p in p_values]
        heading = f"bound on Holm p: min(1, {size}p)"
    else:
        adjusted = list(multipletests(p_values, alpha=alpha, method="holm")[1]) if rows else []
        heading = f"Holm p (family of {size})"
    print(
        f"| contrast | runs | difference [95% CI] | Hedges g | p | {heading} | strict accuracy | extra objects | "
        "what holds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    established = []
    for (title, contrast, group), p in zip(rows, adjusted, strict=True):
        holds = p < alpha
        verdict = ("higher" if contrast["difference"] > 0 else "lower") if holds else "not established"
        verdict += " yet" if len(rows) < size and not holds else ""
        established.append(holds)
        print(
            f"| {title} | {len(group['final']['values'])} | {contrast['difference']:+.3f} "
            f"[{contrast['low']:+.3f}, {contrast['high']:+.3f}] | {contrast['hedges_g']:+.2f} | "
            f"{contrast['p_value']:.4f} | {p:.4f} | {guard(group, 'test_strict_accuracy')} | "
            f"{guard(group, 'test_extra_object_rate')} | {verdict} |"
        )
    if len(rows) < size:
        print(
            f"\nInterim: {len(rows)} of {size} contrasts are in; still training: {', '.join(pending) or 'the rest'}. "
            "The adjusted column is the Bonferroni bound; Holm over the family is computed when every member is in."
        )
    return established
