#!/usr/bin/env bash
# Stage the finished runs of every study sweep (status "finished" in its manifest), their logs, and the manifests;
# runs still training are left out, so a commit never holds a half-written run.
set -euo pipefail
cd "$(dirname "$0")"
finished_runs() {  # finished_runs MANIFEST: the directory of each finished run, one a line
    python3 -c '
import json, sys
for run in json.load(open(sys.argv[1]))["runs"]:
    if run["status"] == "finished":
        print(run["dir"])
' "$1"
}
for manifest in */runs*/manifest.json */pilot*/manifest.json; do  # every sweep: runs-* and the pilots
    [ -f "$manifest" ] || continue
    sweep=$(dirname "$manifest")
    git add "$manifest"
    finished_runs "$manifest" | while read -r run; do
        git add "$sweep/$run"
        if [ -f "$sweep/logs/$run.log" ]; then git add "$sweep/logs/$run.log"; fi
    done
done
