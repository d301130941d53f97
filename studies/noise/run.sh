#!/usr/bin/env bash
# The noisy-reward study on the toy geneval task (issue 8, second study): flow_grpo, incremental and tp_grpo_strict
# trained with Gaussian reward noise at 0, at SD 0.02 (about the median |R_{k+1} - R_k| of a TP-GRPO rollout, far below
# the within-group spread of final rewards) and at SD 0.2 (about the within-group spread of final rewards, 0.19),
# three seeds each, on the same shorter schedule as the credit study (20 iterations, test evaluation every 5).
#
# The noise-free runs are the credit study's (../credit/runs, same settings, deterministic on this CPU): they are
# copied in, except flow_grpo seed 0, which is trained again here as a check that a rerun reproduces them
# (report.sh compares the two metrics files). The costly TP-GRPO runs go first. Resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")"
[ -n "${STUDY_VENV:-}" ] && . "$STUDY_VENV/bin/activate"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
args=(--algo tp_grpo_strict --algo incremental --algo flow_grpo --grid reward_noise=none,gaussian:0.02,gaussian:0.2
      --env geneval --seeds 0,1,2 --iterations 20 --eval-every 5 --jobs "${JOBS:-2}" --out runs)
if [ ! -f runs/manifest.json ]; then
    python - <<'PY'
import json, shutil
from pathlib import Path
from creditzoo.cli.train import resolve_config
from creditzoo.sweep import expand, parse_grid, prepare

grid = parse_grid(["reward_noise=none,gaussian:0.02,gaussian:0.2"])
common = {"env": "geneval", "iterations": 20, "eval_every": 5}
runs = expand(["flow_grpo", "incremental", "tp_grpo_strict"], [0, 1, 2], grid,
              lambda values: resolve_config(None, {**common, **values}))
prepare("runs", runs, grid)
for run in runs:
    if run.config.reward_noise is not None or (run.algo, run.seed) == ("flow_grpo", 0):
        continue
    source = Path("../credit/runs") / f"{run.algo}-seed{run.seed}"
    stored = json.loads((source / "config.json").read_text())
    wanted = json.loads(json.dumps(run.config.to_dict()))
    differ = {k for k in wanted if stored.get(k) != wanted[k]}
    if differ:
        raise SystemExit(f"{source} was trained with other settings ({sorted(differ)}); train it here instead")
    shutil.copytree(source, Path("runs") / run.name)
    print("reused", source, "as", run.name)
PY
fi
creditzoo sweep "${args[@]}"
