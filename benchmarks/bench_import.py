"""How long `import unfreeze` takes, and which heavy packages it pulls in; optionally against another tree.

    .venv/bin/python benchmarks/bench_import.py                       # this checkout, 7 fresh processes
    .venv/bin/python benchmarks/bench_import.py --baseline /tmp/old/src   # interleaved with an older tree

Each measurement is a fresh interpreter (nothing cached in the process); runs of the two trees
alternate, so machine noise hits both alike, and the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PROBE = ("import sys, time; start = time.perf_counter(); import unfreeze; "
         "print(time.perf_counter() - start, [m for m in ('matplotlib', 'scipy', 'torchmetrics', 'tensorboard', "
         "'mlflow', 'pandas', 'fastcore') if m in sys.modules])")


def measure(src: Path) -> tuple[float, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    seconds, modules = out.split(" ", 1)
    return float(seconds), eval(modules)  # our own probe's list literal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="the src/ folder of another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    trees = {"this": SRC, **({"baseline": args.baseline} if args.baseline else {})}
    times: dict[str, list[float]] = {name: [] for name in trees}
    heavy: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, src in trees.items():
            seconds, modules = measure(src)
            times[name].append(seconds)
            heavy[name] = modules
    result = {name: {"median_s": round(statistics.median(values), 3), "runs_s": [round(v, 3) for v in values],
                     "heavy_modules_loaded": heavy[name]} for name, values in times.items()}
    if args.baseline:
        result["ratio_this_over_baseline"] = round(result["this"]["median_s"] / result["baseline"]["median_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
