"""LR finder benchmark: speed (side by side with fastai 2.8) and quality of the valley suggestion.

    .venv/bin/python benchmarks/bench_lr_find.py                 # full run, writes results/lr_find.md
    .venv/bin/python benchmarks/bench_lr_find.py --quick --skip-fastai   # smoke run, writes nothing

Setup (benchmarks/common.py): Fashion-MNIST, 2,000 train / 1,000 valid images from the idx training
split, 64 px, bs 64, 2 threads, no loader workers, no augmentation; efficientnet_lite0 with the bundled
ImageNet weights.

(a) Speed: `lr_find(num_it=100)` on the frozen learner, with fastai's train_bn=True (its default, what
    fastai's runner times) and with train_bn=False (no gradient and no BN update in the body). The first
    call also decodes the images; the second finds them in the decoded-image cache.
(b) Quality: `lr_find` on the frozen learner (train_bn=False), then `fit_one_cycle(epochs)` from the same
    fresh model with the valley LR and with each LR of a hand sweep (1e-4 ... 1e-2). The valley passes
    when its accuracy is within 2 points of the best swept LR.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

SWEEP = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def make_learner(dls: Any, train_bn: bool, unfrozen: bool) -> Any:
    """A fresh pretrained efficientnet_lite0 learner, seeded, with the body frozen unless `unfrozen`."""
    import torch

    from unfreeze.models import create_model
    from unfreeze.train.learner import Learner

    torch.manual_seed(0)  # the new head's initial weights: every run starts from the same model

    model = create_model("efficientnet_lite0", dls.n_classes, pretrained=True)
    learn = Learner(dls, model, metrics=["accuracy"], train_bn=train_bn, device="cpu", seed=0, quiet=True)
    if unfrozen:
        learn.unfreeze()
    else:
        learn.freeze()
    return learn


def time_lr_find(dls: Any, num_it: int, train_bn: bool) -> dict[str, Any]:
    learn = make_learner(dls, train_bn=train_bn, unfrozen=False)
    times: dict[str, float] = {}
    with common.timed(times, "wall_s"):
        result = learn.lr_find(num_it=num_it, quiet=True)
    return {
        "train_bn": train_bn,
        "seconds": times["wall_s"],
        "cpu_seconds": times["wall_cpu_s"],
        "iterations": len(result.lrs),
        "valley": result.valley,
        "suggestions": result.suggestions,
        "warnings": result.warnings,
    }


def run_fastai(quick: bool, threads: int) -> dict[str, Any] | None:
    """fastai's lr_find through the shared runner (benchmarks/run_fastai.py), at our thread count."""
    python = common.REPO_ROOT / ".venv-fastai" / "bin" / "python"
    if not python.exists():
        return None
    arguments = ["run_fastai.py", "--scenario", "lr_find", "--seed", "0"] + (["--quick"] if quick else [])
    script = (
        f"import sys, dataclasses; sys.path.insert(0, {str(common.BENCH_DIR)!r}); sys.argv = {arguments!r}; "
        f"import common; common.FULL = dataclasses.replace(common.FULL, threads={threads}); "
        f"common.QUICK = dataclasses.replace(common.QUICK, threads={threads}); import run_fastai; run_fastai.main()"
    )
    command = [str(python), "-c", script]
    print("fastai:", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        print(done.stderr[-2000:])
        return None
    return common.parse_result(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, 10 iterations; writes nothing")
    parser.add_argument("--epochs", type=int, default=2, help="fit_one_cycle epochs per quality run")
    parser.add_argument("--unfrozen", action="store_true", help="quality runs with every group trainable")
    parser.add_argument("--skip-fastai", action="store_true", help="do not time fastai's lr_find")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for both libraries (default: the setup's 2)"
    )
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "lr_find.md")
    args = parser.parse_args()
    setup = common.setup_for(args.quick)
    if args.threads:
        # On a shared, loaded machine one thread per process avoids the spinning of two contending threads.
        setup = dataclasses.replace(setup, threads=args.threads)
    common.prepare_process(setup)
    import torch

    from unfreeze.data import ImageDataLoaders

    command = "python " + " ".join(sys.argv)
    machine = {**common.machine_info(), "threads": torch.get_num_threads(), "load_avg_1m_start": os.getloadavg()[0]}
    print(command, json.dumps(machine), sep="\n", flush=True)
    started = time.perf_counter()
    dls = ImageDataLoaders.from_folder(
        common.build_dataset(setup), size=setup.size, bs=setup.batch_size, seed=setup.data_seed,
        augment=False, num_workers=setup.num_workers, device="cpu",
    )  # fmt: skip
    num_it = setup.lr_find_iterations
    epochs = 1 if args.quick else args.epochs

    # (a) speed. The first call decodes every image (cold), later ones read the cache (warm).
    timings = [time_lr_find(dls, num_it, train_bn=True), time_lr_find(dls, num_it, train_bn=True)]
    timings.append(time_lr_find(dls, num_it, train_bn=False))
    labels = ("cold, train_bn=True", "warm, train_bn=True", "warm, train_bn=False")
    for label, row in zip(labels, timings, strict=True):
        row["label"] = label
        print(f"lr_find {label}: {row['seconds']:.1f} s, {row['iterations']} it, valley {row['valley']:.2e}")
    fastai = None if args.skip_fastai else run_fastai(args.quick, setup.threads)
    if fastai:
        print(f"fastai lr_find: {fastai['wall_s']:.1f} s, {fastai['iterations']} it, "
              f"valley {fastai['suggested_lr']:.2e}")  # fmt: skip

    # (b) quality: the valley vs a hand sweep, each from the same fresh model and seed.
    learn = make_learner(dls, train_bn=False, unfrozen=args.unfrozen)
    plot = None if args.quick else common.RESULTS_DIR / "lr_find_curve.png"
    found = learn.lr_find(num_it=num_it, plot=plot, quiet=True)
    print("suggestions:", {k: f"{v:.2e}" for k, v in found.suggestions.items()}, found.warnings, flush=True)
    accuracy: dict[str, float] = {}
    for name, lr in [("valley", found.valley)] + [(f"{lr:g}", lr) for lr in SWEEP]:
        learn = make_learner(dls, train_bn=False, unfrozen=args.unfrozen)
        start = time.perf_counter()
        rows = learn.fit_one_cycle(epochs, lr)
        accuracy[name] = rows[-1]["accuracy"]
        print(f"fit_one_cycle({epochs}, {lr:.2e}) [{name}]: accuracy {accuracy[name]:.4f} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
    best_name = max((n for n in accuracy if n != "valley"), key=accuracy.__getitem__)
    gap = 100 * (accuracy[best_name] - accuracy["valley"])
    verdict = "PASS" if gap <= 2.0 else "FAIL"
    total = time.perf_counter() - started
    print(f"valley {found.valley:.2e}: {100 * accuracy['valley']:.1f}%; best sweep {best_name}: "
          f"{100 * accuracy[best_name]:.1f}%; gap {gap:.1f} points -> {verdict}; total {total:.0f} s")  # fmt: skip
    if args.quick:
        return
    write_report(args, command, machine, setup, timings, fastai, found, accuracy, best_name, gap, verdict, total)


def write_report(
    args: argparse.Namespace, command: str, machine: dict[str, Any], setup: common.Setup,
    timings: list[dict[str, Any]], fastai: dict[str, Any] | None, found: Any,
    accuracy: dict[str, float], best_name: str, gap: float, verdict: str, total: float,
) -> None:  # fmt: skip
    mode = "unfrozen (every group trains)" if args.unfrozen else "frozen body, train_bn=False (only the head trains)"
    lines = [
        "# lr_find benchmark",
        "",
        f"Command: `{command}` (benchmarks/bench_lr_find.py). Total {total:.0f} s.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB, torch threads "
        f"{machine['threads']}, Python {machine['python']}, {machine['date']}. Load average at start "
        f"{machine['load_avg_1m_start']:.1f}, at end {os.getloadavg()[0]:.1f} (the machine was shared: wall "
        "times are upper bounds).",
        "",
        f"Data: Fashion-MNIST {setup.n_train} train / {setup.n_valid} valid from the idx training split, "
        f"{setup.size} px, bs {setup.batch_size}, no augmentation, no loader workers. Model: efficientnet_lite0, "
        "bundled ImageNet weights, fastai head, 3 parameter groups.",
        "",
        "## (a) Speed: lr_find(num_it=100) on the frozen learner",
        "",
        "| run | wall s | CPU s | iterations | valley |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in timings:
        lines.append(
            f"| unfreeze, {row['label']} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | {row['iterations']} "
            f"| {row['valley']:.2e} |"
        )
    if fastai:
        lines.append(
            f"| fastai 2.8.12, cold, train_bn=True (benchmarks/run_fastai.py) | {fastai['wall_s']:.1f} | "
            f"{fastai.get('wall_cpu_s', float('nan')):.1f} | {fastai['iterations']} | {fastai['suggested_lr']:.2e} |"
        )
        cpu = fastai.get("wall_cpu_s", float("nan"))
        lines += [
            "",
            f"fastai / unfreeze, both cold, frozen, train_bn=True, {machine['threads']} thread(s): "
            f"{fastai['wall_s'] / timings[0]['seconds']:.2f}x in wall time, {cpu / timings[0]['cpu_seconds']:.2f}x "
            f"in CPU time. fastai / unfreeze with train_bn=False (warm): {cpu / timings[2]['cpu_seconds']:.1f}x in "
            "CPU time. On a loaded machine the CPU seconds are the fairer measure.",
        ]
    else:
        lines += ["", "fastai was not run in this invocation (REFERENCE.md: 52.5 s for the same test, unloaded)."]
    lines += [
        "",
        f"## (b) Quality: fit_one_cycle({args.epochs}) with {mode}",
        "",
        "Each run starts from the same fresh pretrained model and seed; lr_find ran on that same starting state.",
        f"Suggestions: {', '.join(f'{k} {v:.2e}' for k, v in found.suggestions.items())}.",
        f"lr_find warnings: {found.warnings or 'none'}. Curve: lr_find_curve.png.",
        "",
        "| LR | accuracy |",
        "|---|---:|",
    ]
    lines.append(f"| valley {found.valley:.2e} | {100 * accuracy['valley']:.1f}% |")
    lines += [f"| {name} | {100 * acc:.1f}% |" for name, acc in accuracy.items() if name != "valley"]
    lines += [
        "",
        f"Best swept LR: {best_name} ({100 * accuracy[best_name]:.1f}%). Valley is {gap:.1f} points below it: "
        f"**{verdict}** (criterion: within 2 points).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
