#!/usr/bin/env bash
# Picking the scheme to train (README.md, "Picking the scheme"): counterfactual replay, no training, a few minutes.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
run=../verdict/runs-primary/tp_grpo_strict-seed0
algos=(); for a in tp_margin tp_prob incremental_rts tp_grpo_strict_rts tp_grpo_strict incremental flow_grpo; do algos+=(--algo "$a"); done
noise=(); for n in gaussian:0 gaussian:0.02 gaussian:0.05 gaussian:0.1 gaussian:0.2 bias:0.1 student_t:3:0.05 flip:0.1 quantize:0.05; do noise+=(--noise "$n"); done
creditzoo analyze robustness "$run" "${algos[@]}" "${noise[@]}" --repeats 16 --seed 0 --no-theory --out pick
