#!/usr/bin/env bash
# The README's main job and its Flow-GRPO counterpart on the task defaults (40 iterations, test evaluation every 10),
# three seeds each, with the current dense reward: the numbers the README's "main job learns" paragraphs quote.
# Resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
creditzoo sweep --algo tp_grpo_strict --algo flow_grpo --env geneval --seeds 0,1,2 --jobs "${JOBS:-2}" --out runs
