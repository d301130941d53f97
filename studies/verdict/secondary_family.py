"""The secondary family as README.md declares it: Holm over its eight contrasts, alpha 0.05.

Usage: ``python studies/verdict/secondary_family.py [ANALYSIS_DIR]`` (default: this folder's ``analysis``).

The declaration names eight contrasts, each on the final partial score at equal iterations: ``incremental``,
``tp_grpo``, ``tp_grpo_strict_noinit``, ``tp_grpo_strict --completion x0``, ``tempflow``, ``tp_grpo_release`` and
``tp_grpo_strict_release`` against ``flow_grpo`` (``analysis/secondary/compare.json``), and ``tp_grpo_strict``
against ``tp_grpo_strict_noinit`` (``analysis/initial/compare.json``). ``creditzoo analyze compare`` adjusts over
the tests of its own report, which is not this family. This script reads each contrast's unadjusted Welch p value and
adjusts the family with statsmodels' Holm. It computes nothing else.

While some members are still training, the family is incomplete and Holm cannot be computed yet. Each available
contrast then shows the Bonferroni bound min(1, 8p). A Holm-adjusted p is never larger than m times its own p
(each term of Holm's maximum, (m - j + 1) p_(j) for j up to the contrast's rank, is at most m p), so a contrast
whose bound is below alpha stays significant whatever the pending members show. A contrast above the bound is
"not established yet", not "no difference".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

from statsmodels.stats.multitest import multipletests

ALPHA = 0.05


class Member(NamedTuple):
    """One declared contrast: where it is reported and how its group is found there."""

    title: str
    report: str  # the analysis folder holding compare.json
    algo: str
    stratum: str  # a grid value the group's stratum must contain ("" for the task defaults)


FAMILY = (
    Member("incremental vs flow_grpo", "secondary", "incremental", ""),
    Member("tp_grpo vs flow_grpo", "secondary", "tp_grpo", ""),
    Member("tp_grpo_strict_noinit vs flow_grpo", "secondary", "tp_grpo_strict_noinit", ""),
    Member("tp_grpo_strict --completion x0 vs flow_grpo", "secondary", "tp_grpo_strict", "completion=x0"),
    Member("tempflow vs flow_grpo", "secondary", "tempflow", ""),
    Member("tp_grpo_release vs flow_grpo", "secondary", "tp_grpo_release", ""),
    Member("tp_grpo_strict_release vs flow_grpo", "secondary", "tp_grpo_strict_release", ""),
    Member("tp_grpo_strict vs tp_grpo_strict_noinit", "initial", "tp_grpo_strict", ""),
)


def find(member: Member, analysis: Path) -> dict | None:
    """The group of ``member`` in its report, with its contrast, or None while it is not there."""
    path = analysis / member.report / "compare.json"
    if not path.exists():
        return None
    for group in json.loads(path.read_text())["groups"]:
        stratum = group.get("stratum", "")
        wanted = member.stratum in stratum if member.stratum else "completion=x0" not in stratum
        if group["algo"] == member.algo and wanted and group.get("contrast"):
            return group
    return None


def guard(group: dict, metric: str) -> str:
    """The group's mean of a guard metric, or a dash where the runs did not record it."""
    values = (group.get("guards") or {}).get(metric)
    return f"{values['mean']:.3f}" if values else "-"


def main(analysis: Path) -> None:
    """Print the family's table: each contrast, its p, its adjusted p (or bound) and what holds."""
    found = [(member, find(member, analysis)) for member in FAMILY]
    present = [(member, group) for member, group in found if group is not None]
    pending = [member.title for member, group in found if group is None]
    p_values = [group["contrast"]["p_value"] for _, group in present]
    if not pending:
        reject, adjusted, _, _ = multipletests(p_values, alpha=ALPHA, method="holm")
        heading = f"Holm p (family of {len(FAMILY)})"
    else:
        adjusted = [min(1.0, len(FAMILY) * p) for p in p_values]
        reject = [p < ALPHA for p in adjusted]
        heading = f"bound on Holm p: min(1, {len(FAMILY)}p)"
    print(
        f"| contrast | runs | difference [95% CI] | Hedges g | p | {heading} | strict accuracy | extra objects | "
        "what holds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (member, group), holds, p in zip(present, reject, adjusted, strict=True):
        contrast = group["contrast"]
        if holds:
            verdict = "higher" if contrast["difference"] > 0 else "lower"
        else:
            verdict = "not established" + (" yet" if pending else "")
        print(
            f"| {member.title} | {len(group['final']['values'])} | {contrast['difference']:+.3f} "
            f"[{contrast['low']:+.3f}, {contrast['high']:+.3f}] | {contrast['hedges_g']:+.2f} | "
            f"{contrast['p_value']:.4f} | {p:.4f} | {guard(group, 'test_strict_accuracy')} | "
            f"{guard(group, 'test_extra_object_rate')} | {verdict} |"
        )
    baselines = {}
    for member, group in present:
        name = group["contrast"]["baseline"]
        groups = json.loads((analysis / member.report / "compare.json").read_text())["groups"]
        baselines.setdefault(name, next((g for g in groups if g["name"] == name), None))
    for name, group in baselines.items():
        if group is not None:
            print(
                f"\nBaseline {name}: {len(group['final']['values'])} runs, final partial score "
                f"{group['final']['mean']:.3f}, strict accuracy {guard(group, 'test_strict_accuracy')}, extra objects "
                f"{guard(group, 'test_extra_object_rate')}."
            )
    if pending:
        print(
            f"\nInterim: {len(present)} of {len(FAMILY)} members are in. Pending: {', '.join(pending)}. "
            "The adjusted column is the Bonferroni bound; Holm over the family is computed when every member is in."
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "analysis")
