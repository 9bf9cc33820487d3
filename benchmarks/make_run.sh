#!/usr/bin/env bash
# Time `make run` on a fresh clone of this repository: setup (venv + install) and the run itself.
# Usage: benchmarks/make_run.sh [REPO]   — prints the timings and appends nothing anywhere.
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/stylepipe"
cd "$work/stylepipe"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -m), $(python3 --version)"
start=$(date +%s.%N)
make setup >/dev/null
mid=$(date +%s.%N)
make run 2>run.log
end=$(date +%s.%N)
python3 - "$start" "$mid" "$end" <<'PY'
import json, sys
start, mid, end = map(float, sys.argv[1:])
report = json.load(open("outputs/report.json"))
print(f"setup (venv + pip install): {mid - start:.0f} s")
print(f"run (stylepipe run pipeline.yaml): {end - mid:.0f} s")
print(f"make run total: {end - start:.0f} s")
print("summary:", json.dumps(report["summary"]), "style_targets:", json.dumps(report["style_targets"]))
for item in report["items"]:
    print(f"  {item['status']:7s} {item['seconds']:6.1f} s  style loss {item['loss']['style']:.3g}  {item['output']}")
PY
