#!/usr/bin/env bash
# The zoo study's report: the new entries' learning curves and costs beside the credit study's runs (same schedule,
# same seeds), and analysis/table.md (final scores per seed, gains, cost per iteration). Reads what the runs
# recorded; samples nothing.
set -euo pipefail
cd "$(dirname "$0")"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
creditzoo analyze compare runs runs-tree runs-tree-stdnone runs-tree-stdglobal runs-control ../credit/runs --baseline 'flow_grpo group_size=8 prompts_per_iteration=8 std_mode=group' \
    --out analysis/compare
python3 ../table.py runs runs-tree runs-tree-stdnone runs-tree-stdglobal runs-control ../credit/runs > analysis/table.md
cat analysis/table.md
