#!/usr/bin/env bash
# fine_tune(2) of an older checkout against this one, interleaved: old, new, old, new, ... (3 pairs).
# Usage: bash benchmarks/compare_trees.sh /path/to/old/checkout/src   (e.g. a `git worktree add` of a commit)
# Each half runs benchmarks/compare.py (plain loop + unfreeze, fine_tune only) with PYTHONPATH pointing
# at one tree; the per-run JSON lands in benchmarks/.work/trees/{before,after}_N/compare.json.
set -euo pipefail
cd "$(dirname "$0")/.."
old_src="${1:?give the src/ folder of the older checkout}"
for round in 1 2 3; do
    PYTHONPATH="$old_src" .venv/bin/python benchmarks/compare.py --runners plain,unfreeze --scenarios fine_tune \
        --repeats 1 --out "benchmarks/.work/trees/before_$round"
    .venv/bin/python benchmarks/compare.py --runners plain,unfreeze --scenarios fine_tune --repeats 1 \
        --out "benchmarks/.work/trees/after_$round"
done
.venv/bin/python - <<'PY'
import glob, json, statistics
runs = {}
for path in sorted(glob.glob("benchmarks/.work/trees/*/compare.json")):
    tree = path.split("/")[-2].split("_")[0]
    results = {r["config"]: r for r in json.load(open(path))["results"]}
    for config, r in results.items():
        runs.setdefault((tree, config), []).append((r["wall_s"], r["wall_s"] / results["default"]["wall_s"], r["error"]))
print("| tree | runner config | median wall s | runs | median × plain | error |")
print("|---|---|---:|---|---:|---:|")
for (tree, config), values in sorted(runs.items()):
    print(f"| {tree} | {config} | {statistics.median(v[0] for v in values):.1f} | "
          f"{' / '.join(f'{v[0]:.1f}' for v in values)} | {statistics.median(v[1] for v in values):.2f} | "
          f"{values[0][2]:.1%} |")
PY
