#!/usr/bin/env bash
# The credit-assignment study on the toy geneval task (issue 8): four credit schemes, and TP-GRPO (strict) with the
# two cheaper completion modes, three seeds each. A shorter schedule than the task default (20 iterations instead of
# 40, test evaluation every 5) so that the 18 runs fit a few hours of a 2-core CPU. Resumable: run it again to finish
# interrupted or missing runs.
set -euo pipefail
cd "$(dirname "$0")"
# run from a frozen checkout of the code (STUDY_VENV) so merges made while the study runs do not reach it
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
common=(--env geneval --seeds 0,1,2 --iterations 20 --eval-every 5 --jobs 2)
creditzoo sweep --algo flow_grpo --algo incremental --algo tp_grpo --algo tp_grpo_strict "${common[@]}" --out runs
creditzoo sweep --algo tp_grpo_strict --grid completion=x0,ode:2 "${common[@]}" --out runs-completion
