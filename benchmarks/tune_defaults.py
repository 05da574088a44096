"""Measure the choices behind unfreeze's defaults: train_bn, lr_mult, base_lr and the head.

Runs fine_tune(2) on Fashion-MNIST (2,000 train / 1,000 valid from the training split, 64 px, bs 64)
with the bundled efficientnet_lite0 for each configuration, and prints error, wall time and the time
of the frozen epoch relative to an unfrozen one. Accuracy does not depend on machine load; times do,
so compare them only within one run.

    .venv/bin/python benchmarks/tune_defaults.py [--configs fastai,keras_bn,...] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Setup, build_dataset, machine_info

from unfreeze import ImageDataLoaders, vision_learner

CONFIGS: dict[str, dict] = {
    # fastai's recipe exactly: norm layers of frozen groups train, lr_mult 100.
    "fastai": {"train_bn": True, "lr_mult": 100, "base_lr": 2e-3, "head": "fastai"},
    # unfreeze's default: Keras BN (the body's norm layers stay in inference mode), lr_mult 100.
    "keras_bn": {"train_bn": False, "lr_mult": 100, "base_lr": 2e-3, "head": "fastai"},
    "keras_bn_lr_mult10": {"train_bn": False, "lr_mult": 10, "base_lr": 2e-3, "head": "fastai"},
    "keras_bn_linear_head": {"train_bn": False, "lr_mult": 100, "base_lr": 2e-3, "head": "linear"},
    "fastai_bn_lr_mult10": {"train_bn": True, "lr_mult": 10, "base_lr": 2e-3, "head": "fastai"},
}


def run(name: str, folder: Path, setup: Setup, seed: int) -> dict:
    """One fine_tune(2) with the named configuration; returns its numbers."""
    config = CONFIGS[name]
    dls = ImageDataLoaders.from_folder(folder, size=setup.size, bs=setup.batch_size, seed=seed)
    learn = vision_learner(dls, "efficientnet_lite0", metrics=["error_rate"], train_bn=config["train_bn"],
                           head=config["head"], seed=seed, quiet=True)
    start = time.perf_counter()
    learn.fine_tune(setup.epochs, base_lr=config["base_lr"], lr_mult=config["lr_mult"])
    wall = time.perf_counter() - start
    times = [row["time"] for row in learn.recorder.history]
    return {
        "config": name, **config, "seed": seed, "error": learn.recorder.history[-1]["error_rate"],
        "frozen_epoch_error": learn.recorder.history[0]["error_rate"], "wall_s": wall,
        "frozen_over_unfrozen": times[0] / statistics.median(times[1:]),
    }


def epoch_costs(folder: Path, setup: Setup, train_bn: bool) -> dict:
    """Seconds of one frozen and one unfrozen training epoch, with the decoded-image cache warm."""
    dls = ImageDataLoaders.from_folder(folder, size=setup.size, bs=setup.batch_size, seed=0)
    learn = vision_learner(dls, "efficientnet_lite0", train_bn=train_bn, seed=0, quiet=True)
    learn.fit(1, 1e-4)  # warms the cache (first pass decodes every image)
    costs = {}
    for phase in ("frozen", "unfrozen"):
        if phase == "unfrozen":
            learn.unfreeze()
        start = time.perf_counter()
        learn.fit(1, 1e-4)
        costs[phase] = time.perf_counter() - start
    return {"train_bn": train_bn, **costs, "ratio": costs["frozen"] / costs["unfrozen"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "defaults.md"))
    args = parser.parse_args()
    setup = Setup()
    torch.set_num_threads(setup.threads)
    folder = build_dataset(setup)
    rows = []
    for repeat in range(args.repeats):
        for name in args.configs.split(","):  # interleaved, so load changes hit every config alike
            rows.append(run(name, folder, setup, seed=repeat))
            print(json.dumps(rows[-1]), flush=True)
    costs = [epoch_costs(folder, setup, train_bn) for train_bn in (False, True)]
    for cost in costs:
        print(json.dumps(cost), flush=True)
    lines = [
        "# Choosing the defaults: fine_tune(2), Fashion-MNIST 2,000/1,000 at 64 px, efficientnet_lite0, bs 64",
        "",
        f"Machine: {json.dumps(machine_info())}",
        "",
        f"Command: `.venv/bin/python benchmarks/tune_defaults.py --repeats {args.repeats}`",
        "",
        "| config | train_bn | lr_mult | base_lr | head | error (median) | frozen-epoch error | wall s "
        "| first/unfrozen epoch time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.configs.split(","):
        mine = [r for r in rows if r["config"] == name]
        c = CONFIGS[name]
        med = {k: statistics.median(r[k] for r in mine) for k in ("error", "frozen_epoch_error", "wall_s",
                                                                  "frozen_over_unfrozen")}
        lines.append(f"| {name} | {c['train_bn']} | {c['lr_mult']} | {c['base_lr']} | {c['head']} | "
                     f"{med['error']:.1%} | {med['frozen_epoch_error']:.1%} | {med['wall_s']:.1f} | "
                     f"{med['frozen_over_unfrozen']:.2f} |")
    lines += [
        "",
        "Epoch cost with the decoded-image cache warm (training + validation, seconds):",
        "",
        "| train_bn | frozen epoch | unfrozen epoch | frozen / unfrozen |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c['train_bn']} | {c['frozen']:.1f} | {c['unfrozen']:.1f} | {c['ratio']:.2f} |" for c in costs]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
