#!/usr/bin/env bash
# The powered study's analyses (README.md declares the contrasts). Reads only what the runs recorded.
#   analysis/primary:   tp_grpo_strict vs flow_grpo (per iteration on the paired final evaluation, and at
#                       flow_grpo's model-evaluation budget on the in-run curve); README adjusts the two with Holm.
#   analysis/secondary: every secondary scheme against flow_grpo, Holm across the report's contrasts.
#   analysis/initial:   tp_grpo_strict against tp_grpo_strict_noinit (the initial-step extension), a member of the
#                       secondary family: secondary_family.py adjusts its p with analysis/secondary's under one Holm
#                       (analysis/secondary/family.md; an interim bound while members are still training).
#   analysis/noise:     flow_grpo and tp_grpo_strict within each noise level, and the interaction tests.
# The family scripts need statsmodels: run this with creditzoo's dev install (the README's), not a frozen study venv.
# Runs that have not finished yet are left out by the sweep's manifest status only when analysed per sweep: run it
# once every sweep of a part is complete.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
creditzoo analyze compare runs-primary --baseline flow_grpo --primary tp_grpo_strict:flow_grpo --budget model_evals \
    --out analysis/primary
if [ -d runs-secondary ]; then
    secondary=(runs-primary runs-secondary)
    [ -d runs-x0 ] && secondary+=(runs-x0)
    [ -d runs-tempflow ] && secondary+=(runs-tempflow)
    [ -d runs-release ] && secondary+=(runs-release)
    # runs-x0 makes the completion mode vary, so every group's name carries it: short labels for the report's figures
    labels=()
    if [ -d runs-x0 ]; then
        labels+=(--label "tp_grpo_strict completion=x0=tp_grpo_strict x0")
        for algo in flow_grpo tp_grpo_strict incremental tp_grpo tp_grpo_strict_noinit; do
            labels+=(--label "$algo completion=ode=$algo")
        done
        [ -d runs-tempflow ] && labels+=(--label "tempflow completion=ode=tempflow")
        [ -d runs-release ] && labels+=(--label "tp_grpo_release completion=ode=tp_grpo_release" \
            --label "tp_grpo_strict_release completion=ode=tp_grpo_strict_release")
    fi
    creditzoo analyze compare "${secondary[@]}" --baseline flow_grpo --budget model_evals "${labels[@]}" \
        --out analysis/secondary
    creditzoo analyze compare runs-primary runs-secondary --baseline tp_grpo_strict_noinit --budget model_evals \
        --out analysis/initial
fi
if [ -f analysis/secondary/compare.json ] && [ -f analysis/initial/compare.json ]; then
    python3 secondary_family.py analysis > analysis/secondary/family.md  # the declared family of eight (or interim)
fi
if [ -d runs-noise ]; then
    creditzoo analyze compare runs-primary runs-noise --baseline flow_grpo --budget model_evals --out analysis/noise
fi
if [ -f analysis/noise/compare.json ]; then
    python3 noise_family.py analysis/noise/compare.json > analysis/noise/family.md  # the declared family of two
fi
