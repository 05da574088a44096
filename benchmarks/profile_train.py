"""Where the CPU time of `unfreeze train` goes (issue 24, part 5): one command, results in profile.md.

    PYTHONPATH=src .venv/bin/python benchmarks/profile_train.py            # both kernel sets, ~10 min
    PYTHONPATH=src .venv/bin/python benchmarks/profile_train.py --quick    # a smoke run

Two views, each on this machine's own kernels and on the AVX2 ones (`ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`, which must be set before torch loads, so every measurement is a fresh process):

1. The whole command: `unfreeze train` on the clean 2,000/1,000 Fashion-MNIST set at 64 px (the set of
   recipe.md and hard_data.md) under cProfile, with the cumulative seconds of the stages that matter
   (the checks before the fit, the frozen and unfrozen epochs split into data, step and validation,
   and what runs after the fit: calibration and the unknown score, the disagreements list, the plots
   and the report).
2. One training step of the recipe's frozen phase (body frozen, norm layers training, as fastai) and
   of its unfrozen phase (the first group frozen), under torch.profiler: forward, backward, optimizer
   and the operators that take the most time. Then the candidates the profile points at, timed as
   medians of interleaved repeats: frozen norm layers folded into their convolutions
   (`models.batchnorm_folding`, shipped) or not, in training steps and validation, kernels cropped to the
   taps a small map reaches and depthwise weight gradients by shifted products where oneDNN's are slow
   (`models.small_map_convolutions`, shipped) or not, norm layers of a frozen body in
   inference mode (shipped: `train_bn=False`, against fastai's True, which backpropagates through the
   whole frozen body to train its norm layers), and 1 or 2 threads.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import importlib.metadata
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import common  # noqa: E402

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
MARKER = "PROFILE_RESULT "
# The stages of view 1: (label, the function whose cumulative time it is, as cProfile names it).
STAGES = [
    ("flip check", "flip_check.py", "check_flips"),
    ("noise check", "noise.py", "check_noise"),
    ("linear probe", "probe.py", "fit_linear_probe"),
    ("fit (all epochs)", "loop.py", "run_fit"),
    ("  training steps", "stepper.py", "train_step"),
    ("  validation", "learner.py", "validate"),
    ("calibration + unknown score", "trust_fit.py", "calibrate_after_fit"),
    ("disagreements list", "noise.py", "disagreements"),
    ("interpretation (validation predictions)", "interpret.py", "from_learner"),
    ("plots", "runs.py", "write_plots"),
    ("report.html", "report.py", "write_report"),
    ("export (model.unfreeze)", "commands.py", "_export"),
]


def clean_set() -> Path:
    import hard_data

    return hard_data.set_root("clean")[0]


# ---------------------------------------------------------------------------------------------- view 1


def whole_command(root: Path, quick: bool) -> dict[str, Any]:
    """`unfreeze train` in this process under cProfile: total and per-stage cumulative seconds."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    started = time.perf_counter()
    cpu_started = time.process_time()
    from unfreeze.cli import main as cli_main

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", str(root), "--size", "64", "--out", f"{tmp}/run", "--quiet"]
        if quick:
            argv += ["--epochs", "1"]
        profiler = cProfile.Profile()
        profiler.enable()
        code = cli_main(argv)
        profiler.disable()
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stats = pstats.Stats(profiler)
    stages: dict[str, float] = {}
    for label, filename, function in STAGES:
        seconds = 0.0
        for (path, _, name), (_, _, _, cumulative, callers) in stats.stats.items():  # type: ignore[attr-defined]
            if not path.endswith(f"unfreeze/{filename}") and not path.endswith(f"/{filename}"):
                continue
            if function is None:  # a module's public functions, each counted once (called from outside it)
                if not name.startswith("_") and not any(caller[0] == path for caller in callers):
                    seconds += cumulative
            elif name == function and not any(caller[2] == function for caller in callers):
                seconds += cumulative
        stages[label] = seconds
    return {"code": code, "wall_s": total, "cpu_s": cpu, "stages": stages}


# ---------------------------------------------------------------------------------------------- view 2


def _learner(root: Path, train_bn: bool | None = None) -> Any:
    from unfreeze import ImageDataLoaders, vision_learner
    from unfreeze.data.augment import augment_preset

    dls = ImageDataLoaders.from_folder(root, size=64, bs=64, seed=0, num_workers=0)
    dls.train.augment = augment_preset("default")
    learn = vision_learner(dls, "efficientnet_lite0", metrics=["error_rate"], seed=0, quiet=True, head="linear",
                           train_bn=train_bn)
    return learn


def _batches(learn: Any, n: int) -> list[tuple[Any, Any]]:
    batches = []
    for batch in learn.dls.train:
        batches.append(batch)
        if len(batches) == n:
            break
    return batches


def _phase(learn: Any, phase: str) -> None:
    if phase == "frozen":
        learn.freeze()
    else:
        learn.freeze_to(1)
    learn.set_train_mode()  # as the loop does each epoch: a frozen body's norm layers in inference mode
    learn.stepper.set_hyper([1e-4] * learn.n_groups, 0.9)


@contextlib.contextmanager
def _unfolded(where: str) -> Iterator[None]:
    """Batch norms not folded in `where` ("stepper": training steps, "predict": evaluation passes)."""
    import importlib

    from unfreeze.models import batchnorm_folding

    module = importlib.import_module(f"unfreeze.{'train.stepper' if where == 'stepper' else 'inference.predict'}")
    folded = module.folded_batchnorm
    module.folded_batchnorm = lambda model, example: batchnorm_folding.folded_batchnorm(model, None)
    try:
        yield
    finally:
        module.folded_batchnorm = folded


@contextlib.contextmanager
def _small_maps(mode: str) -> Iterator[None]:
    """Training steps with `models.small_map_convolutions` "off" (whole kernels, oneDNN's gradients), or with
    the depthwise weight gradient forced to oneDNN's ("onednn") or to the shifted products ("shifted")."""
    from unfreeze.train import stepper

    patched = stepper.small_map_convolutions
    if mode == "off":
        stepper.small_map_convolutions = lambda model: contextlib.nullcontext(0)
    else:
        stepper.small_map_convolutions = functools.partial(patched, shifted_gradients=mode == "shifted")
    try:
        yield
    finally:
        stepper.small_map_convolutions = patched


def step_profile(root: Path, n_steps: int) -> dict[str, Any]:
    """torch.profiler over `n_steps` steps of each phase: forward / backward / optimizer, top operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    learn = _learner(root)
    started = time.perf_counter()
    batches = _batches(learn, n_steps + 2)
    data_s = (time.perf_counter() - started) / len(batches)
    result: dict[str, Any] = {"data_s_per_batch": data_s}
    for phase in ("frozen", "unfrozen"):
        _phase(learn, phase)
        for images, labels in batches[:2]:  # warm-up: the optimizer's state, oneDNN's primitives
            learn.stepper.train_step(images, labels)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            started = time.perf_counter()
            for images, labels in batches[2:]:
                learn.stepper.train_step(images, labels)
            step_s = (time.perf_counter() - started) / n_steps
        parts = {"forward + loss": 0.0, "backward": 0.0, "optimizer": 0.0}
        for event in prof.events():
            if event.cpu_parent is not None:
                continue
            seconds = event.cpu_time_total / 1e6
            if event.name.startswith("Optimizer."):
                parts["optimizer"] += seconds
            elif event.name.startswith("autograd::engine::evaluate_function"):
                parts["backward"] += seconds
            else:
                parts["forward + loss"] += seconds
        top = [{"op": item.key, "self_s_per_step": item.self_cpu_time_total / 1e6 / n_steps}
               for item in sorted(prof.key_averages(), key=lambda item: -item.self_cpu_time_total)[:12]]
        result[phase] = {"step_s": step_s, "parts_s_per_step": {k: v / n_steps for k, v in parts.items()}, "top": top}
    return result


def candidates(root: Path, n_steps: int, repeats: int) -> dict[str, Any]:
    """Seconds per step (median of interleaved repeats) of each phase with each candidate change."""
    import torch

    threads = int(os.environ.get("BENCH_THREADS", "1"))
    learners = {"as shipped": _learner(root), "train_bn=True (fastai)": _learner(root, train_bn=True)}
    batches = _batches(learners["as shipped"], n_steps)
    learners["as shipped"].validate()  # the validation images decoded once, before any timing
    variants: list[tuple[str, str, Any]] = []
    for phase in ("frozen", "unfrozen"):
        variants += [(phase, "as shipped", {}), (phase, "norm layers not folded", {"unfolded": "stepper"}),
                     (phase, "kernels not cropped, oneDNN's gradients", {"small_maps": "off"}),
                     (phase, "depthwise weight gradients by oneDNN", {"small_maps": "onednn"}),
                     (phase, "depthwise weight gradients by shifted products", {"small_maps": "shifted"}),
                     (phase, f"{3 - threads} thread(s)", {"threads": 3 - threads})]
        if phase == "frozen":
            variants.append((phase, "train_bn=True (fastai)", {"learner": "train_bn=True (fastai)"}))
    variants += [("validation", "as shipped", {}), ("validation", "norm layers not folded", {"unfolded": "predict"})]
    times: dict[str, list[float]] = {f"{phase}: {name}": [] for phase, name, _ in variants}
    for _ in range(repeats):
        for phase, name, change in variants:
            learn = learners[change.get("learner", "as shipped")]
            torch.set_num_threads(change.get("threads", threads))
            with _unfolded(change["unfolded"]) if "unfolded" in change else contextlib.nullcontext(), \
                    _small_maps(change["small_maps"]) if "small_maps" in change else contextlib.nullcontext():
                if phase == "validation":  # seconds of one pass over the 1,000 validation images
                    started = time.perf_counter()
                    learn.validate()
                    times[f"{phase}: {name}"].append(time.perf_counter() - started)
                    continue
                _phase(learn, phase)
                learn.stepper.train_step(*batches[0])  # warm-up after the phase change
                started = time.perf_counter()
                for images, labels in batches[1:]:
                    learn.stepper.train_step(images, labels)
                times[f"{phase}: {name}"].append((time.perf_counter() - started) / (len(batches) - 1))
            torch.set_num_threads(threads)
    return {key: {"median_s": statistics.median(values), "runs": values} for key, values in times.items()}


# ---------------------------------------------------------------------------------------------- driver


def worker(view: str, root: Path, quick: bool) -> None:
    if view == "command":
        result = whole_command(root, quick)
    elif view == "step":
        result = step_profile(root, 3 if quick else 8)
    else:
        result = candidates(root, 4 if quick else 9, 1 if quick else 5)
    print(MARKER + json.dumps(result), flush=True)


def run_worker(view: str, root: Path, quick: bool, kernels: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{common.REPO_ROOT / 'src'}{os.pathsep}{BENCH_DIR}",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **(AVX2_ENV if kernels == "avx2" else {})}
    out = subprocess.run([sys.executable, __file__, "--worker", view, str(root), "1" if quick else "0"], env=env,
                         capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARKER)]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the {view} worker ({kernels}) failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARKER):])


def write_markdown(results: dict[str, Any], path: Path) -> None:
    machine = results["machine"]
    lines = ["# Where a training step's CPU time goes (issue 24, part 5)", "",
             f"`benchmarks/profile_train.py`; {machine['cpu']}, {machine['cores']} cores, torch "
             f"{machine.get('torch', '?')}, one torch thread unless named. `native` is PyTorch's own choice of "
             "kernels on this CPU, `avx2` the same process with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`. "
             "Each cell is one process; the machine is shared, so compare shares and ratios, not seconds.", ""]
    kernels = list(results["runs"])
    lines += ["## The whole `unfreeze train` (clean 2,000 / 1,000 set, 64 px), cumulative seconds under cProfile",
              "", "| stage | " + " | ".join(kernels) + " |", "|---|" + "---|" * len(kernels)]
    first = results["runs"][kernels[0]]["command"]
    for label in ["total (wall)", "total (CPU)", *first["stages"]]:
        cells = []
        for kernel in kernels:
            command = results["runs"][kernel]["command"]
            value = command["wall_s"] if label == "total (wall)" else command["cpu_s"] if label == "total (CPU)" \
                else command["stages"][label]
            share = "" if label.startswith("total") else f" ({value / command['wall_s']:.0%})"
            cells.append(f"{value:.1f}{share}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## One training step (batch 64, 64 px), milliseconds", ""]
    for kernel in kernels:
        step = results["runs"][kernel]["step"]
        lines += [f"### {kernel} kernels (data: {step['data_s_per_batch'] * 1e3:.0f} ms a batch, decoding and "
                  "augmentation in the training process)", "",
                  "| phase | step | forward + loss | backward | optimizer |", "|---|---|---|---|---|"]
        for phase in ("frozen", "unfrozen"):
            parts = step[phase]["parts_s_per_step"]
            lines.append(f"| {phase} | {step[phase]['step_s'] * 1e3:.0f} | "
                         + " | ".join(f"{parts[key] * 1e3:.0f}" for key in ("forward + loss", "backward", "optimizer"))
                         + " |")
        lines += ["", "Top operators (self time per step, ms):", "", "| frozen | ms | unfrozen | ms |",
                  "|---|---|---|---|"]
        for frozen, unfrozen in zip(step["frozen"]["top"], step["unfrozen"]["top"], strict=False):
            lines.append(f"| {frozen['op']} | {frozen['self_s_per_step'] * 1e3:.1f} | {unfrozen['op']} | "
                         f"{unfrozen['self_s_per_step'] * 1e3:.1f} |")
        lines.append("")
    lines += ["## Candidates, milliseconds per step (validation: per pass over the 1,000 images), median of "
              "interleaved repeats, and the ratio to as shipped", "",
              "| phase: candidate | " + " | ".join(kernels) + " |", "|---|" + "---|" * len(kernels)]
    for key in results["runs"][kernels[0]]["candidates"]:
        cells = []
        for kernel in kernels:
            table = results["runs"][kernel]["candidates"]
            base = table[f"{key.split(':')[0]}: as shipped"]["median_s"]
            cells.append(f"{table[key]['median_s'] * 1e3:.0f} ms ({table[key]['median_s'] / base:.2f}x)")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", *results.get("findings", [])]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, few steps: a smoke run")
    parser.add_argument("--kernels", default="native,avx2", help="native,avx2 (default both)")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR, help="results folder")
    args = parser.parse_args()
    root = clean_set()
    machine = common.machine_info()
    machine.setdefault("torch", importlib.metadata.version("torch"))
    out_json = args.out / "profile.json"
    results = json.loads(out_json.read_text()) if out_json.exists() and not args.quick else {"runs": {}}
    results["machine"] = machine
    for kernels in args.kernels.split(","):
        results["runs"][kernels] = {view: run_worker(view, root, args.quick, kernels)
                                    for view in ("step", "candidates", "command")}
        print(f"{kernels}: done", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=1))
        write_markdown(results, args.out / "profile.md")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1")
    else:
        main()
