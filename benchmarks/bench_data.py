"""Data pipeline throughput: images/s in the first epoch (decode + resize + cache) vs later epochs.

Builds 10,000 Fashion-MNIST PNGs with scripts/make_fashion_mnist.py (upscaled to --png-size px) unless
--data points at an image folder, then times full passes over the training loader:
  first epoch  = a fresh ImageDataLoaders, so every image is decoded by the worker processes;
  later epochs = the same loaders again, served from the uint8 cache.
Each number is the median of --repeats runs. Augmentation is off by default: on a GPU it costs little,
and on these 2 CPU cores it would dominate both numbers (--augment measures it anyway).

    .venv/bin/python benchmarks/bench_data.py                 # 224 px PNGs, size 64, bs 64
    .venv/bin/python benchmarks/bench_data.py --png-size 28   # native 28 px PNGs
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from unfreeze.data import ImageDataLoaders

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_data(folder: Path, n_images: int, png_size: int) -> None:
    if (folder / "train").is_dir():
        return
    print(f"building {n_images} PNGs at {png_size} px in {folder} ...", flush=True)
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_fashion_mnist.py"), "--out", str(folder),
                    "--n-train", str(n_images), "--n-valid", "100", "--size", str(png_size)], check=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the decoding workers are joined per epoch)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_epoch(loader) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, images) of one full pass. CPU time stays meaningful on a shared machine."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    seen = sum(len(labels) for _, labels in loader)
    return time.perf_counter() - start, cpu_seconds() - start_cpu, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="image folder (default: build one)")
    parser.add_argument("--n-images", type=int, default=10_000)
    parser.add_argument("--png-size", type=int, default=224, help="side of the generated PNGs")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--augment", action="store_true", help="include CPU batch augmentation")
    args = parser.parse_args()
    data = args.data or REPO / "benchmarks" / ".work" / f"fashion{args.n_images}_{args.png_size}px"
    build_data(data, args.n_images, args.png_size)
    torch.set_num_threads(os.cpu_count() or 1)

    first, later, first_cpu, later_cpu = [], [], [], []
    for repeat in range(args.repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the 100-image valid split: no warning matters here
            dls = ImageDataLoaders.from_folder(data, seed=repeat, size=args.size, bs=args.bs,
                                               augment=args.augment, num_workers=args.num_workers)
        seconds, cpu, seen = timed_epoch(dls.train)
        first.append(seen / seconds)
        first_cpu.append(seen / cpu)
        for epoch in range(1, 3):
            dls.train.set_epoch(epoch)
            seconds, cpu, seen = timed_epoch(dls.train)
            later.append(seen / seconds)
            later_cpu.append(seen / cpu)
        print(f"repeat {repeat}: first {first[-1]:,.0f} img/s, later {later[-2]:,.0f} / {later[-1]:,.0f} img/s",
              flush=True)

    first_median, later_median = statistics.median(first), statistics.median(later)
    print(f"\nmachine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"torch {torch.__version__}; workers {dls.train.num_workers}; "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"data: {seen} training images, PNG {args.png_size} px, loader size {args.size}, bs {args.bs}, "
          f"augment {'on (CPU)' if args.augment else 'off'}")
    print(f"first epoch:  {first_median:,.0f} images/s (median of {len(first)})")
    print(f"later epochs: {later_median:,.0f} images/s (median of {len(later)})")
    print(f"ratio later/first: {later_median / first_median:.1f}x wall clock")
    cpu_ratio = statistics.median(later_cpu) / statistics.median(first_cpu)
    print(f"per CPU-second: first {statistics.median(first_cpu):,.0f}, later {statistics.median(later_cpu):,.0f} "
          f"images (ratio {cpu_ratio:.1f}x)")
    command = " ".join(["python", "benchmarks/bench_data.py", *sys.argv[1:]])
    print(f"reproduce: {command}")


if __name__ == "__main__":
    main()
