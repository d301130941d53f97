#!/usr/bin/env bash
# The noise-aware study's analyses (README.md declares the family): tp_prob against the verdict study's
# tp_grpo_strict and flow_grpo at each noise level. README.md applies Holm over the four confirmatory contrasts.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
verdict=../verdict
[ -d runs-sd0.2 ] && creditzoo analyze compare "$verdict/runs-noise" runs-sd0.2 runs-sd0.05 --baseline flow_grpo \
    --budget model_evals --out analysis/noisy
[ -d runs-sd0 ] && creditzoo analyze compare "$verdict/runs-primary" runs-sd0 --baseline tp_grpo_strict \
    --budget model_evals --out analysis/clean
for pilot in pilot-bias pilot-student_t; do
    [ -d "$pilot" ] || continue
    extra=(); [ -d "$pilot-tp_prob" ] && extra=("$pilot-tp_prob")
    creditzoo analyze compare "$pilot" "${extra[@]}" --baseline flow_grpo --out "analysis/$pilot"
done
