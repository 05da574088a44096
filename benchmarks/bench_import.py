"""How long `import unfreeze`, `unfreeze --help`, `--version` and `COMMAND --help` take, and which heavy
packages they load; optionally against another tree.

    .venv/bin/python benchmarks/bench_import.py                          # this checkout, 7 rounds
    .venv/bin/python benchmarks/bench_import.py --baseline /tmp/old/src  # interleaved with an older tree
    .venv/bin/python benchmarks/bench_import.py --baseline /tmp/old/src --write   # results/import.{json,md}

Each measurement is a fresh interpreter (nothing cached in the process), timed from outside: the wall
time a user waits, interpreter start included. A round runs every case once for every tree, in an
order that rotates from round to round, so machine noise (other processes on a busy machine) hits
all alike; the medians are compared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SRC = BENCH_DIR.parent / "src"
RESULTS = BENCH_DIR / "results"
HEAVY = ("torch", "torchvision", "timm", "matplotlib", "rich", "scipy", "pandas")

# case name -> the code a fresh interpreter runs; it then prints the heavy packages it loaded.
CASES = {
    "import unfreeze": "import unfreeze",
    "unfreeze --help": "from unfreeze.cli import main; main(['--help'])",
    "unfreeze --version": "from unfreeze.cli import main; main(['--version'])",
    "unfreeze train --help": "from unfreeze.cli import main; main(['train', '--help'])",
    "unfreeze predict --help": "from unfreeze.cli import main; main(['predict', '--help'])",
    "unfreeze export --help": "from unfreeze.cli import main; main(['export', '--help'])",
}
_PROBE = ("import contextlib, io, sys\nwith contextlib.redirect_stdout(io.StringIO()):\n    {code}\n"
          "print(','.join(m for m in {heavy!r} if m in sys.modules))")


def measure(src: Path, code: str) -> tuple[float, list[str]]:
    """Wall seconds of a fresh interpreter running `code` with `src` first on the path, and what it loaded."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PROBE.format(code=code, heavy=HEAVY)], env=env,
                         capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - start
    return seconds, [name for name in out.strip().split(",") if name]


def machine() -> dict[str, object]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2), "date": dt.datetime.now(dt.UTC).isoformat()}


def run(trees: dict[str, Path], repeats: int) -> dict[str, object]:
    machine_at_start = machine()
    pairs = [(tree, case) for case in CASES for tree in trees]
    times: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    heavy: dict[tuple[str, str], list[str]] = {}
    for round_ in range(repeats):
        shift = round_ % len(pairs)  # rotate the order so no case always runs first or after the same one
        for tree, case in pairs[shift:] + pairs[:shift]:
            seconds, heavy[tree, case] = measure(trees[tree], CASES[case])
            times[tree, case].append(seconds)
    cases: dict[str, dict[str, object]] = {}
    for case in CASES:
        row: dict[str, object] = {}
        for tree in trees:
            row[tree] = {"median_s": round(statistics.median(times[tree, case]), 3),
                         "runs_s": [round(value, 3) for value in times[tree, case]],
                         "heavy_modules_loaded": heavy[tree, case]}
        if "baseline" in trees:
            row["ratio_this_over_baseline"] = round(row["this"]["median_s"] / row["baseline"]["median_s"], 3)
        cases[case] = row
    return {"machine": machine_at_start, "repeats": repeats, "cases": cases}


def markdown(result: dict[str, object]) -> str:
    cases: dict[str, dict[str, object]] = result["cases"]  # type: ignore[assignment]
    with_baseline = any("baseline" in row for row in cases.values())
    lines = ["# Startup: `import unfreeze`, `--help`, `--version` (benchmarks/bench_import.py)", "",
             "Machine: " + ", ".join(f"{key} {value}" for key, value in result["machine"].items()) + ".",  # type: ignore[attr-defined]
             "",
             f"Fresh interpreter per run, wall time from outside (interpreter start included), {result['repeats']} "
             "rounds interleaved, medians. 'baseline' is the tree before the startup work (issue 24).", "",
             "| case | this (s) | heavy packages loaded |" + (" baseline (s) | baseline loads | this / baseline |"
                                                           if with_baseline else ""),
             "|---|---|---|" + ("---|---|---|" if with_baseline else "")]
    for case, row in cases.items():
        this = row["this"]
        line = f"| `{case}` | {this['median_s']:.2f} | {', '.join(this['heavy_modules_loaded']) or 'none'} |"
        if with_baseline:
            base = row["baseline"]
            line += (f" {base['median_s']:.2f} | {', '.join(base['heavy_modules_loaded']) or 'none'} |"
                     f" {row['ratio_this_over_baseline']:.2f} |")
        lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="the src/ folder of another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="write results/import.json and results/import.md")
    args = parser.parse_args()
    trees = {"this": SRC, **({"baseline": args.baseline} if args.baseline else {})}
    result = run(trees, args.repeats)
    print(json.dumps(result, indent=2))
    if args.write:
        (RESULTS / "import.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "import.md").write_text(markdown(result))
        print(markdown(result))


if __name__ == "__main__":
    main()
