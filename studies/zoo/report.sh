#!/usr/bin/env bash
# The zoo study's report: the new entries' learning curves and costs beside the credit study's Flow-GRPO and
# TP-GRPO (strict) runs (same schedule, same seeds). Reads what the runs recorded; samples nothing.
set -euo pipefail
cd "$(dirname "$0")"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
creditzoo analyze compare runs runs-tree ../credit/runs --baseline flow_grpo --out analysis/compare
