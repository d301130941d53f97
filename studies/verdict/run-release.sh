#!/usr/bin/env bash
# The release-faithful TP-GRPO rules (README.md, "Secondary"; issue 16), 10 seeds each, the same settings as run.sh.
# They did not exist at the study's frozen commit, so they train at a second frozen commit (README.md, "Frozen code,
# second commit"), at which tp_grpo_strict and flow_grpo train bit-identically to the first (checked, README.md).
#   git worktree add --detach ../release-code SECOND_COMMIT
#   (cd ../release-code && python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints-cpu.txt -e .)
#   STUDY_VENV=$PWD/../release-code/.venv bash studies/verdict/run-release.sh
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
creditzoo sweep --algo tp_grpo_release --algo tp_grpo_strict_release --env geneval --seeds 0,1,2,3,4,5,6,7,8,9 \
    --eval-every 5 --jobs "${JOBS:-2}" --out runs-release
