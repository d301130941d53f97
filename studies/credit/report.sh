#!/usr/bin/env bash
# The study's report: learning curves and costs to reach Flow-GRPO's final score (compare), the turning points of
# one TP-GRPO (strict) run, and what Gaussian reward noise does to each scheme's credit on that run's recorded
# clean completion rewards (robustness). Reads what the runs recorded; samples nothing.
set -euo pipefail
cd "$(dirname "$0")"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
dirs=(runs)
[ -f runs-completion/manifest.json ] && dirs+=(runs-completion)
creditzoo analyze compare "${dirs[@]}" --baseline flow_grpo --out analysis/compare
creditzoo analyze turning-points runs/tp_grpo_strict-seed0 --out analysis/turning-points
creditzoo analyze robustness runs/tp_grpo_strict-seed0 --algo incremental --algo tp_grpo --algo tp_grpo_strict \
    --out analysis/robustness
