"""unfreeze vs fastai vs a plain PyTorch loop, side by side in one run.

    .venv/bin/python benchmarks/compare.py                       # 3 repeats, every scenario (~20 min)
    .venv/bin/python benchmarks/compare.py --runners fastai,plain --scenarios fine_tune
    .venv/bin/python benchmarks/compare.py --quick               # tiny smoke run, results in .work/
    .venv/bin/python benchmarks/compare.py --report-only         # redraw the table and chart from JSON

Each run is a fresh subprocess (fastai's inside .venv-fastai), so no runner inherits another's warm
state. The runs are interleaved (fastai, plain, unfreeze, fastai, plain, unfreeze, ...) so that a
change in the machine's load hits every runner alike, and the medians over the repeats are reported.
Writes benchmarks/results/compare.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common


@dataclass(frozen=True)
class Runner:
    """One side of the comparison: a script, the interpreter that runs it, and a configuration."""

    name: str
    library: str
    python: Path
    script: str
    config: str
    scenarios: tuple[str, ...]


RUNNERS = (
    Runner("fastai", "fastai", common.REPO_ROOT / ".venv-fastai/bin/python", "run_fastai.py", "default",
           common.SCENARIOS),
    Runner("plain", "plain", common.REPO_ROOT / ".venv/bin/python", "run_plain.py", "default", common.SCENARIOS),
    Runner("unfreeze", "unfreeze", common.REPO_ROOT / ".venv/bin/python", "run_unfreeze.py", "defaults",
           common.SCENARIOS),
    # fastai's settings in unfreeze, for fine_tune only: inference does not depend on them, and leaving
    # out lr_find keeps a full comparison near 20 minutes on an idle 2-core machine.
    Runner("unfreeze (fastai settings)", "unfreeze", common.REPO_ROOT / ".venv/bin/python", "run_unfreeze.py",
           "fastai_exact", ("fine_tune",)),
)



def scenario_title(scenario: str, setup: dict[str, Any]) -> str:
    """What a scenario's headline number is, for the chart."""
    return {
        "fine_tune": f"fine_tune({setup['epochs']}): wall seconds",
        "lr_find": f"lr_find(num_it={setup['lr_find_iterations']}): wall seconds",
        "inference": "inference on the validation set: images/s",
    }[scenario]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of every runner and scenario (default 3)")
    parser.add_argument("--scenarios", default=",".join(common.SCENARIOS),
                        help=f"comma-separated subset of {','.join(common.SCENARIOS)}")
    parser.add_argument("--runners", default="fastai,plain,unfreeze",
                        help="comma-separated subset of fastai,plain,unfreeze (unfreeze runs both its configs)")
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 repeat, 1 epoch: proves the runners work")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a run is abandoned")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table and chart from compare.json")
    args = parser.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = sorted(set(args.scenarios) - set(common.SCENARIOS)) + sorted(
        set(args.runners) - {"fastai", "plain", "unfreeze"}
    )
    if unknown:
        parser.error(f"unknown scenario or runner: {', '.join(unknown)}")
    if args.quick:
        args.repeats = 1
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.out is None:
        args.out = common.WORK_DIR / "quick_results" if args.quick else common.RESULTS_DIR
    return args


def run_one(runner: Runner, scenario: str, seed: int, quick: bool, timeout: float) -> dict[str, Any]:
    """Run one runner on one scenario in a fresh process; return its result (or the error)."""
    command = [str(runner.python), str(common.BENCH_DIR / runner.script), "--scenario", scenario,
               "--seed", str(seed), "--config", runner.config] + (["--quick"] if quick else [])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "MPLBACKEND": "Agg",
           "PYTHONWARNINGS": "ignore"}
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                                 cwd=common.REPO_ROOT)
        result = common.parse_result(process.stdout)
    except (subprocess.TimeoutExpired, ValueError) as error:
        stderr = getattr(error, "stderr", None) or (process.stderr if "process" in locals() else "")
        tail = stderr[-2000:] if isinstance(stderr, str) else ""
        reason = f"timed out after {timeout:.0f} s" if isinstance(error, subprocess.TimeoutExpired) else str(error)
        result = {"failed": reason, "stderr_tail": tail}
    result.update({"runner": runner.name, "config": runner.config, "scenario": scenario, "seed": seed,
                   "process_s": time.perf_counter() - started, "load_avg_1m_start": load_start})
    return result


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (scenario, runner), with ratios against fastai and the plain loop."""
    rows = []
    for scenario in common.SCENARIOS:
        medians: dict[str, dict[str, Any]] = {}
        for runner in RUNNERS:
            runs = [r for r in results if r["scenario"] == scenario and r["runner"] == runner.name
                    and "failed" not in r]
            failed = sum(1 for r in results if r["scenario"] == scenario and r["runner"] == runner.name
                         and "failed" in r)
            if not runs and not failed:
                continue
            keys = ("wall_s", "wall_cpu_s", "setup_s", "total_s", "error", "images_per_s", "iterations")
            row = {key: common.median([r.get(key) for r in runs]) for key in keys}
            row.update({"scenario": scenario, "runner": runner.name, "runs": len(runs), "failed": failed,
                        "max_load": max((r.get("load_avg_1m_end", 0) for r in runs), default=None)})
            medians[runner.name] = row
        for row in medians.values():
            for base in ("fastai", "plain"):
                reference = medians.get(base, {})
                row[f"vs_{base}"] = _ratio(row, reference, scenario)
            rows.append(row)
    return rows


def _ratio(row: dict[str, Any], reference: dict[str, Any], scenario: str) -> float | None:
    """Time ratio (lower is faster); for inference the images/s ratio (higher is faster)."""
    key = "images_per_s" if scenario == "inference" else "wall_s"
    if row.get(key) is None or not reference.get(key):
        return None
    return row[key] / reference[key]


def _fmt(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}{suffix}"


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    """The results table with the machine's details and the command that produced it."""
    machine, setup = report["machine"], report["setup"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    lines = [
        "# unfreeze vs fastai vs plain PyTorch",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {machine['date']}. Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
        f"{machine['os']}, Python {machine['python']}; {versions}.  ",
        f"Setup: Fashion-MNIST, {setup['n_train']} train / {setup['n_valid']} valid images from the training "
        f"split, {setup['size']} px, batch size {setup['batch_size']}, efficientnet_lite0 with the bundled "
        f"ImageNet weights, normalization mean/std {setup['mean'][0]}/{setup['std'][0]}, "
        f"{setup['threads']} torch threads, num_workers {setup['num_workers']}, no augmentation. "
        f"{report['repeats']} interleaved repeats requested (seeds 0..{report['repeats'] - 1}); medians over the "
        "completed runs (column runs).",
        "",
        "| scenario | runner | wall s | × fastai | × plain | CPU s | setup s | error | images/s | runs | max load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        failed = f" ({row['failed']} failed)" if row["failed"] else ""
        lines.append(
            f"| {row['scenario']} | {row['runner']} | {_fmt(row['wall_s'])} | {_fmt(row['vs_fastai'], 2)} | "
            f"{_fmt(row['vs_plain'], 2)} | {_fmt(row['wall_cpu_s'])} | {_fmt(row['setup_s'])} | "
            f"{_fmt(None if row['error'] is None else 100 * row['error'], 1, '%')} | "
            f"{_fmt(row['images_per_s'], 0)} | {row['runs']}{failed} | "
            f"{_fmt(row['max_load'], 1)} |"
        )
    failures = [r for r in report["results"] if "failed" in r]
    if failures:
        lines += ["", "Failed runs:"]
        lines += [f"- {r['scenario']}, {r['runner']}, seed {r['seed']}: {r['failed'][-160:]} "
                  f"(load {r.get('load_avg_1m_start', 0):.1f} at its start)" for r in failures]
    lines += [
        "",
        "wall s: the timed call only (`fine_tune(2)`, `lr_find(num_it=100)`, or one pass of predictions over the "
        "validation set after an untimed warm-up pass). setup s: building the data loaders and the learner "
        "(the plain loop decodes every image here). × fastai / × plain: ratio of median wall seconds (lower is "
        "faster); for inference, the ratio of images/s (higher is faster). CPU s: CPU seconds of the process "
        "during the timed call. max load: the highest 1-minute load average seen at the end of a run; above "
        f"{machine['cores']} the machine was shared and wall times are inflated for every runner alike.",
        "",
    ]
    path.write_text("\n".join(lines))


def write_chart(path: Path, report: dict[str, Any]) -> None:
    """One panel per scenario: median wall seconds (images/s for inference) per runner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in common.SCENARIOS if any(r["scenario"] == s for r in report["summary"])]
    figure, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 3.2), squeeze=False)
    colors = {"fastai": "#888888", "plain": "#4c72b0", "unfreeze": "#dd8452", "unfreeze (fastai settings)": "#f2b880"}
    for axis, scenario in zip(axes[0], scenarios, strict=True):
        rows = [r for r in report["summary"] if r["scenario"] == scenario]
        key = "images_per_s" if scenario == "inference" else "wall_s"
        names = [r["runner"] for r in rows]
        values = [r[key] or 0 for r in rows]
        bars = axis.barh(names, values, color=[colors.get(n, "#999999") for n in names])
        for bar, row in zip(bars, rows, strict=True):
            note = f"{bar.get_width():.0f}"
            if row.get("error") is not None:
                note += f"  ({100 * row['error']:.1f}% err)"
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + note, va="center", fontsize=8)
        axis.invert_yaxis()
        axis.set_title(scenario_title(scenario, report["setup"]), fontsize=10)
        axis.set_xlim(0, max([*values, 1]) * 1.45)
    setup = report["setup"]
    figure.suptitle(f"Fashion-MNIST {setup['n_train']}/{setup['n_valid']}, {setup['size']} px, "
                    f"efficientnet_lite0, CPU, median of {report['repeats']}",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    args = parse_arguments()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "compare.json"
    if args.report_only:
        report = json.loads(json_path.read_text())
    else:
        setup = common.setup_for(args.quick)
        common.build_dataset(setup)  # once, before any timing
        command = "python benchmarks/compare.py " + " ".join(sys.argv[1:])
        report = {
            "command": command.strip(),
            "machine": common.machine_info(),
            "setup": asdict(setup),
            "repeats": args.repeats,
            "versions": {},
            "results": [],
        }
        runners = [r for r in RUNNERS if r.library in args.runners]
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                for runner in (r for r in runners if scenario in r.scenarios):
                    result = run_one(runner, scenario, seed=repeat, quick=args.quick, timeout=args.timeout)
                    report["results"].append(result)
                    report["versions"].update(result.get("versions", {}))
                    status = result.get("failed") or (
                        f"wall {result['wall_s']:.1f} s"
                        + (f", error {100 * result['error']:.1f}%" if "error" in result else "")
                        + (f", {result['images_per_s']:.0f} images/s" if "images_per_s" in result else "")
                        + f", load {result.get('load_avg_1m_end', 0):.1f}"
                    )
                    print(f"[{repeat + 1}/{args.repeats}] {scenario:9s} {runner.name:27s} {status}", flush=True)
                    json_path.write_text(json.dumps(report, indent=1))  # partial results survive a stop
    report["summary"] = summarize(report["results"])
    json_path.write_text(json.dumps(report, indent=1))
    write_markdown(args.out / "compare.md", report)
    write_chart(args.out / "compare.png", report)
    print((args.out / "compare.md").read_text())


if __name__ == "__main__":
    main()
