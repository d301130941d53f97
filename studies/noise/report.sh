#!/usr/bin/env bash
# The noisy-reward study's report. Reads what the runs recorded; samples nothing.
#  - robustness: final clean test score against the training noise level, per scheme, and the counterfactual (noise
#    added to one noise-free TP-GRPO run's recorded clean rewards: how often each scheme's credit changes);
#  - compare: learning curves of the nine (scheme, noise) groups;
#  - table.md: per (scheme, noise) the final clean test score per seed and the clean training reward of the last
#    five iterations (the learning signal the noise hides);
#  - rerun.txt: the freshly trained noise-free flow_grpo seed 0 against the credit study's run it stands in for.
set -euo pipefail
cd "$(dirname "$0")"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
noise=(); for sd in 0 0.01 0.02 0.05 0.1 0.2; do noise+=(--noise "gaussian:$sd"); done
creditzoo analyze robustness runs "${noise[@]}" --algo flow_grpo --algo incremental --algo tp_grpo_strict \
    --out analysis/robustness
creditzoo analyze compare runs --baseline flow_grpo --out analysis/compare
python3 - <<'PY' > analysis/rerun.txt
import json

def flat(value):
    return [x for v in value for x in flat(v)] if isinstance(value, list) else [value]

def lines(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(path)]

new = lines("runs/flow_grpo-reward_noise=None-seed0/metrics.jsonl")
old = lines("../credit/runs/flow_grpo-seed0/metrics.jsonl")
assert [a.keys() for a in new] == [b.keys() for b in old], "the two runs logged different metrics"
gaps = [abs(x - y) for a, b in zip(new, old) for k in a for x, y in zip(flat(a[k]), flat(b[k]))
        if isinstance(x, float) and isinstance(y, float)]
counts = all(a[k] == b[k] for a, b in zip(new, old) for k in a if isinstance(a[k], int))
print(f"flow_grpo seed 0 without noise, trained again here vs the credit study's run: {len(new)} metrics lines, "
      f"integer fields equal: {counts}, largest difference of a float field: {max(gaps):.2g}; "
      f"final test partial {new[-1]['test_partial_score']:.6f} vs {old[-1]['test_partial_score']:.6f}")
PY
cat analysis/rerun.txt
python3 ../table.py runs > analysis/table.md
cat analysis/table.md
