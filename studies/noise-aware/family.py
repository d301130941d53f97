"""The confirmatory family as README.md declares it: Holm over four contrasts, alpha 0.05, and the declared goal.

Usage: ``python studies/noise-aware/family.py [ANALYSIS_DIR]`` (default: this folder's ``analysis``).

The family is tp_prob - tp_grpo_strict and tp_prob - flow_grpo at Gaussian SD 0.05 and at SD 0.2, on the final
partial score at iteration 40. ``analysis/sdS/compare.json`` (``report.sh``) holds both contrasts at SD S:
tp_prob's group contrast against flow_grpo, and its ``--primary`` contrast against tp_grpo_strict. This script reads
their unadjusted Welch p values and adjusts the family with statsmodels' Holm. It computes nothing else.

While a level is still training, the family is incomplete and Holm cannot be computed yet. Each available contrast
then shows the Bonferroni bound min(1, 4p). A Holm-adjusted p is never larger than m times its own p, so a
contrast whose bound is below alpha stays significant whatever the pending contrasts show.

The goal (declared): at SD 0.2 tp_prob beats both baselines with an adjusted p below 0.05, and at SD 0 it does not
lose to tp_grpo_strict. At SD 0, told SD 0, tp_prob is tp_grpo_strict bit for bit, so the SD-0 line compares the
two groups' per-seed final scores (``analysis/clean/compare.json``) and says whether they are identical.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from statsmodels.stats.multitest import multipletests

ALPHA = 0.05
LEVELS = ("0.05", "0.2")
SCHEME = "tp_prob"


def contrasts(analysis: Path, level: str) -> list[tuple[str, dict, dict]]:
    """(title, contrast, tp_prob's group) for both contrasts at ``level``; empty while the level is not analysed."""
    path = analysis / f"sd{level}" / "compare.json"
    if not path.exists():
        return []
    report = json.loads(path.read_text())
    group = next((g for g in report["groups"] if g["algo"] == SCHEME), None)
    if group is None:
        return []
    primary = report.get("primary") or {}
    if primary.get("baseline", "").split(" ")[0] != "tp_grpo_strict":
        raise SystemExit(f"error: {path} has no --primary contrast {SCHEME}:tp_grpo_strict (rerun report.sh)")
    return [
        (f"SD {level}: {SCHEME} - tp_grpo_strict", primary, group),
        (f"SD {level}: {SCHEME} - flow_grpo", group["contrast"], group),
    ]


def guard(group: dict, metric: str) -> str:
    """The group's mean of a guard metric, or a dash where the runs did not record it."""
    values = (group.get("guards") or {}).get(metric)
    return f"{values['mean']:.3f}" if values else "-"


def clean_check(analysis: Path) -> str:
    """Whether tp_prob at SD 0 equals tp_grpo_strict's primary runs seed for seed (both groups' final scores)."""
    path = analysis / "clean" / "compare.json"
    if not path.exists():
        return "SD 0: not analysed yet (runs-sd0 still to train)."
    groups = {g["algo"]: g for g in json.loads(path.read_text())["groups"]}
    if SCHEME not in groups or "tp_grpo_strict" not in groups:
        return f"SD 0: {path} lacks a {SCHEME} or tp_grpo_strict group."
    ours, theirs = groups[SCHEME]["final"]["values"], groups["tp_grpo_strict"]["final"]["values"]
    if len(ours) != len(theirs):
        return f"SD 0: {len(ours)} {SCHEME} runs against {len(theirs)} tp_grpo_strict runs; not compared yet."
    largest = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    same = "identical" if largest == 0 else f"not identical (largest per-seed difference {largest:.2e})"
    return f"SD 0: {SCHEME}'s {len(ours)} final scores against tp_grpo_strict's, seed by seed: {same}."


def main(analysis: Path) -> None:
    """Print the family's table, what holds, and the goal's status."""
    rows = [row for level in LEVELS for row in contrasts(analysis, level)]
    pending = [level for level in LEVELS if not contrasts(analysis, level)]
    p_values = [contrast["p_value"] for _, contrast, _ in rows]
    if not pending:
        reject, adjusted, _, _ = multipletests(p_values, alpha=ALPHA, method="holm")
        heading = "Holm p (family of 4)"
    else:
        adjusted = [min(1.0, 4 * p) for p in p_values]
        reject = [p < ALPHA for p in adjusted]
        heading = "bound on Holm p: min(1, 4p)"
    print(
        f"| contrast | runs | difference [95% CI] | Hedges g | p | {heading} | strict accuracy | extra objects | "
        "what holds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    beats = {}
    for (title, contrast, group), holds, p in zip(rows, reject, adjusted, strict=True):
        verdict = ("higher" if contrast["difference"] > 0 else "lower") if holds else "not established"
        verdict += " yet" if pending and not holds else ""
        beats[title] = holds and contrast["difference"] > 0
        print(
            f"| {title} | {len(group['final']['values'])} | {contrast['difference']:+.3f} "
            f"[{contrast['low']:+.3f}, {contrast['high']:+.3f}] | {contrast['hedges_g']:+.2f} | "
            f"{contrast['p_value']:.4f} | {p:.4f} | {guard(group, 'test_strict_accuracy')} | "
            f"{guard(group, 'test_extra_object_rate')} | {verdict} |"
        )
    at_02 = [title for title in beats if title.startswith("SD 0.2:")]
    print()
    if at_02:
        met = all(beats[title] for title in at_02)
        undecided = "not established yet (Holm decides once both levels are in)"
        status = "met" if met else (undecided if pending else "not met")
        print(f"Goal at SD 0.2 ({SCHEME} beats both baselines, adjusted p < {ALPHA}): {status}.")
    print(clean_check(analysis))
    if pending:
        print(
            f"\nInterim: SD {', '.join(pending)} still training. The adjusted column is the Bonferroni bound; "
            "Holm over the family is computed when both levels are in."
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "analysis")
