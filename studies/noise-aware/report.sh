#!/usr/bin/env bash
# The noise-aware study's analyses (README.md declares the family): tp_prob against the verdict study's
# tp_grpo_strict and flow_grpo at each noise level, then family.py's Holm over the four confirmatory contrasts.
#   analysis/sdS (S = 0.2, 0.05): the verdict's runs at Gaussian SD S (runs-noise) and tp_prob's (runs-sdS); every
#       group against flow_grpo, and tp_prob against tp_grpo_strict as the report's --primary contrast.
#   analysis/clean: tp_prob at SD 0 (told 0) against the verdict's primary runs, tp_grpo_strict as the baseline.
#   analysis/family.md: the confirmatory family (family.py; an interim bound while a level is still training).
#   analysis/pilot-*: the 3-seed pilots (no confirmatory test).
# A level's folder is analysed once its sweep exists; runs still training are left out (the table says which).
# family.py needs statsmodels: run this with creditzoo's dev install (the README's), not a frozen study venv.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
verdict=../verdict
for sd in 0.2 0.05; do
    [ -d "runs-sd$sd" ] || continue
    # the two commits' configurations differ in fields the verdict's lacks (reward_repeats): short display names
    creditzoo analyze compare "$verdict"/runs-noise/*-reward_noise=gaussian_"$sd"-seed* "runs-sd$sd" \
        --baseline flow_grpo --primary tp_prob:tp_grpo_strict --budget model_evals --out "analysis/sd$sd" \
        --label "flow_grpo reward_noise_sd=none reward_repeats=none=flow_grpo" \
        --label "tp_grpo_strict reward_noise_sd=none reward_repeats=none=tp_grpo_strict" \
        --label "tp_prob reward_noise_sd=$sd reward_repeats=1=tp_prob (told SD $sd)"
done
if [ -d runs-sd0 ]; then
    creditzoo analyze compare "$verdict/runs-primary" runs-sd0 --baseline tp_grpo_strict --budget model_evals \
        --out analysis/clean \
        --label "flow_grpo reward_noise_sd=none reward_repeats=none=flow_grpo" \
        --label "tp_grpo_strict reward_noise_sd=none reward_repeats=none=tp_grpo_strict" \
        --label "tp_prob reward_noise_sd=0.0 reward_repeats=1=tp_prob (told SD 0)"
fi
if ls analysis/sd*/compare.json > /dev/null 2>&1; then
    python3 family.py analysis > analysis/family.md
fi
# a pilot is analysed once every run of its sweeps has finished (a partial pilot can lack its baseline group)
finished() {  # finished SWEEP...: every run of each manifest has status "finished"
    python3 -c 'import json, sys; sys.exit(not all(r["status"] == "finished" for s in sys.argv[1:]
                for r in json.load(open(s + "/manifest.json"))["runs"]))' "$@"
}
for pilot in pilot-bias pilot-student_t; do
    [ -d "$pilot" ] || continue
    sweeps=("$pilot"); [ -d "$pilot-tp_prob" ] && sweeps+=("$pilot-tp_prob")
    if ! finished "${sweeps[@]}"; then echo "$pilot: still training, not analysed yet"; continue; fi
    labels=()  # short display names where the sweeps' configurations differ (tp_prob told an SD, the others not)
    [ "$pilot" = pilot-student_t ] && labels=(--label "flow_grpo reward_noise_sd=0.0=flow_grpo"
        --label "tp_grpo_strict reward_noise_sd=0.0=tp_grpo_strict" --label "tp_prob reward_noise_sd=0.0866=tp_prob (told SD 0.087)")
    creditzoo analyze compare "${sweeps[@]}" --baseline flow_grpo --out "analysis/$pilot" "${labels[@]}"
done
