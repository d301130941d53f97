"""The noise family as README.md declares it: Holm over its two interaction tests, alpha 0.05.

Usage: ``python studies/verdict/noise_family.py [analysis/noise/compare.json]`` (from this folder by default).

``creditzoo analyze compare`` adjusts over every test of its report (here three within-level contrasts and two
interactions); the declaration names a family of the two interactions only, (tp - flow at SD s) - (tp - flow at
SD 0) for s = 0.05 and 0.2. This reads their unadjusted Welch-Satterthwaite p values from ``compare.json`` and adjusts
them with statsmodels' Holm; it computes nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from statsmodels.stats.multitest import multipletests

ALPHA = 0.05


def main(path: Path) -> None:
    """Print each interaction with its unadjusted, report-adjusted and family-adjusted p and the verdict."""
    interactions = json.loads(path.read_text())["interactions"]
    if len(interactions) != 2:
        raise SystemExit(
            f"error: {path} holds {len(interactions)} interaction tests; the family has 2 "
            "(run it when both noise levels are in)"
        )
    reject, adjusted, _, _ = multipletests([row["p_value"] for row in interactions], alpha=ALPHA, method="holm")
    print("| level | lead at SD 0 | lead here | change [95% CI] | p | Holm p (family of 2) | the lead is removed |")
    print("|---|---|---|---|---|---|---|")
    for row, holds, p in zip(interactions, reject, adjusted, strict=True):
        removed = "yes" if holds and row["difference"] < 0 else "not established"
        print(
            f"| {row['level']} | {row['lead_reference']:+.3f} | {row['lead_level']:+.3f} | {row['difference']:+.3f} "
            f"[{row['low']:+.3f}, {row['high']:+.3f}] | {row['p_value']:.4f} | {p:.4f} | {removed} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "analysis" / "noise" / "compare.json")
