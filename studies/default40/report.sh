#!/usr/bin/env bash
# The report: learning curves and the cost to reach Flow-GRPO's final score (compare), and the per-seed table.
set -euo pipefail
cd "$(dirname "$0")"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
creditzoo analyze compare runs --baseline flow_grpo --out analysis
python3 ../table.py runs > analysis/table.md
cat analysis/table.md
