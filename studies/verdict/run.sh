#!/usr/bin/env bash
# The powered credit study (README.md declares it): 10 seeds per configuration, task defaults, 40 iterations,
# the final paired evaluation in every run. Order: the primary pair, the noise grid, the secondary schemes.
# Resumable: run it again after any interruption; finished runs are skipped, interrupted ones continue.
#
# Run it from a frozen checkout, so that edits made while it trains cannot reach it (studies/README.md):
#   git worktree add --detach ../verdict-code FROZEN_COMMIT
#   (cd ../verdict-code && python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints-cpu.txt -e .)
#   STUDY_VENV=$PWD/../verdict-code/.venv bash studies/verdict/run.sh
# FROZEN_COMMIT is the one named in README.md ("Frozen code"); every run records the commit it ran at.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
common=(--env geneval --seeds 0,1,2,3,4,5,6,7,8,9 --eval-every 5 --jobs "${JOBS:-2}")
# Arguments name the parts to train (default: all five, in this order); studies/queue.sh uses them to interleave
# other studies. Which parts run, and when, changes no run: each is a resumable sweep of its own.
parts=("${@:-primary noise secondary x0 tempflow}")
# shellcheck disable=SC2206
parts=(${parts[*]})
for part in "${parts[@]}"; do
    case "$part" in
        primary) creditzoo sweep --algo tp_grpo_strict --algo flow_grpo "${common[@]}" --out runs-primary ;;
        noise) creditzoo sweep --algo tp_grpo_strict --algo flow_grpo --grid reward_noise=gaussian:0.05,gaussian:0.2 \
            "${common[@]}" --out runs-noise ;;
        secondary) creditzoo sweep --algo incremental --algo tp_grpo --algo tp_grpo_strict_noinit "${common[@]}" \
            --out runs-secondary ;;
        x0) creditzoo sweep --algo tp_grpo_strict --grid completion=x0 "${common[@]}" --out runs-x0 ;;
        tempflow) creditzoo sweep --algo tempflow "${common[@]}" --out runs-tempflow ;;
        *) echo "run.sh: unknown part '$part' (choose from primary, noise, secondary, x0, tempflow)" >&2; exit 2 ;;
    esac
done
