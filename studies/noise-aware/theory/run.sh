#!/usr/bin/env bash
# The misclassification theory beside the counterfactual measurement (issue 18; README.md here is the write-up).
# Replays recorded clean completion rewards; trains nothing, samples nothing. Each command takes a few minutes on 2 cores.
#   verdict/:  the verdict study's tp_grpo_strict seed 0 (40 iterations x 64 trajectories, K = 9); its rollout records
#              are in git (studies/.gitignore keeps them); VERDICT_RUN points elsewhere if wanted.
#   credit/:   the credit study's tp_grpo_strict seed 0 (20 iterations, records in git), for a second set of rollouts.
#   margin/:   tp_margin's rule predicted and measured beside tp_grpo_strict's, on the same run.
#   kinds/:    every scheme under biased, heavy-tailed, flipped and quantised noise (no theory: not Gaussian).
#   ablation.md: the exact prediction against two approximations (independent orderings; a clean trend), ablation.py.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
verdict=${VERDICT_RUN:-../../verdict/runs-primary/tp_grpo_strict-seed0}
credit=../../credit/runs/tp_grpo_strict-seed0
gaussian=(); for sd in 0 0.01 0.02 0.05 0.1 0.2; do gaussian+=(--noise "gaussian:$sd"); done
algos=(--algo flow_grpo --algo incremental --algo tp_grpo --algo tp_grpo_strict)
mkdir -p verdict kinds credit
if [ -d "$verdict/rollouts" ]; then
    creditzoo analyze robustness "$verdict" "${gaussian[@]}" "${algos[@]}" --repeats 16 --out verdict > verdict/table.txt
    kinds=(--noise bias:0.05 --noise bias:0.2 --noise student_t:3:0.01 --noise student_t:3:0.05 --noise flip:0.05
           --noise flip:0.2 --noise quantize:0.05 --noise quantize:0.2)
    creditzoo analyze robustness "$verdict" "${kinds[@]}" "${algos[@]}" --algo tp_grpo_release --repeats 8 \
        --out kinds > kinds/table.txt
    python3 ablation.py "$verdict" > ablation.md
    # tp_margin's rule (its margin c * sqrt(2) * SD follows each level's SD) predicted beside tp_grpo_strict's
    mkdir -p margin
    creditzoo analyze robustness "$verdict" "${gaussian[@]}" --algo tp_grpo_strict --algo tp_margin --repeats 16 \
        --out margin > margin/table.txt
else
    echo "no rollout records under $verdict: verdict/, kinds/ and ablation.md are left as they are" >&2
fi
creditzoo analyze robustness "$credit" "${gaussian[@]}" "${algos[@]}" --repeats 16 --out credit > credit/table.txt
