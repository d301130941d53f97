#!/usr/bin/env bash
# Probes of issue 16's "why" (README.md, "Reruns after the fidelity revisions"), on the zoo study's schedule from the
# same frozen checkout as rerun.sh (fe8a25c9; see its header), three seeds each:
#   runs-tree-pruneshallow/  branch_grpo, release defaults, depths 1-4 untrained (configs/branch_prune_shallow.toml):
#                            does the decline live in the shallow depths, where a tree has 2 or 4 distinct nodes?
#   runs-control-final/      the flow_grpo control on the same 4 x 16 batch shape, rerun so that it ends with the
#                            paired final evaluation (the first control, runs-control/, predates that protocol).
#   runs-control-late/       that control trained on window steps 4-8 only (steps 0-3 ODE, so a prompt's 16 samples
#                            share their first four steps): does training only late steps, from a shared prefix, make
#                            a chain fall too? (A tree's loss puts most of its weight on its late, 16-node depths.)
# Resumable, like every sweep.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
common=(--env geneval --seeds 0,1,2 --iterations 20 --eval-every 5 --jobs "${JOBS:-2}")
creditzoo sweep --algo branch_grpo --group-size 16 --prompts-per-iteration 4 --config configs/branch_prune_shallow.toml \
    "${common[@]}" --out runs-tree-pruneshallow
creditzoo sweep --algo flow_grpo --group-size 16 --prompts-per-iteration 4 "${common[@]}" --out runs-control-final
creditzoo sweep --algo flow_grpo --group-size 16 --prompts-per-iteration 4 --window-start 4 --window 5 \
    "${common[@]}" --out runs-control-late
