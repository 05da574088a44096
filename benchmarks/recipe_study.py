"""The recipe study: which fine-tuning recipe gives the lowest held-out error for the time of fastai's fine_tune(2).

One command builds the datasets, runs every candidate recipe through the public Python API in a fresh
subprocess (so its wall time includes Python start-up and imports, like fastai's process), and writes
benchmarks/results/recipe.md (table of mean and spread) and benchmarks/results/recipe.json (every run):

    .venv/bin/python benchmarks/recipe_study.py               # screen, confirm, other datasets (~60 min, 2 cores)
    .venv/bin/python benchmarks/recipe_study.py --quick       # smoke run: tiny data, 1 seed, 3 candidates
    .venv/bin/python benchmarks/recipe_study.py --report-only # rewrite the table from recipe.json

Stages (`--stages`; each run appends to recipe.json at once, and a run already there is not repeated, so a
stopped study continues where it stopped):
1. fastai 2.8 fine_tune(2) on Fashion-MNIST 2,000/1,000 at 64 px (benchmarks/run_fastai.py, 1 seed);
2. screen: every candidate on that split with seed 0;
3. confirm: the 2 best candidates no slower than fastai, unfreeze's fine_tune(2) and fastai, seeds 0-2;
4. the best confirmed candidate and fine_tune(2) on the other sets: sklearn digits (8×8 upscaled) at
   32, 64 and 96 px, a multi-label mosaic set (threshold chosen on half the validation set, scored on
   the other half), a long-tailed imbalanced set, and Fashion-MNIST 1,000/500 at 128 px.
All sets come from local files: Debian's Fashion-MNIST (its training split only) and scikit-learn's
bundled digits.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

RECIPE_DIR = common.WORK_DIR / "recipe"
VENV_PYTHON = common.REPO_ROOT / ".venv" / "bin" / "python"
FASTAI_PYTHON = common.REPO_ROOT / ".venv-fastai" / "bin" / "python"
MARKER = "RECIPE_RESULT "


@dataclass(frozen=True)
class Recipe:
    """One candidate: data options, learner options and the fine_tune plan, all public API settings."""

    size: int = 64
    augment: str = "default"  # none / light / default / strong (unfreeze.data.augment.augment_preset)
    flip: bool | str = True  # "auto": fit_recipe decides from the training images (train/flip_check.py)
    head: str = "fastai"  # vision_learner's head: "fastai" or "linear"
    frozen_groups: int = 0  # body groups left frozen when the body trains (fit_recipe's frozen_groups)
    progressive: bool = False  # fit_recipe's progressive resizing (the frozen phase at 3/4 of the size)
    train_bn: bool = False
    n_groups: int = 3
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: bool = False
    freeze_epochs: int = 1
    epochs: int = 2
    base_lr: float = 2e-3
    lr_mult: float = 100.0
    pct_start: float = 0.3
    div: float = 5.0
    class_weights: str | None = None
    bs: int = 64


FT2 = Recipe()  # unfreeze's fine_tune(2) with its defaults (default augmentation, Keras BN)
BASE = Recipe(augment="none", epochs=4, base_lr=4e-3, lr_mult=10)
FT4 = replace(FT2, epochs=4)  # fine_tune(4): the defaults with two more unfrozen epochs
WARM4 = replace(FT4, pct_start=0.5, div=25.0)  # the first round's chosen recipe
# This round's choice, what `Recipe()` holds: a linear head, the first body group frozen, lr 4e-3 with
# the body at 1/10 of it, 6 unfrozen epochs, flips decided from the images.
RECIPE2 = replace(WARM4, epochs=6, head="linear", base_lr=4e-3, lr_mult=10.0, frozen_groups=1, flip="auto")


CANDIDATES: dict[str, Recipe] = {
    "fine_tune2": FT2,
    "fine_tune2_noaug": replace(FT2, augment="none"),
    # A higher body LR (lr_mult 10 or 3), no augmentation: the first screen (recipe.json) showed the
    # validation loss exploding after unfreezing with these, so the later candidates start from FT4.
    "e4_m10_lr4": BASE,
    "e4_m3_lr4": replace(BASE, lr_mult=3),
    "fine_tune4": FT4,
    "fine_tune5": replace(FT2, epochs=5),
    "ft4_m30": replace(FT4, lr_mult=30),
    "ft4_lr4": replace(FT4, base_lr=4e-3),
    "ft4_bn": replace(FT4, train_bn=True),
    "ft4_warm0.5_div25": replace(FT4, pct_start=0.5, div=25.0),
    "ft4_warm0.1": replace(FT4, pct_start=0.1),
    "ft4_fe2": replace(FT4, freeze_epochs=2, epochs=3),
    "ft4_light": replace(FT4, augment="light"),
    "ft4_strong": replace(FT4, augment="strong"),
    "ft4_noaug": replace(FT4, augment="none"),
    "ft4_ls": replace(FT4, label_smoothing=0.1),
    "ft4_wd0.1": replace(FT4, weight_decay=0.1),
    "ft4_mixup": replace(FT4, mixup=0.2),
    "ft4_cutmix": replace(FT4, cutmix=1.0),
    "ft4_ema": replace(FT4, ema=True),
    "ft4_groups5": replace(FT4, n_groups=5),
    "ft3_size96": replace(FT2, epochs=3, size=96),
    "ft3_size80": replace(FT2, epochs=3, size=80),  # upscaled: 3×3 final map, about fastai's CPU time
    "ft3_size80_ema": replace(FT2, epochs=3, size=80, ema=True),
    # More optimizer steps for the same images: with 2,000 images a batch of 64 gives only 32 steps an
    # epoch, and a CPU's cost per image barely depends on the batch size.
    "ft4_bs32": replace(FT4, bs=32),
    "ft4_bs32_warm": replace(FT4, bs=32, pct_start=0.5, div=25.0),
    "ft4_bs16_warm": replace(FT4, bs=16, pct_start=0.5, div=25.0),
    "ft3_size80_bs32_warm": replace(FT2, epochs=3, size=80, bs=32, pct_start=0.5, div=25.0),
    # Second round (2026-12-02): the first body group frozen when the body trains (freeze_to(1): its LR
    # was the head's / 100, and skipping its backward saves about a quarter of an unfrozen epoch), more
    # epochs with the time saved, fastai's head against a linear one, higher LRs for the body.
    "ft4_warm_fg1": replace(WARM4, frozen_groups=1),
    "ft6_warm_fg1": replace(WARM4, frozen_groups=1, epochs=6),
    "ft6_warm_fg1_m10": replace(WARM4, frozen_groups=1, epochs=6, lr_mult=10),
    "ft6_warm_fg1_lr4": replace(WARM4, frozen_groups=1, epochs=6, base_lr=4e-3),
    "ft6_warm_fg1_linear_lr4": replace(WARM4, frozen_groups=1, epochs=6, head="linear", base_lr=4e-3),
    "ft6_warm_fg1_linear_lr8": replace(WARM4, frozen_groups=1, epochs=6, head="linear", base_lr=8e-3),
    "ft6_warm_fg1_linear_lr4_m3": replace(RECIPE2, lr_mult=3),
    "ft6_warm_fg1_linear_lr8_m10": replace(RECIPE2, base_lr=8e-3),
    "ft6_warm_fg1_linear_lr4_m10_pct0.3": replace(RECIPE2, pct_start=0.3),
    "ft5_warm_fg1_linear_lr4_m10": replace(RECIPE2, epochs=5),
    "recipe2": RECIPE2,  # the chosen default: ft6_warm_fg1_linear_lr4_m10 with flip="auto"
    "recipe2_e7": replace(RECIPE2, epochs=7),
    "recipe2_e8": replace(RECIPE2, epochs=8),
    "recipe2_noflip": replace(RECIPE2, flip=False),
    # The rest of the list, on top of the chosen recipe.
    "recipe2_mixup": replace(RECIPE2, mixup=0.2),
    "recipe2_cutmix": replace(RECIPE2, cutmix=1.0),
    "recipe2_strong": replace(RECIPE2, augment="strong"),
    "recipe2_light": replace(RECIPE2, augment="light"),
    "recipe2_ls": replace(RECIPE2, label_smoothing=0.1),
    "recipe2_ema": replace(RECIPE2, ema=True),
    "recipe2_wd0.1": replace(RECIPE2, weight_decay=0.1),
    "recipe2_fe0": replace(RECIPE2, freeze_epochs=0),
    "recipe2_fe2": replace(RECIPE2, freeze_epochs=2, epochs=5),
    "recipe2_progressive": replace(RECIPE2, progressive=True),
    "recipe2_fg0": replace(RECIPE2, frozen_groups=0),
    "recipe2_flip": replace(RECIPE2, flip=True),
}
# Screened by default, in this order: the machine is shared by several jobs, so the list is what an hour
# of a loaded 2-core machine allows; `--candidates` screens others from CANDIDATES.
SCREEN = ("fine_tune2", "fine_tune4", "ft4_warm0.5_div25", "ft4_bn", "ft4_m30", "ft4_lr4", "ft4_light", "ft4_ls",
          "ft4_ema", "ft4_mixup", "ft3_size96", "fine_tune5", "ft4_strong")
QUICK_CANDIDATES = ("fine_tune2", "fine_tune4", "ft4_mixup")


# ---------------------------------------------------------------------------------------------- datasets


def fashion_training_split() -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's training images and labels (the benchmark sets are built from this split only)."""
    images = common.read_idx(common.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
    labels = common.read_idx(common.FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")
    return images, labels


def save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode="L").save(path)


def build_digits(quick: bool) -> Path:
    """sklearn's 1,797 8×8 digits as PNG folders: 1,200 train / 597 valid (seeded)."""
    root = RECIPE_DIR / ("digits_quick" if quick else "digits")
    if (root / ".complete").exists():
        return root
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(pixels))
    n_train = 200 if quick else 1200
    n_valid = 100 if quick else len(pixels) - n_train
    for split, indices in (("train", order[:n_train]), ("valid", order[n_train : n_train + n_valid])):
        for index in indices:
            save_png(pixels[index], root / split / str(digits.target[index]) / f"{index:04d}.png")
    (root / ".complete").write_text("sklearn load_digits\n")
    return root


def build_imbalanced(quick: bool) -> Path:
    """Fashion-MNIST with a long tail: class c has round(500 · 0.1^(c/9)) training images (500 .. 50),
    the validation set 100 per class. Drawn from images the 2,000/1,000 split does not use."""
    root = RECIPE_DIR / ("imbalanced_quick" if quick else "imbalanced")
    if (root / ".complete").exists():
        return root
    images, labels = fashion_training_split()
    order = np.random.default_rng(7).permutation(len(images))[10_000:]
    scale = 0.1 if quick else 1.0
    for cls, name in enumerate(common.FASHION_MNIST_CLASSES):
        mine = order[labels[order] == cls]
        n_train = max(3, round(500 * scale * 0.1 ** (cls / 9)))
        n_valid = max(5, round(100 * scale))
        for split, chosen in (("train", mine[:n_train]), ("valid", mine[n_train : n_train + n_valid])):
            for index in chosen:
                save_png(images[index], root / split / name / f"{index:05d}.png")
    (root / ".complete").write_text("long-tailed Fashion-MNIST\n")
    return root


def build_multilabel(quick: bool) -> Path:
    """Mosaics of 1-3 Fashion-MNIST items on a 2×2 grid (56×56); the label is the set of classes
    present. 1,000 train / 500 valid; labels.csv with a space-separated label column and is_valid."""
    root = RECIPE_DIR / ("multilabel_quick" if quick else "multilabel")
    if (root / ".complete").exists():
        return root
    images, labels = fashion_training_split()
    rng = np.random.default_rng(11)
    pool = rng.permutation(len(images))[20_000:]
    n_train, n_valid = (120, 60) if quick else (1000, 500)
    rows, cursor = [], 0
    for index in range(n_train + n_valid):
        canvas = np.zeros((56, 56), dtype=np.uint8)
        count = int(rng.integers(1, 4))
        cells = rng.choice(4, count, replace=False)
        present = set()
        for cell in cells:
            item = pool[cursor]
            cursor += 1
            top, left = 28 * (cell // 2), 28 * (cell % 2)
            canvas[top : top + 28, left : left + 28] = images[item]
            present.add(common.FASHION_MNIST_CLASSES[labels[item]])
        name = f"images/{index:05d}.png"
        save_png(canvas, root / name)
        rows.append((name, " ".join(sorted(present)), index >= n_train))
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "labels", "is_valid"])
        writer.writerows(rows)
    (root / ".complete").write_text("multi-label mosaics\n")
    return root


def build_fashion(quick: bool, n_train: int = 2000, n_valid: int = 1000) -> Path:
    """Fashion-MNIST n_train/n_valid from its training split (common.build_dataset, fixed split seed)."""
    if quick:
        n_train, n_valid = 256, 128
    return common.build_dataset(common.Setup(n_train=n_train, n_valid=n_valid))


# ---------------------------------------------------------------------------------------------- one run


def train_once(recipe: Recipe, dataset: str, root: Path, seed: int) -> dict[str, Any]:
    """Train one recipe on one dataset through the public API; returns its numbers (runs in a worker)."""
    import torch

    torch.set_num_threads(common.Setup().threads)  # BENCH_THREADS, set by the study
    from unfreeze import EMA, ImageDataLoaders, vision_learner
    from unfreeze.data.augment import augment_preset
    from unfreeze.inference.thresholds import best_threshold, best_thresholds
    from unfreeze.train.metrics import f1_multi
    from unfreeze.train.mixup import MixupCutmix

    start = time.perf_counter()
    # flip="auto" leaves the preset to fit_recipe, which decides the flips from the training images.
    augment = None if recipe.flip == "auto" else augment_preset(recipe.augment, flip=recipe.flip)
    options = {"size": recipe.size, "bs": recipe.bs, "augment": augment or False, "num_workers": 0, "device": "cpu"}
    if dataset == "multilabel":
        dls = ImageDataLoaders.from_csv(root, "labels.csv", fn_col="file", label_col="labels", valid_col="is_valid",
                                        label_delim=" ", seed=seed, **options)
    else:
        dls = ImageDataLoaders.from_folder(root, seed=seed, **options)
    metrics = dls.task.default_metrics() if dataset == "multilabel" else ["error_rate", "f1_score"]
    loss = dls.task.loss(label_smoothing=recipe.label_smoothing) if recipe.label_smoothing else None
    learn = vision_learner(dls, "efficientnet_lite0", metrics=metrics, n_groups=recipe.n_groups,
                           train_bn=recipe.train_bn, seed=seed, quiet=True, weight_decay=recipe.weight_decay,
                           loss_func=loss, class_weights=recipe.class_weights, head=recipe.head)
    callbacks: list[Any] = []
    if recipe.mixup or recipe.cutmix:
        callbacks.append(MixupCutmix(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix))
    if recipe.ema:
        callbacks.append(EMA())
    setup_s = time.perf_counter() - start
    # fit_recipe with frozen_groups=0 and the loader's own augmentation (augment=None) is fine_tune exactly
    # (tests/train/test_recipe.py); the loss and weight decay are the learner's, set above.
    learn.fit_recipe(recipe.epochs, base_lr=recipe.base_lr, freeze_epochs=recipe.freeze_epochs,
                     lr_mult=recipe.lr_mult, pct_start=recipe.pct_start, div=recipe.div,
                     frozen_groups=recipe.frozen_groups, weight_decay=recipe.weight_decay,
                     progressive=recipe.progressive,
                     augment=recipe.augment if recipe.flip == "auto" else None,
                     flip=recipe.flip, callbacks=callbacks)
    fit_s = time.perf_counter() - start - setup_s
    history = learn.recorder.history
    result: dict[str, Any] = {
        "setup_s": setup_s, "fit_s": fit_s,
        "epochs": [{key: (round(value, 4) if isinstance(value, float) else value) for key, value in row.items()}
                   for row in history],
    }
    last = history[-1]
    if dataset == "multilabel":
        probs, targets = learn.get_preds()
        half = len(probs) // 2  # choose on the first half of the validation set, score on the second
        threshold, _ = best_threshold(probs[:half], targets[:half])
        per_class = best_thresholds(probs[:half], targets[:half])
        held_probs, held_targets = probs[half:], targets[half:]
        result.update({
            "f1_at_0.5": f1_multi(held_probs, held_targets, 0.5, sigmoid=False),
            "threshold": threshold, "f1_at_best": f1_multi(held_probs, held_targets, threshold, sigmoid=False),
            "f1_per_class_thresholds": _f1_per_class(held_probs, held_targets, per_class),
            "error": 1.0 - f1_multi(held_probs, held_targets, threshold, sigmoid=False),
        })
    else:
        result.update({"error": float(last["error_rate"]), "f1": float(last["f1_score"])})
        frozen = [row for row in history[: recipe.freeze_epochs]]
        if frozen and len(history) > recipe.freeze_epochs:
            first = history[recipe.freeze_epochs]
            result["first_unfrozen_delta"] = float(first["error_rate"]) - float(frozen[-1]["error_rate"])
            result["first_unfrozen_valid_loss_delta"] = float(first["valid_loss"]) - float(frozen[-1]["valid_loss"])
    return result


def _f1_per_class(probs: Any, targets: Any, thresholds: Any) -> float:
    from unfreeze.train.metrics import f1_multi

    # f1_multi's threshold broadcasts against the probabilities: a [C] tensor gives per-class thresholds.
    return f1_multi(probs, targets, thresholds, sigmoid=False)


def worker(spec: str) -> None:
    """Entry point of a run's subprocess: `--worker JSON` with recipe, dataset, root and seed."""
    job = json.loads(spec)
    result = train_once(Recipe(**job["recipe"]), job["dataset"], Path(job["root"]), job["seed"])
    print(MARKER + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------- study


def _timed_run(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str, float, float]:
    """Run a command; return its exit code, stdout, stderr, wall seconds and CPU seconds (user + system).

    CPU seconds are those of this one child (`os.wait4`), so they stay right when runs go in parallel;
    with one thread per run they are what the run costs on an idle core, while on this shared machine
    the wall time also carries the other jobs' load.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        assert process.stdout is not None
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        errors.seek(0)
        stderr = errors.read()
    return process.returncode, stdout, stderr, time.perf_counter() - start, usage.ru_utime + usage.ru_stime


class Study:
    """Runs jobs in subprocesses and keeps every result in recipe.json (written after each run)."""

    def __init__(self, out_dir: Path, quick: bool, jobs: int = 1, threads: int = 2) -> None:
        self.out_dir, self.quick, self.jobs, self.threads = out_dir, quick, jobs, threads
        self.lock = threading.Lock()
        self.path = out_dir / "recipe.json"
        self.runs: list[dict[str, Any]] = json.loads(self.path.read_text())["runs"] if self.path.exists() else []

    def done(self, name: str, dataset: str, seed: int) -> dict[str, Any] | None:
        for run in self.runs:
            if (run["name"], run["dataset"], run["seed"]) == (name, dataset, seed):
                return run
        return None

    def record(self, run: dict[str, Any]) -> None:
        with self.lock:
            self.runs.append(run)
            self.save()
        print(json.dumps({k: run.get(k) for k in ("name", "dataset", "seed", "error", "process_cpu_s", "process_s",
                                                  "failed")}), flush=True)

    def run_all(self, jobs: list[tuple[Any, ...]]) -> None:
        """Run (name, recipe, dataset, root, seed) jobs, `self.jobs` at a time ("fastai" names fastai's runner)."""
        def one(job: tuple[Any, ...]) -> None:
            if job[0] == "fastai":
                self.fastai(job[1])
            else:
                self.unfreeze(*job)

        with ThreadPoolExecutor(self.jobs) as pool:
            list(pool.map(one, jobs))

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        payload = {"machine": common.machine_info(), "runs": self.runs,
                   "versions": common.library_versions(["unfreeze", "torch", "timm", "torchvision"])}
        self.path.write_text(json.dumps(payload, indent=1))
        write_report(self.out_dir, self.runs, payload["machine"])

    def unfreeze(self, name: str, recipe: Recipe, dataset: str, root: Path, seed: int) -> dict[str, Any]:
        known = self.done(name, dataset, seed)
        if known is not None:
            return known
        job = json.dumps({"recipe": asdict(recipe), "dataset": dataset, "root": str(root), "seed": seed})
        env = {**os.environ, "PYTHONPATH": str(common.REPO_ROOT / "src"), "MPLBACKEND": "Agg",
               "BENCH_THREADS": str(self.threads)}
        code, stdout, stderr, wall, cpu = _timed_run([sys.executable, __file__, "--worker", job], env)
        run = {"name": name, "runner": "unfreeze", "dataset": dataset, "seed": seed, "recipe": asdict(recipe),
               "threads": self.threads, "process_s": wall, "process_cpu_s": cpu, "load_avg_1m": os.getloadavg()[0]}
        lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
        if code != 0 or not lines:
            run["failed"] = stderr[-2000:]
        else:
            run.update(json.loads(lines[-1][len(MARKER) :]))
        self.record(run)
        return run

    def fastai(self, seed: int) -> dict[str, Any]:
        name = "fastai_fine_tune2" if self.threads == 2 else f"fastai_fine_tune2_{self.threads}thread"
        known = self.done(name, "fashion64", seed)
        if known is not None:
            return known
        command = [str(FASTAI_PYTHON), str(common.BENCH_DIR / "run_fastai.py"), "--scenario", "fine_tune",
                   "--seed", str(seed)] + (["--quick"] if self.quick else [])
        env = {**os.environ, "BENCH_THREADS": str(self.threads)}
        _, stdout, stderr, wall, cpu = _timed_run(command, env)
        run = {"name": name, "runner": "fastai", "dataset": "fashion64", "seed": seed, "threads": self.threads,
               "process_s": wall, "process_cpu_s": cpu, "load_avg_1m": os.getloadavg()[0]}
        try:
            result = common.parse_result(stdout)
            run.update({"error": result["error"], "fit_s": result["wall_s"], "setup_s": result["setup_s"]})
        except ValueError:
            run["failed"] = stderr[-2000:]
        self.record(run)
        return run


def _mean(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.fmean(values) if values else None


def _spread(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.stdev(values) if len(values) > 1 else None


def _fashion_groups(study: Study, budget: float) -> dict[str, list[dict[str, Any]]]:
    """Successful runs on the main split by candidate, without fine_tune(2) and over-budget candidates.

    Compared in CPU seconds (the machine is shared, wall times carry others' load); a 10% margin over
    fastai's timed run keeps near-equal recipes in.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in study.runs:
        if run["dataset"] == "fashion64" and run["runner"] == "unfreeze" and run["name"] in CANDIDATES \
                and run["name"] != "fine_tune2" and "error" in run:
            groups.setdefault(run["name"], []).append(run)
    in_time = {name: runs for name, runs in groups.items() if _mean(runs, "process_cpu_s") <= 1.1 * budget}
    return in_time or groups


def best_candidates(study: Study, budget: float, top: int) -> list[str]:
    """The `top` candidates by mean error, those measured with the most seeds first."""
    groups = _fashion_groups(study, budget)
    return sorted(groups, key=lambda name: (-len(groups[name]), _mean(groups[name], "error")))[:top]


def run_study(args: argparse.Namespace) -> None:
    out_dir = Path(args.out)
    study = Study(out_dir, args.quick, jobs=args.jobs, threads=args.threads)
    seeds = [0] if args.quick else list(range(args.seeds))
    stages = args.stages.split(",")
    fashion = build_fashion(args.quick)
    # 1. fastai's fine_tune(2), the time to beat, next to the first candidates.
    first = [("fastai", 0)]
    # 2. screen candidates with one seed on the main split, or on a 500/500 split (a quarter of the cost).
    if "screen" in stages:
        names = QUICK_CANDIDATES if args.quick else tuple(args.candidates.split(",")) if args.candidates else SCREEN
        screen_name, screen_root = "fashion64", fashion
        if args.screen_set == "small":
            screen_name, screen_root = "fashion64_500", build_fashion(args.quick, 500, 500)
        first += [(name, CANDIDATES[name], screen_name, screen_root, 0) for name in names]
    study.run_all(first)
    fastai_name = "fastai_fine_tune2" if args.threads == 2 else f"fastai_fine_tune2_{args.threads}thread"
    budget = _mean([run for run in study.runs if run["name"] == fastai_name], "process_cpu_s") or float("inf")
    # 3. confirm the best with repeated seeds, interleaved so that load changes hit every recipe alike.
    if "confirm" in stages:
        best = args.confirm.split(",") if args.confirm else best_candidates(study, budget, args.top)
        names = ("fine_tune2", *best)
        study.run_all([job for seed in seeds for job in (
            *([("fastai", seed)] if seed < args.fastai_seeds else []),
            *((name, CANDIDATES[name], "fashion64", fashion, seed) for name in names))])
    if "sets" not in stages:
        study.save()
        return
    # 4. the other datasets: the best candidate so far (or --winner) against fine_tune(2).
    winner_name = args.winner or best_candidates(study, budget, 1)[0]
    winner = CANDIDATES[winner_name]
    print(f"recipe for the other sets: {winner_name}", flush=True)
    sets, jobs = args.sets.split(","), []
    if "digits" in sets:
        digits = build_digits(args.quick)
        # A mirrored digit is another symbol (or none): a winner with flip="auto" decides that itself.
        digit_name, digit_recipe = ((winner_name, winner) if winner.flip == "auto" else
                                    (winner_name + "_noflip", replace(winner, flip=False)))
        jobs += [(name, replace(recipe, size=size), f"digits{size}", digits, 0) for size, name, recipe in (
            (32, "fine_tune2", FT2), (32, digit_name, digit_recipe), (64, digit_name, digit_recipe),
            (64, "fine_tune2", FT2), (96, digit_name, digit_recipe))]
    if "multilabel" in sets:
        multilabel = build_multilabel(args.quick)
        jobs += [(name, recipe, "multilabel", multilabel, 0) for name, recipe in (("fine_tune2", FT2),
                                                                                  (winner_name, winner))]
    if "imbalanced" in sets:
        imbalanced = build_imbalanced(args.quick)
        jobs += [(name, recipe, "imbalanced", imbalanced, 0) for name, recipe in (("fine_tune2", FT2),
                                                                                  (winner_name, winner))]
    if "fashion128" in sets:
        fashion128 = build_fashion(args.quick, 1000, 500)
        jobs += [(name, recipe, "fashion128", fashion128, 0) for name, recipe in (
            ("fine_tune2", replace(FT2, size=128)), (winner_name, replace(winner, size=128)))]
    study.run_all(jobs)
    study.save()


# ---------------------------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _recipe_text(recipe: dict[str, Any] | None) -> str:
    if recipe is None:
        return "fastai 2.8 fine_tune(2), its defaults"
    changed = {key: value for key, value in recipe.items() if getattr(FT2, key) != value}
    return ", ".join(f"{key}={value}" for key, value in changed.items()) or "unfreeze defaults, fine_tune(2)"


def write_report(out_dir: Path, runs: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    """benchmarks/results/recipe.md: per dataset and recipe, mean ± spread over seeds."""
    lines = [
        "# Recipe study: fine-tuning efficientnet_lite0 (bundled ImageNet weights), CPU",
        "",
        "Command: `.venv/bin/python benchmarks/recipe_study.py` (every run in a fresh process; `process CPU s` and",
        "`process wall s` are that whole process's, imports included, as for fastai's process; on this shared",
        "machine CPU seconds are the fair cost, wall seconds carry the other jobs' load). Error is on the held-out",
        "validation set; for the multi-label set it is 1 - macro F1 on the half of the validation set not used",
        "to choose the threshold. `first unfrozen Δ` is the error of the first unfrozen epoch minus the frozen",
        "epoch's.",
        "Spread is the standard deviation over seeds. The machine is shared: times carry its load (1-min load",
        "average of each run in recipe.json). The first round's runs (2026-12-02 before 06:00 UTC: the rows",
        "whose wall s are 2-10x their CPU s) shared 2 cores with several other jobs, which",
        "inflates CPU seconds too; the second round's (recipe2, ft*_fg1*, fine_tune2, fastai) ran on an idle",
        "machine. Compare times within a round; benchmarks/results/recipe_cli.md times the CLI side by side.",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('ram_gib')} GiB, "
        f"Python {machine.get('python')}, {machine.get('date')}.",
        "",
    ]
    datasets = sorted({run["dataset"] for run in runs}, key=lambda name: (name != "fashion64", name))
    for dataset in datasets:
        mine = [run for run in runs if run["dataset"] == dataset]
        names = sorted({run["name"] for run in mine})
        lines += [f"## {dataset}", "",
                  "| recipe | changes from unfreeze's fine_tune(2) | seeds | error (mean) | spread | process CPU s "
                  "| process wall s | fit wall s | first unfrozen Δ | extra |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        rows = []
        for name in names:
            group = [run for run in mine if run["name"] == name and "error" in run]
            failed = [run for run in mine if run["name"] == name and "failed" in run]
            if not group:
                lines_failed = failed[0]["failed"].strip().splitlines()[-1:] if failed else ["?"]
                rows.append((1.0, f"| {name} | failed: {lines_failed[0][:120]} | | | | | | | | |"))
                continue
            extra = ""
            if dataset == "multilabel":
                extra = (f"F1 at 0.5: {_fmt(_mean(group, 'f1_at_0.5'))}; "
                         f"at chosen {_fmt(_mean(group, 'threshold'), 2)}: {_fmt(_mean(group, 'f1_at_best'))}; "
                         f"per-class: {_fmt(_mean(group, 'f1_per_class_thresholds'))}")
            elif _mean(group, "f1") is not None:
                extra = f"macro F1 {_fmt(_mean(group, 'f1'))}"
            rows.append((_mean(group, "error"),
                         f"| {name} | {_recipe_text(group[0].get('recipe'))} | {len(group)} "
                         f"| {_fmt(_mean(group, 'error'))} "
                         f"| {_fmt(_spread(group, 'error'))} | {_fmt(_mean(group, 'process_cpu_s'), 1)} "
                         f"| {_fmt(_mean(group, 'process_s'), 1)} "
                         f"| {_fmt(_mean(group, 'fit_s'), 1)} | {_fmt(_mean(group, 'first_unfrozen_delta'))} "
                         f"| {extra} |"))
        lines += [row for _, row in sorted(rows, key=lambda pair: pair[0])] + [""]
    lines += summary_lines(runs)
    (out_dir / "recipe.md").write_text("\n".join(lines))


def recipe_code(recipe: Recipe) -> str:
    """The public-API calls that train `recipe` (what `train_once` does, spelled out)."""
    augment = "False" if recipe.flip == "auto" else \
        f'augment_preset("{recipe.augment}"{"" if recipe.flip else ", flip=False"})'
    learner = [f"train_bn={recipe.train_bn}", f"weight_decay={recipe.weight_decay}"]
    if recipe.head != "fastai":
        learner.append(f'head="{recipe.head}"')
    if recipe.n_groups != 3:
        learner.append(f"n_groups={recipe.n_groups}")
    if recipe.label_smoothing:
        learner.append(f"loss_func=dls.task.loss(label_smoothing={recipe.label_smoothing})")
    callbacks = []
    if recipe.mixup or recipe.cutmix:
        callbacks.append(f"MixupCutmix(mixup_alpha={recipe.mixup}, cutmix_alpha={recipe.cutmix})")
    if recipe.ema:
        callbacks.append("EMA()")
    fit = (f"{recipe.epochs}, base_lr={recipe.base_lr}, freeze_epochs={recipe.freeze_epochs}, "
           f"lr_mult={recipe.lr_mult}, pct_start={recipe.pct_start}, div={recipe.div}, "
           f"frozen_groups={recipe.frozen_groups}, weight_decay={recipe.weight_decay}")
    fit += f', augment="{recipe.augment}", flip="auto"' if recipe.flip == "auto" else ", augment=None"
    if callbacks:
        fit += f", callbacks=[{', '.join(callbacks)}]"
    return "\n".join([
        f"dls = ImageDataLoaders.from_folder(path, size={recipe.size}, bs=64, augment={augment})",
        f'learn = vision_learner(dls, "efficientnet_lite0", {", ".join(learner)})',
        f"learn.fit_recipe({fit})",
    ])


def summary_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The best candidate on the main split (most seeds first, then mean error) against the goals."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["dataset"] == "fashion64" and run["name"] in CANDIDATES and run["name"] != "fine_tune2" \
                and "error" in run:
            groups.setdefault(run["name"], []).append(run)
    if not groups:
        return []
    name = min(groups, key=lambda key: (-len(groups[key]), _mean(groups[key], "error")))
    fastai = [run for run in runs if run["runner"] == "fastai" and "error" in run]
    default = [run for run in runs if run["name"] == "fine_tune2" and run["dataset"] == "fashion64"
               and "error" in run]
    mine = groups[name]
    lines = ["## Best measured candidate", "", f"`{name}` ({len(mine)} seeds on Fashion-MNIST 2,000/1,000 at 64 px):",
             "", "```python", recipe_code(CANDIDATES[name]), "```", "",
             "| | error (mean ± sd) | process CPU s | first unfrozen Δ |", "|---|---|---|---|"]
    for label, group in ((name, mine), ("unfreeze fine_tune(2)", default), ("fastai fine_tune(2)", fastai)):
        if group:
            lines.append(f"| {label} ({len(group)} seeds) | {_fmt(_mean(group, 'error'))} ± "
                         f"{_fmt(_spread(group, 'error'))} | {_fmt(_mean(group, 'process_cpu_s'), 1)} "
                         f"| {_fmt(_mean(group, 'first_unfrozen_delta'))} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 seed, 3 candidates: a smoke run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds in the confirmation stage (default 3)")
    parser.add_argument("--top", type=int, default=2, help="candidates confirmed with every seed (default 2)")
    parser.add_argument("--candidates", default="", help="comma-separated candidates to screen (default SCREEN)")
    parser.add_argument("--stages", default="screen,confirm,sets",
                        help="any of screen,confirm,sets (default all); the hard-data study: benchmarks/hard_data.py")
    parser.add_argument("--sets", default="digits,multilabel,imbalanced,fashion128",
                        help="the other datasets of the sets stage (default all four)")
    parser.add_argument("--screen-set", choices=("full", "small"), default="full",
                        help="screen on the 2,000/1,000 split (full) or a 500/500 one (small)")
    parser.add_argument("--fastai-seeds", type=int, default=3, help="seeds of fastai's run in the confirm stage")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2, as compare.py)")
    parser.add_argument("--confirm", default="", help="candidates to confirm (default: the --top best screened)")
    parser.add_argument("--winner", default=None,
                        help="the candidate to run on the other sets (default: the best measured, most seeds first)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--report-only", action="store_true", help="rewrite recipe.md from recipe.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.out is None:
        args.out = str(common.WORK_DIR / "quick_results" if args.quick else common.RESULTS_DIR)
    if args.report_only:
        payload = json.loads((Path(args.out) / "recipe.json").read_text())
        write_report(Path(args.out), payload["runs"], payload["machine"])
        return
    run_study(args)


if __name__ == "__main__":
    main()
