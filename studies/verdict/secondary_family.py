"""The secondary family as README.md declares it: Holm over its eight contrasts, alpha 0.05.

Usage: ``python studies/verdict/secondary_family.py [ANALYSIS_DIR]`` (default: this folder's ``analysis``).

The declaration names eight contrasts, each on the final partial score at equal iterations: ``incremental``,
``tp_grpo``, ``tp_grpo_strict_noinit``, ``tp_grpo_strict --completion x0``, ``tempflow``, ``tp_grpo_release`` and
``tp_grpo_strict_release`` against ``flow_grpo`` (``analysis/secondary/compare.json``), and ``tp_grpo_strict``
against ``tp_grpo_strict_noinit`` (``analysis/initial/compare.json``). ``creditzoo analyze compare`` adjusts over
the tests of its own report, which is not this family. This script reads each contrast's unadjusted Welch p value and
adjusts the family with statsmodels' Holm. It computes nothing else.

While some members are still training, the family is incomplete and the table shows each available contrast's
Holm p with every pending member at p = 1 instead, a bound (``studies/family_table.py`` says why no pending result
can raise the final Holm p above it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from family_table import guard, print_family  # noqa: E402  (studies/family_table.py)

ALPHA = 0.05


class Member(NamedTuple):
    """One declared contrast: where it is reported and how its group is found there."""

    title: str
    report: str  # the analysis folder holding compare.json
    algo: str
    completion: str = "ode"  # the group's completion mode (the task default, or x0 for the one member that sets it)


FAMILY = (
    Member("incremental vs flow_grpo", "secondary", "incremental"),
    Member("tp_grpo vs flow_grpo", "secondary", "tp_grpo"),
    Member("tp_grpo_strict_noinit vs flow_grpo", "secondary", "tp_grpo_strict_noinit"),
    Member("tp_grpo_strict --completion x0 vs flow_grpo", "secondary", "tp_grpo_strict", "x0"),
    Member("tempflow vs flow_grpo", "secondary", "tempflow"),
    Member("tp_grpo_release vs flow_grpo", "secondary", "tp_grpo_release"),
    Member("tp_grpo_strict_release vs flow_grpo", "secondary", "tp_grpo_strict_release"),
    Member("tp_grpo_strict vs tp_grpo_strict_noinit", "initial", "tp_grpo_strict"),
)


def load_groups(analysis: Path) -> dict[str, list[dict]]:
    """Each report the family reads (``secondary``, ``initial``) -> its groups; a report not written yet is absent."""
    paths = {report: analysis / report / "compare.json" for report in {member.report for member in FAMILY}}
    return {report: json.loads(path.read_text())["groups"] for report, path in paths.items() if path.exists()}


def find(member: Member, groups: dict[str, list[dict]]) -> dict | None:
    """The group of ``member`` in its report, with its contrast, or None while it is not there.

    The completion mode is read from the group's recorded configuration: ``analyze compare`` names a group by the
    settings that vary across the report (``tp_grpo_strict completion=x0``), which is not a grid stratum, since no
    baseline run shares that setting.
    """
    for group in groups.get(member.report, []):
        completion = group.get("config", {}).get("completion", "ode")
        if group["algo"] == member.algo and completion == member.completion and group.get("contrast"):
            return group
    return None


def main(analysis: Path) -> None:
    """Print the family's table: each contrast, its p, its adjusted p (or bound) and what holds."""
    groups = load_groups(analysis)
    found = [(member, find(member, groups)) for member in FAMILY]
    present = [(member, group) for member, group in found if group is not None]
    pending = [member.title for member, group in found if group is None]
    print_family(
        [(member.title, group["contrast"], group) for member, group in present], len(FAMILY), ALPHA, tuple(pending)
    )
    baselines = {}
    for member, group in present:
        name = group["contrast"]["baseline"]
        # a contrast names its baseline by the group's label (its identity); "name" is the display name (--label)
        baselines.setdefault(name, next((g for g in groups[member.report] if g["label"] == name), None))
    for name, group in baselines.items():
        if group is not None:
            print(
                f"\nBaseline {name}: {len(group['final']['values'])} runs, final partial score "
                f"{group['final']['mean']:.3f}, strict accuracy {guard(group, 'test_strict_accuracy')}, extra objects "
                f"{guard(group, 'test_extra_object_rate')}."
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "analysis")
