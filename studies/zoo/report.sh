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
# The reruns after the fidelity revisions (issue 16) and the probes of why branch_grpo declines (rerun.sh, probe.sh):
# every run ends with the paired final evaluation, so these are compared among themselves, against the 4 x 16
# flow_grpo control rerun with it (runs-control-final); g2rpo on its new grid (8 x 8) is read against the base model
# in the README. Holm over the five contrasts.
creditzoo analyze compare runs-tree-release runs-tree-depthprune runs-tree-code4 runs-tree-pruneshallow \
    runs-control-final runs-control-late --baseline 'flow_grpo algo_options={} window_size=none window_start=0' \
    --label 'flow_grpo options={} window=none window start=0=flow_grpo 4x16' \
    --label 'flow_grpo options={} window=5 window start=4=flow_grpo 4x16, steps 4-8' \
    --label 'branch_grpo options={} window=none window start=0=branch_grpo (release defaults)' \
    --label 'branch_grpo options={"depth_prune": "9"} window=none window start=0=branch_grpo, depth_prune 9' \
    --label 'branch_grpo options={"depth_prune": "1,2,3,4"} window=none window start=0=branch_grpo, depths 1-4 untrained' \
    --label 'branch_grpo options={"split_noise": "code:4"} window=none window start=0=branch_grpo, split_noise code:4' \
    --out analysis/reruns
