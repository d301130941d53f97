"""A declared family of contrasts, adjusted with Holm, printed as one markdown table (shared by the studies' scripts).

``studies/verdict/secondary_family.py`` and ``studies/noise-aware/family.py`` read their members' contrasts from
``creditzoo analyze compare``'s ``compare.json`` and call :func:`print_family`. While some members are still
training, Holm cannot be computed yet; each available contrast then shows Holm's adjusted p computed with every
pending member at p = 1. Holm's adjusted p values never decrease when an input p grows, so whatever p values the
pending members bring, the final adjusted p is at most this bound (``tests/test_compare_stats.py`` checks it on
random families). A contrast whose bound is below alpha stays established; one above it is "not established yet".
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
        size: the declared family's size m. With fewer rows, the adjusted column is the bound: Holm with the
            pending members at p = 1.
        alpha: the family's level.
        pending: what is still training, named in the interim note printed under the table.
    """
    p_values = [contrast["p_value"] for _, contrast, _ in rows]
    padded = p_values + [1.0] * (size - len(rows))  # the pending members at p = 1: an upper bound (docstring)
    adjusted = list(multipletests(padded, alpha=alpha, method="holm")[1])[: len(rows)] if rows else []
    heading = f"Holm p (family of {size})" if len(rows) == size else f"bound on Holm p (family of {size}, pending at 1)"
    print(
        f"| contrast | runs | difference [95% CI] | Hedges g | p | {heading} | strict accuracy | extra objects | "
        "what holds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    established = []
    for (title, contrast, group), p in zip(rows, adjusted, strict=True):
        holds = p < alpha
        verdict = ("higher" if contrast["difference"] > 0 else "lower") if holds else "not established"
        # Holm never adjusts a p below itself: a contrast with p >= alpha cannot become established later
        verdict += " yet" if len(rows) < size and not holds and contrast["p_value"] < alpha else ""
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
            "The adjusted column is Holm with every pending member at p = 1, a bound the final Holm p cannot exceed."
        )
    return established
