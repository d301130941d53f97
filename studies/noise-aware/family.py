"""The confirmatory family as README.md declares it: Holm over four contrasts, alpha 0.05, and the declared goal.

Usage: ``python studies/noise-aware/family.py [ANALYSIS_DIR]`` (default: this folder's ``analysis``).

The family is tp_prob - tp_grpo_strict and tp_prob - flow_grpo at Gaussian SD 0.05 and at SD 0.2, on the final
partial score at iteration 40. ``analysis/sdS/compare.json`` (``report.sh``) holds both contrasts at SD S:
tp_prob's group contrast against flow_grpo, and its ``--primary`` contrast against tp_grpo_strict. This script reads
their unadjusted Welch p values and adjusts the family with statsmodels' Holm. It computes nothing else.

While a level is still training, the family is incomplete and the table shows each available contrast's
Holm p with every pending member at p = 1 instead, a bound (``studies/family_table.py`` says why no pending result
can raise the final Holm p above it).

The goal (declared): at SD 0.2 tp_prob beats both baselines with an adjusted p below 0.05, and at SD 0 it does not
lose to tp_grpo_strict. At SD 0, told SD 0, tp_prob is tp_grpo_strict bit for bit, so the SD-0 line compares the
two groups' per-seed final scores (``analysis/clean/compare.json``) and says whether they are identical.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from family_table import print_family  # noqa: E402  (studies/family_table.py)

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
    by_level = {level: contrasts(analysis, level) for level in LEVELS}
    rows = [row for level in LEVELS for row in by_level[level]]
    pending = [level for level in LEVELS if not by_level[level]]
    established = print_family(rows, 4, ALPHA, tuple(f"SD {level}" for level in pending))
    beats = {
        title: holds and contrast["difference"] > 0
        for (title, contrast, _), holds in zip(rows, established, strict=True)
    }
    at_02 = [title for title in beats if title.startswith("SD 0.2:")]
    # still possible: every SD 0.2 contrast positive with p < alpha (Holm never adjusts a p below itself)
    possible = all(c["difference"] > 0 and c["p_value"] < ALPHA for t, c, _ in rows if t.startswith("SD 0.2:"))
    print()
    if at_02:
        met = all(beats[title] for title in at_02)
        undecided = "not established yet (Holm decides once both levels are in)"
        status = "met" if met else (undecided if pending and possible else "not met")
        print(f"Goal at SD 0.2 ({SCHEME} beats both baselines, adjusted p < {ALPHA}): {status}.")
    print(clean_check(analysis))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "analysis")
