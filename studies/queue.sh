#!/usr/bin/env bash
# The background queue of study sweeps, in order, each from its own frozen checkout (studies/README.md). Every step
# is a resumable sweep, so running the queue again after any interruption skips what has finished.
#   setsid nohup bash studies/queue.sh >> studies/queue.log 2>&1 &
# A checkout that does not exist yet (its study is not declared) ends the queue there with one line.
set -uo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
step() {  # step NAME CHECKOUT SCRIPT [ARGS...]
    local checkout="$root/../$2"
    if [ ! -x "$checkout/.venv/bin/creditzoo" ]; then
        echo "queue: stop before $1: no frozen checkout with a venv at $checkout (see $3's header)"; exit 0
    fi
    echo "queue: $1 ($(date -u +%FT%TZ))"
    STUDY_VENV="$checkout/.venv" bash "$3" "${@:4}" || { echo "queue: $1 failed ($?)"; exit 1; }
}
# a study script still running from an earlier queue or started by hand: wait for it rather than run it twice
while pgrep -f "(verdict|zoo|noise-aware)/[a-z-]+\.sh" > /dev/null; do sleep 30; done
# The zoo reruns go first: 12 short runs (about half an hour) that finish an issue, before the verdict's long tail.
step "zoo reruns after the fidelity revisions" zoo-code zoo/rerun.sh
step "zoo probes of why branch_grpo declines" zoo-code zoo/probe.sh
# The verdict's secondary family first (it was training when the queue last stopped), then the noise-aware training
# (#18; 48 runs, about 4 hours), so that a shorter study finishes before the verdict's long tail: the release rules
# (20 runs), then x0 completion and tempflow (10 runs each, about 4x a flow_grpo run). The order changes no run.
step "verdict, primary, noise and secondary" verdict-code verdict/run.sh primary noise secondary
step "noise-aware credit" noiseaware-code noise-aware/run.sh
step "verdict, release rules" release-code verdict/run-release.sh
step "verdict, x0 completion and tempflow" verdict-code verdict/run.sh x0 tempflow
