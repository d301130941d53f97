#!/usr/bin/env bash
# Stage the finished runs of every study sweep (status "finished" in its manifest) and the manifests; runs still
# training are left out, so a commit never holds a half-written run.
set -euo pipefail
cd "$(dirname "$0")"
for manifest in */runs*/manifest.json */pilot*/manifest.json; do  # every sweep: runs-* and the pilots
    [ -f "$manifest" ] || continue
    sweep=$(dirname "$manifest")
    git add "$manifest"
    python3 - "$manifest" <<'PY' | while read -r run; do git add "$sweep/$run"; done
import json, sys
for run in json.load(open(sys.argv[1]))["runs"]:
    if run["status"] == "finished":
        print(run["dir"])
PY
done
