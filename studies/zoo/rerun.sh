#!/usr/bin/env bash
# The zoo study's reruns after the fidelity revisions of issue 16 (docs/math.md sections 9.3 and 9.4, revised
# 2026-12-04), on the zoo study's schedule (run.sh: 20 iterations, test evaluation every 5, three seeds, the geneval
# task's defaults otherwise) and into new directories, so the first runs stay beside them:
#   runs-tree-release/     branch_grpo with the release's defaults: sample-std depth normalisation, mean fusion, iid
#                          split noise (the first runs, runs-tree/, used the population std);
#   runs-tree-depthprune/  the same with depth pruning, the paper's headline row (configs/branch_depth_prune.toml);
#   runs-tree-code4/       split_noise=code:4, the launch script's scaled split noise: off-policy on purpose, a
#                          reproduction only (configs/branch_code4.toml);
#   runs-g2rpo-grid/       g2rpo on the revised completion grid (one Euler step j+1 -> j+2, then stride g).
# branch_grpo's default split set {0, 2, 4, 6} makes 16 leaves, so its runs train 4 prompts x 16 leaves (64 final
# images per iteration, as every other run; the group size now follows the tree, and is given here only to be
# explicit). Every run ends with the paired final evaluation (eval/final.json, eval/base.json).
#
# Resumable: run it again after any interruption; finished runs are skipped, interrupted ones continue. Run it from
# a frozen checkout so that edits made while it trains cannot reach it (studies/README.md):
#   git worktree add --detach ../zoo-code FROZEN_COMMIT   # fe8a25c9f75723de8e51d7507c4d955baa20204a for the runs committed here (config.json has it)
#   (cd ../zoo-code && python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints-cpu.txt -e .)
#   STUDY_VENV=$PWD/../zoo-code/.venv bash studies/zoo/rerun.sh
# Cost on the 2-core VM of run.sh: about as long as run.sh's branch_grpo and g2rpo sweeps, 12 runs in all.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
common=(--env geneval --seeds 0,1,2 --iterations 20 --eval-every 5 --jobs "${JOBS:-2}")
tree=(--algo branch_grpo --group-size 16 --prompts-per-iteration 4)
creditzoo sweep "${tree[@]}" "${common[@]}" --out runs-tree-release
creditzoo sweep "${tree[@]}" --config configs/branch_depth_prune.toml "${common[@]}" --out runs-tree-depthprune
creditzoo sweep "${tree[@]}" --config configs/branch_code4.toml "${common[@]}" --out runs-tree-code4
creditzoo sweep --algo g2rpo "${common[@]}" --out runs-g2rpo-grid
