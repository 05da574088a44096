"""One-GPU benchmark (issue 7): full Fashion-MNIST at 112 px, efficientnet_lite0, unfreeze vs a plain loop.

    .venv/bin/python benchmarks/bench_gpu.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --quick    # a dry run of the script itself

What it measures, in one process and in this order:
1. The data: 60,000 training and 10,000 test images written as PNG folders, then read with
   `ImageDataLoaders.from_folder` and `preload()` (decode in worker processes, move to the GPU).
2. The plain PyTorch floor: timm efficientnet_lite0, bf16 autocast, channels_last, fused AdamW, random
   data already on the GPU, no loss read back: the training images/s that no library can beat.
3. unfreeze's own training step on that same synthetic batch (the loop's overhead, no data loading).
4. unfreeze end to end, `fine_tune` recipes timed from the call to the last validation, with the
   training images/s of every epoch (time from before_epoch to the last step's loss read back).
5. Two ablations of one unfrozen epoch: the host-side cache (pixels cross every batch) and the loss
   read back synchronously after every step.

Validation uses the 10,000 t10k images, so the reported accuracy is the test accuracy.
The plain floor is the faster of `torch.backends.cudnn.benchmark` off and on; unfreeze's `fit` turns it
on by itself on CUDA (gpu_run2.md was measured before it did, at about 9,300 images/s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import common
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(common.REPO_ROOT / "src"))  # runs from a checkout without installing too

from unfreeze.data import ImageDataLoaders
from unfreeze.train.builders import vision_learner
from unfreeze.train.callbacks import Callback

SIZE, BATCH = 112, 256  # the setting; --quick shrinks both


def _write_chunk(task: tuple[str, np.ndarray, np.ndarray, int]) -> int:
    folder, images, labels, first = task
    for offset, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = Path(folder) / common.FASHION_MNIST_CLASSES[label] / f"{first + offset:05d}.png"
        Image.fromarray(image, mode="L").save(path)
    return len(images)


def write_folders(source: Path, root: Path, n_train: int | None, n_test: int | None) -> dict[str, int]:
    """train/<class>/*.png from the idx training split and valid/<class>/*.png from t10k."""
    counts = {}
    splits = (("train", "train", n_train), ("valid", "t10k", n_test))
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for split, prefix, limit in splits:
            images = common.read_idx(source / f"{prefix}-images-idx3-ubyte.gz")[:limit]
            labels = common.read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")[:limit]
            for name in common.FASHION_MNIST_CLASSES:
                (root / split / name).mkdir(parents=True, exist_ok=True)
            chunks = [(str(root / split), images[i : i + 2000], labels[i : i + 2000], i)
                      for i in range(0, len(images), 2000)]
            counts[split] = sum(pool.map(_write_chunk, chunks))
    return counts


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step: Callable[[], Any], device: torch.device, warmup: int, steps: int, batch: int) -> float:
    """Training images/s of `step` (one batch of `batch` images) after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return batch * steps / (time.perf_counter() - start)


def plain_synthetic(device: torch.device, warmup: int, steps: int, size: int, batch: int) -> float:
    """The floor: timm model, bf16 autocast, channels_last, fused AdamW, data already on the device."""
    import timm

    model = timm.create_model("efficientnet_lite0", num_classes=10).to(device, memory_format=torch.channels_last)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5, **fused)
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return images_per_second(step, device, warmup, steps, batch)


class EpochClock(Callback):
    """Training-only seconds per epoch: from before_epoch to the last step's loss read on the host."""

    _watches_batches_only = True  # it only records: the loop may keep reading losses one step late

    def __init__(self, n_items: int) -> None:
        self.n_items, self.epochs, self._start, self._last = n_items, [], 0.0, 0.0

    def before_epoch(self, epoch: int) -> None:
        self._start = self._last = time.perf_counter()

    def after_batch(self, step: int, logs: dict[str, float]) -> None:
        self._last = time.perf_counter()  # the loss was read, so this step has finished on the GPU

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        seconds = self._last - self._start
        self.epochs.append({"train_s": round(seconds, 3), "images_per_s": round(self.n_items / seconds, 1),
                            "accuracy": round(logs.get("accuracy", math.nan), 4)})


# name → (augment, unfrozen epochs, vision_learner options, fine_tune options). gpu_run1.md had 1+3 epochs.
TUNED = {"base_lr": 4e-3, "lr_mult": 10}
RECIPES: dict[str, tuple[bool, int, dict[str, Any], dict[str, Any]]] = {
    "tuned": (False, 4, {"train_bn": True, "seed": 0}, TUNED),
    "tuned-seed1": (False, 4, {"train_bn": True, "seed": 1}, TUNED),
    "tuned-smooth": (False, 4, {"train_bn": True, "seed": 0, "label_smoothing": 0.1}, TUNED),
    "tuned-smooth-seed1": (False, 4, {"train_bn": True, "seed": 1, "label_smoothing": 0.1}, TUNED),
    "defaults-noaug": (False, 4, {"seed": 0}, {}),
    "defaults-noaug-5": (False, 5, {"seed": 0}, {}),
    "defaults": (True, 4, {"seed": 0}, {}),
}


def run_recipe(dls: ImageDataLoaders, device: torch.device, name: str, quick: bool) -> dict[str, Any]:
    """A fresh pretrained learner, then `fine_tune(epochs, **options)`, timed end to end."""
    from unfreeze.data.transforms import BatchAugment

    augment, epochs, learner_options, options = RECIPES[name]
    epochs = 1 if quick else epochs
    dls.train.augment = BatchAugment() if augment else None
    smoothing = learner_options.get("label_smoothing", 0.0)
    learn = vision_learner(dls, "efficientnet_lite0", metrics=["accuracy"], train_bn=learner_options.get("train_bn"),
                           seed=learner_options["seed"], device=device,
                           loss_func=torch.nn.CrossEntropyLoss(label_smoothing=smoothing))
    clock = EpochClock(len(dls.train) * dls.train.batch_size)
    synchronize(device)
    start = time.perf_counter()
    learn.fine_tune(epochs, callbacks=[clock], **options)
    synchronize(device)
    seconds = time.perf_counter() - start
    frozen, unfrozen = clock.epochs[:1], clock.epochs[1:]
    result = {
        "recipe": name, "augment": augment, "epochs": f"1+{epochs}", "train_bn": learn.train_bn,
        "seed": learner_options["seed"], "label_smoothing": smoothing, **options,
        "fine_tune_s": round(seconds, 2), "test_accuracy": clock.epochs[-1]["accuracy"],
        "frozen_images_per_s": frozen[0]["images_per_s"],
        "unfrozen_images_per_s_median": round(statistics.median(e["images_per_s"] for e in unfrozen), 1),
        "per_epoch": clock.epochs,
    }
    print(json.dumps(result), flush=True)
    return result


def ablation_epoch(dls: ImageDataLoaders, device: torch.device, name: str, device_cache: bool,
                   overlap: bool) -> dict[str, Any]:
    """Training images/s of the second of two unfrozen epochs, with one part of the GPU path turned off."""
    dls.train.augment = None
    dls.train.device_cache = device_cache
    learn = vision_learner(dls, "efficientnet_lite0", metrics=["accuracy"], seed=0, device=device, quiet=True)
    learn._overlap_steps = overlap and device.type == "cuda"
    learn.unfreeze()
    clock = EpochClock(len(dls.train) * dls.train.batch_size)
    learn.fit(2, 1e-4, callbacks=[clock])
    dls.train.device_cache = None
    result = {"ablation": name, "images_per_s": clock.epochs[-1]["images_per_s"]}
    print(json.dumps(result), flush=True)
    return result


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The results table of gpu.json, for the README and the closing note."""
    plain, off, on = (report[key] for key in ("plain_synthetic", "plain_synthetic_cudnn_benchmark_off",
                                              "plain_synthetic_cudnn_benchmark_on"))
    lines = [
        f"# One GPU: {report.get('gpu', 'no GPU')}, efficientnet_lite0 at {report['size']} px, "
        f"batch {report['batch_size']}",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; {report['machine']['date']}; "
        + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),
        f"Data: {report['data']['counts']} PNGs; writing them {report['data']['write_png_s']} s; "
        f"from_folder + preload (decode, move to the GPU) {report['data']['preload_s']} s "
        f"(GPU-resident: {report['data']['on_device']}).",
        "",
        "| training images/s | value | vs plain loop |",
        "| --- | ---: | ---: |",
        f"| plain loop, synthetic data on the GPU, cudnn.benchmark off | {off:,.0f} | {off / plain:.2f} |",
        f"| plain loop, cudnn.benchmark on | {on:,.0f} | {on / plain:.2f} |",
        f"| unfreeze train_step, synthetic data | {report['unfreeze_step_synthetic']:,.0f} | "
        f"{report['unfreeze_step_synthetic'] / plain:.2f} |",
    ]
    for ablation in report["ablations"]:
        lines.append(f"| unfreeze unfrozen epoch, real data: {ablation['ablation']} | "
                     f"{ablation['images_per_s']:,.0f} | {ablation['images_per_s'] / plain:.2f} |")
    lines += ["", "| fine_tune recipe | epochs | augment | train_bn | seed | total s | test accuracy | frozen img/s "
              "| unfrozen img/s (median) |", "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for recipe in report["recipes"]:
        options = ", ".join(f"{key} {recipe[key]}" for key in ("base_lr", "lr_mult", "label_smoothing")
                            if recipe.get(key))
        lines.append(f"| {recipe['recipe']} {options} | {recipe['epochs']} | {recipe['augment']} | "
                     f"{recipe['train_bn']} | {recipe.get('seed', 0)} | "
                     f"{recipe['fine_tune_s']:.1f} | {100 * recipe['test_accuracy']:.2f}% | "
                     f"{recipe['frozen_images_per_s']:,.0f} | {recipe['unfrozen_images_per_s_median']:,.0f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=common.FASHION_MNIST_DIR, help="folder of the idx .gz files")
    parser.add_argument("--work", type=Path, default=common.WORK_DIR / "fashion-full", help="PNG folders go here")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR, help="gpu.json and gpu.md go here")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="512/256 images, 1+1 epochs: checks the script")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--no-ablations", action="store_true", help="skip the one-epoch ablations")
    args = parser.parse_args()
    device = torch.device(args.device)
    quick = args.quick
    size, batch = (32, 64) if quick else (SIZE, BATCH)
    report: dict[str, Any] = {"machine": common.machine_info(), "size": size, "batch_size": batch,
                              "versions": common.library_versions(["torch", "torchvision", "timm"])}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    print(json.dumps(report), flush=True)

    start = time.perf_counter()
    counts = write_folders(args.source, args.work, 512 if quick else None, 256 if quick else None)
    report["data"] = {"counts": counts, "write_png_s": round(time.perf_counter() - start, 2)}
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(args.work, size=size, bs=batch, seed=0, cache_bytes=2**34, device=device)
    dls.preload()
    report["data"]["preload_s"] = round(time.perf_counter() - start, 2)
    report["data"]["on_device"] = dls.train._store is not None and dls.valid._store is not None
    print(json.dumps(report["data"]), flush=True)

    warmup, steps = (2, 3) if quick else (20, 100)
    torch.backends.cudnn.benchmark = False
    report["plain_synthetic_cudnn_benchmark_off"] = round(plain_synthetic(device, warmup, steps, size, batch), 1)
    torch.backends.cudnn.benchmark = True
    report["plain_synthetic_cudnn_benchmark_on"] = round(plain_synthetic(device, warmup, steps, size, batch), 1)
    # Back to PyTorch's default: unfreeze's fit turns it on by itself, as users get it.
    torch.backends.cudnn.benchmark = False
    report["plain_synthetic"] = max(report["plain_synthetic_cudnn_benchmark_on"],
                                    report["plain_synthetic_cudnn_benchmark_off"])
    learn = vision_learner(dls, "efficientnet_lite0", seed=0, device=device, quiet=True)
    learn.unfreeze()
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    learn.set_train_mode()
    report["unfreeze_step_synthetic"] = round(
        images_per_second(lambda: learn.train_step(images, labels, skip_non_finite=False), device, warmup, steps,
                          batch), 1)
    learn = None  # free its GPU memory before the recipes
    print(json.dumps({key: report[key] for key in report if key.startswith(("plain", "unfreeze_step"))}), flush=True)

    report["recipes"] = [run_recipe(dls, device, name, quick) for name in args.recipes.split(",")]
    report["ablations"] = [] if args.no_ablations else [
        ablation_epoch(dls, device, "GPU store + overlapped steps (default)", True, True),
        ablation_epoch(dls, device, "host cache: pixels cross every batch", False, True),
        ablation_epoch(dls, device, "loss read back after every step", True, False),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, args.out / "gpu.md")
    print((args.out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
