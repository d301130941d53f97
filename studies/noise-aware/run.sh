#!/usr/bin/env bash
# The training part of the noise-aware study (README.md): the picked scheme, tp_prob, told the true per-call SD, at
# Gaussian SD 0.2, 0.05 and 0 (10 seeds each, the verdict study's settings), then the 3-seed pilots. The baselines at
# SD 0, 0.05 and 0.2 are the verdict study's runs. Resumable: run it again; finished runs are skipped.
# From a frozen checkout (README.md names the commit):
#   git worktree add --detach ../noiseaware-code FROZEN_COMMIT
#   (cd ../noiseaware-code && python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints-cpu.txt -e .)
#   STUDY_VENV=$PWD/../noiseaware-code/.venv bash studies/noise-aware/run.sh
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
common=(--env geneval --eval-every 5 --jobs "${JOBS:-2}")
ten=(--seeds 0,1,2,3,4,5,6,7,8,9)
creditzoo sweep --algo tp_prob --reward-noise gaussian:0.2 --reward-noise-sd 0.2 "${ten[@]}" "${common[@]}" --out runs-sd0.2
creditzoo sweep --algo tp_prob --reward-noise gaussian:0.05 --reward-noise-sd 0.05 "${ten[@]}" "${common[@]}" --out runs-sd0.05
creditzoo sweep --algo tp_prob "${ten[@]}" "${common[@]}" --out runs-sd0
# pilots, 3 seeds: a per-prompt bias (told 0: it cancels in every increment) and heavy tails (told SCALE*sqrt(3))
three=(--seeds 0,1,2)
creditzoo sweep --algo tp_prob --algo tp_grpo_strict --algo flow_grpo --reward-noise bias:0.1 "${three[@]}" "${common[@]}" \
    --out pilot-bias
creditzoo sweep --algo tp_grpo_strict --algo flow_grpo --reward-noise student_t:3:0.05 "${three[@]}" "${common[@]}" \
    --out pilot-student_t
creditzoo sweep --algo tp_prob --reward-noise student_t:3:0.05 --reward-noise-sd 0.0866 "${three[@]}" "${common[@]}" \
    --out pilot-student_t-tp_prob
