#!/usr/bin/env bash
# The new zoo entries trained on the toy geneval task (issue 10): dense_value, tempflow, g2rpo and branch_grpo, three
# seeds each, on the credit study's schedule (20 iterations, test evaluation every 5) so that the numbers sit beside
# ../credit's. Everything else is the task default (8 prompts x 8 samples, T = 10, K = 9, lr 3e-3, clip 1e-3), except
# branch_grpo: its default split set {0, 2, 4, 6} makes a tree of 2^4 = 16 leaves, so it trains groups of 16 on 4
# prompts per iteration (64 final images per iteration, as every other run). Resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
common=(--env geneval --seeds 0,1,2 --iterations 20 --eval-every 5 --jobs "${JOBS:-2}")
creditzoo sweep --algo dense_value --algo tempflow --algo g2rpo "${common[@]}" --out runs
creditzoo sweep --algo branch_grpo --group-size 16 --prompts-per-iteration 4 "${common[@]}" --out runs-tree
# A control for branch_grpo's batch shape: flow_grpo on the same 4 prompts x 16 samples per iteration.
creditzoo sweep --algo flow_grpo --group-size 16 --prompts-per-iteration 4 "${common[@]}" --out runs-control
# A probe of branch_grpo's failure: advantages without the per-depth standard deviation (with 2 nodes at a depth,
# standardising makes every advantage exactly +-1).
creditzoo sweep --algo branch_grpo --group-size 16 --prompts-per-iteration 4 --std-mode none "${common[@]}" \
    --out runs-tree-stdnone
# The same probe with the batch-wide std at each step (Flow-GRPO's default): advantages keep the scale of the leaf
# rewards' spread, and two nearly equal subtree means no longer give +-1.
creditzoo sweep --algo branch_grpo --group-size 16 --prompts-per-iteration 4 --std-mode global "${common[@]}" \
    --out runs-tree-stdglobal
