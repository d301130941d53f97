#!/usr/bin/env bash
# The zoo study's report: the new entries' learning curves and costs beside the credit study's runs (same schedule,
# same seeds), and analysis/table.md (final scores per seed, gains, cost per iteration). Reads what the runs
# recorded; samples nothing.
set -euo pipefail
cd "$(dirname "$0")"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
labels=(
    --label 'flow_grpo G=8 prompts_per_iteration=8 std=group=flow_grpo'
    --label 'flow_grpo G=16 prompts_per_iteration=4 std=group=flow_grpo 4x16'
    --label 'branch_grpo G=16 prompts_per_iteration=4 std=group=branch_grpo'
    --label 'branch_grpo G=16 prompts_per_iteration=4 std=none=branch_grpo no std'
    --label 'branch_grpo G=16 prompts_per_iteration=4 std=global=branch_grpo global std'
)
for algo in dense_value tempflow g2rpo incremental tp_grpo tp_grpo_strict; do
    labels+=(--label "$algo G=8 prompts_per_iteration=8 std=group=$algo")
done
creditzoo analyze compare runs runs-tree runs-tree-stdnone runs-tree-stdglobal runs-control ../credit/runs --baseline 'flow_grpo group_size=8 prompts_per_iteration=8 std_mode=group' \
    "${labels[@]}" --out analysis/compare
python3 ../table.py runs runs-tree runs-tree-stdnone runs-tree-stdglobal runs-control ../credit/runs > analysis/table.md
cat analysis/table.md
