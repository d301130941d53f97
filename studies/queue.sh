#!/usr/bin/env bash
# The background queue of study sweeps, in order, each from its own frozen checkout (studies/README.md). Every step
# is a resumable sweep, so running the queue again after any interruption skips what has finished.
#   setsid nohup bash studies/queue.sh >> studies/queue.log 2>&1 &
# A checkout that does not exist yet (its study is not declared) ends the queue there with one line.
set -uo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
step() {  # step NAME CHECKOUT SCRIPT
    local checkout="$root/../$2"
    if [ ! -x "$checkout/.venv/bin/creditzoo" ]; then
        echo "queue: stop before $1: no frozen checkout with a venv at $checkout (see $3's header)"; exit 0
    fi
    echo "queue: $1 ($(date -u +%FT%TZ))"
    STUDY_VENV="$checkout/.venv" bash "$3" || { echo "queue: $1 failed ($?)"; exit 1; }
}
# a study script still running from an earlier queue or started by hand: wait for it rather than run it twice
while pgrep -f "(verdict|zoo|noise-aware)/[a-z-]+\.sh" > /dev/null; do sleep 30; done
# The zoo reruns go first: 12 short runs (about half an hour) that finish an issue, before the verdict's long tail.
step "zoo reruns after the fidelity revisions" zoo-code zoo/rerun.sh
step "zoo probes of why branch_grpo declines" zoo-code zoo/probe.sh
step "verdict" verdict-code verdict/run.sh
step "verdict, release rules" release-code verdict/run-release.sh
step "noise-aware credit" noiseaware-code noise-aware/run.sh
