"""The hard-data study (issue 27): small, noisy, long-tailed and multi-label sets, each trained by the
default of `unfreeze` (this tree), today's default (the commit the issue started from), fastai 2.8's
fine_tune(2) and a linear probe on the frozen body.

    .venv/bin/python benchmarks/hard_data.py                      # everything, resumable
    .venv/bin/python benchmarks/hard_data.py --sets few10,tail50 --runners new --seeds 1

Every set comes from Fashion-MNIST's TRAINING split (Debian's idx files) at 64 px, with a clean,
class-balanced validation set of 1,000 images drawn from images no training set uses:
few5/few10/few20 (5, 10, 20 images per class), noisy10/noisy25/noisy40 (2,000 balanced images, that
fraction of labels moved to another class at random), tail10/tail50/tail100 (class c has
round(400 * ratio^(-c/9)) images: 400 down to 400/ratio), multilabel (recipe_study's mosaics), clean
(the 2,000/1,000 split of recipe.md) and digits32 (sklearn's 8×8 digits at 32 px).

Each run is a fresh process with one torch thread; its result lands in benchmarks/results/hard_data.json
at once and a run already there is skipped, so a stopped study continues where it stopped.
benchmarks/results/hard_data.md is rewritten after every run.

Runners (`--hard-runners`):
- new: `vision_learner(dls, "efficientnet_lite0", head="linear")` then `learn.fit_recipe(callbacks=[KeepBest()])`,
  what `unfreeze train` runs, from this tree's src/;
- today: the same calls with PYTHONPATH at a checkout of the issue's starting commit (`--base-src`);
- fastai: fastai 2.8 `vision_learner(dls, efficientnet_lite0)` + `fine_tune(2)` in .venv-fastai, bs 64 (or
  half the training images when fewer than 128: fastai drops the last partial batch, so 64 would train nothing);
- probe: this tree's linear probe alone (`fit_linear_probe`: frozen body, cached features, a fitted linear head);
- new:FIELD=VALUE[;FIELD=VALUE]: `new` with those `Recipe` fields changed (values read as JSON, else as
  text), for screening a rule: `--runners 'new:noise="none"'`.
Multi-label error is 1 - macro F1 on the second half of the validation set with thresholds chosen on the
first half (per class for `new`, which chooses per-class thresholds; one global threshold for the others).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

HARD_DIR = common.WORK_DIR / "hard"
SETS = ("few5", "few10", "few20", "noisy10", "noisy25", "noisy40", "tail10", "tail50", "tail100", "multilabel",
        "clean", "digits32")
RUNNERS = ("today", "new", "fastai", "probe")
MARKER = "HARD_RESULT "
N_VALID_PER_CLASS = 100
SEED = 27  # the data draw (fixed: the runs' seeds vary the training only)


# ---------------------------------------------------------------------------------------------- datasets


def _train_counts(name: str) -> list[int]:
    if name.startswith("few"):
        return [int(name[3:])] * 10
    if name.startswith("noisy"):
        return [200] * 10
    if name.startswith("smalltail"):  # a small long tail: 40 images down to 40/ratio (screening, not in SETS)
        ratio = float(name[9:])
        return [max(1, round(40 * ratio ** (-cls / 9))) for cls in range(10)]
    ratio = float(name[4:])
    return [round(400 * ratio ** (-cls / 9)) for cls in range(10)]


def build_set(name: str) -> Path:
    """A Fashion-MNIST folder set (see the module docstring); built once under benchmarks/.work/hard/."""
    root = HARD_DIR / name
    if (root / ".complete").exists():
        return root
    import recipe_study

    images, labels = recipe_study.fashion_training_split()
    rng = np.random.default_rng(SEED)
    # The validation pool is the same for every set: the first 100 shuffled images of each class.
    per_class = [rng.permutation(np.flatnonzero(labels == cls)) for cls in range(10)]
    counts = _train_counts(name)
    noise = int(name[5:]) / 100 if name.startswith("noisy") else 0.0
    noise_rng = np.random.default_rng(SEED + 1)
    moved = 0
    for cls, class_name in enumerate(common.FASHION_MNIST_CLASSES):
        for index in per_class[cls][:N_VALID_PER_CLASS]:
            recipe_study.save_png(images[index], root / "valid" / class_name / f"{index:05d}.png")
        for index in per_class[cls][N_VALID_PER_CLASS : N_VALID_PER_CLASS + counts[cls]]:
            label = cls
            if noise and noise_rng.random() < noise:  # moved to another class, uniformly
                label = int((cls + noise_rng.integers(1, 10)) % 10)
                moved += 1
            target = root / "train" / common.FASHION_MNIST_CLASSES[label] / f"{index:05d}.png"
            recipe_study.save_png(images[index], target)
    (root / ".complete").write_text(json.dumps({"counts": counts, "moved": moved}))
    return root


def set_root(name: str) -> tuple[Path, int]:
    """The set's folder and its image size."""
    import recipe_study

    if name == "multilabel":
        return recipe_study.build_multilabel(False), 64
    if name == "clean":
        return recipe_study.build_fashion(False), 64
    if name == "digits32":
        return recipe_study.build_digits(False), 32
    return build_set(name), 64


# ---------------------------------------------------------------------------------------------- workers


def _multilabel_error(probs: Any, targets: Any, per_class: bool) -> dict[str, float]:
    """1 - macro F1 on the second half with thresholds chosen on the first half (numpy only: fastai's venv too)."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    half = len(probs) // 2
    grid = np.linspace(0.05, 0.95, 19)

    def f1(p: np.ndarray, t: np.ndarray, threshold: Any) -> np.ndarray:
        predicted = p >= threshold
        tp = (predicted & t).sum(0)
        return 2 * tp / np.maximum(predicted.sum(0) + t.sum(0), 1)

    if per_class:
        scores = np.stack([f1(probs[:half], targets[:half], value) for value in grid])  # [grid, C]
        threshold = grid[scores.argmax(0)]
    else:
        threshold = grid[int(np.argmax([f1(probs[:half], targets[:half], value).mean() for value in grid]))]
    return {"error": float(1 - f1(probs[half:], targets[half:], threshold).mean())}


def _single_label_scores(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    classes = np.unique(targets)
    recalls = [(predicted[targets == cls] == cls).mean() for cls in classes]
    f1s = []
    for cls in classes:
        tp = ((predicted == cls) & (targets == cls)).sum()
        f1s.append(2 * tp / max((predicted == cls).sum() + (targets == cls).sum(), 1))
    return {"error": float((predicted != targets).mean()), "balanced_error": float(1 - np.mean(recalls)),
            "macro_f1": float(np.mean(f1s))}


def unfreeze_worker(job: dict[str, Any]) -> dict[str, Any]:
    """`new`, `today` or `probe` through unfreeze's public API (whichever src/ PYTHONPATH names)."""
    import time

    import torch

    torch.set_num_threads(1)
    from unfreeze import ImageDataLoaders, vision_learner
    from unfreeze.train.keep_best import KeepBest

    started = time.perf_counter()
    root, seed, multi = Path(job["root"]), job["seed"], job["set"] == "multilabel"
    options = {"size": job["size"], "bs": 64, "augment": False, "num_workers": 0, "device": "cpu", "seed": seed}
    if multi:
        dls = ImageDataLoaders.from_csv(root, "labels.csv", fn_col="file", label_col="labels", valid_col="is_valid",
                                        label_delim=" ", **options)
    else:
        dls = ImageDataLoaders.from_folder(root, **options)
    # The metrics of `unfreeze train` (KeepBest keeps the best epoch by the first one).
    metrics = ["accuracy_multi", "f1_multi"] if multi else ["error_rate", "accuracy"]
    learn = vision_learner(dls, "efficientnet_lite0", metrics=metrics, seed=seed, quiet=True, head="linear")
    result: dict[str, Any] = {}
    runner, _, variant = job["runner"].partition(":")
    if runner == "probe":
        from unfreeze.train.recipe.probe import fit_linear_probe

        learn.freeze()
        fit_linear_probe(learn, seed=seed)
    else:
        learn.fit_recipe(callbacks=[KeepBest()], **recipe_changes(variant))
        result["notes"] = list(getattr(learn.recorder, "notes", []))
        result["epochs"] = len(learn.recorder.history)
    fit_s = time.perf_counter() - started
    probs, targets = learn.get_preds()
    if multi:
        result.update(_multilabel_error(probs.numpy(), targets.numpy(), per_class=runner == "new"))
    else:
        result.update(_single_label_scores(probs.argmax(1).numpy(), targets.numpy()))
    result["fit_s"] = fit_s
    return result


def recipe_changes(variant: str) -> dict[str, Any]:
    """`noise="none";epochs=4` -> {"noise": "none", "epochs": 4}: the Recipe fields a `new:` runner changes."""
    changes: dict[str, Any] = {}
    for item in filter(None, variant.split(";")):
        key, _, text = item.partition("=")
        try:
            changes[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            changes[key.strip()] = text.strip()
    return changes


def fastai_worker(job: dict[str, Any]) -> dict[str, Any]:
    """fastai 2.8 fine_tune(2) on the set, with the same backbone and weights (runs in .venv-fastai)."""
    import time
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        accuracy_multi,
        error_rate,
        set_seed,
        vision_learner,
    )
    from run_fastai import efficientnet_lite0

    started = time.perf_counter()
    root, seed, multi = Path(job["root"]), job["seed"], job["set"] == "multilabel"
    set_seed(seed, reproducible=True)
    n_train = job["n_train"]
    bs = 64 if n_train >= 128 else max(2, n_train // 2)
    options = {"item_tfms": Resize(job["size"]), "bs": bs, "num_workers": 0, "device": "cpu",
               "batch_tfms": Normalize.from_stats([0.5] * 3, [0.5] * 3)}
    if multi:
        dls = ImageDataLoaders.from_csv(root, "labels.csv", fn_col=0, label_col=1, valid_col=2, label_delim=" ",
                                        **options)
        learn = vision_learner(dls, efficientnet_lite0, metrics=accuracy_multi, pretrained=True)
    else:
        dls = ImageDataLoaders.from_folder(root, train="train", valid="valid", **options)
        learn = vision_learner(dls, efficientnet_lite0, metrics=error_rate, pretrained=True)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(2)
    fit_s = time.perf_counter() - started
    probs, targets = learn.get_preds()
    result = (_multilabel_error(probs.numpy(), targets.numpy(), per_class=False) if multi
              else _single_label_scores(probs.argmax(1).numpy(), targets.numpy()))
    return {**result, "fit_s": fit_s, "bs": bs}


def worker(spec: str) -> None:
    job = json.loads(spec)
    result = fastai_worker(job) if job["runner"] == "fastai" else unfreeze_worker(job)
    print(MARKER + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------- study


def _n_train(root: Path, name: str) -> int:
    if name == "multilabel":
        with open(root / "labels.csv") as handle:
            return sum(1 for row in csv.DictReader(handle) if row["is_valid"] == "False")
    return sum(1 for _ in (root / "train").rglob("*.png"))


def run_hard(sets: list[str], runners: list[str], seeds: list[int], out_dir: Path, base_src: Path) -> None:
    """Every (seed, set, runner) job not yet in hard_data.json, seed by seed so that early stops leave whole seeds."""
    import recipe_study

    path = out_dir / "hard_data.json"
    runs: list[dict[str, Any]] = json.loads(path.read_text())["runs"] if path.exists() else []
    done = {(run["set"], run["runner"], run["seed"]) for run in runs}
    for seed in seeds:
        for name in sets:
            root, size = set_root(name)
            for runner in runners:
                if (name, runner, seed) in done:
                    continue
                job = {"set": name, "runner": runner, "seed": seed, "root": str(root), "size": size,
                       "n_train": _n_train(root, name)}
                base_runner = runner.partition(":")[0]
                src = base_src if base_runner == "today" else common.REPO_ROOT / "src"
                env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{common.BENCH_DIR}", "MPLBACKEND": "Agg",
                       "OMP_NUM_THREADS": "1", "BENCH_THREADS": "1"}
                python = recipe_study.FASTAI_PYTHON if base_runner == "fastai" else recipe_study.VENV_PYTHON
                code, stdout, stderr, wall, cpu = recipe_study._timed_run(
                    [str(python), __file__, "--worker", json.dumps(job)], env)
                run = {**job, "process_s": wall, "process_cpu_s": cpu, "load_avg_1m": os.getloadavg()[0]}
                lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
                if code != 0 or not lines:
                    run["failed"] = stderr[-2000:]
                else:
                    run.update(json.loads(lines[-1][len(MARKER) :]))
                # Re-read first: another study process (another runner) may have added runs meanwhile.
                runs = json.loads(path.read_text())["runs"] if path.exists() else []
                runs.append(run)
                out_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"machine": common.machine_info(), "runs": runs}, indent=1))
                write_report(out_dir, runs)
                shown = {key: run.get(key) for key in ("set", "runner", "seed", "error", "process_s")}
                if "failed" in run:  # the run's own last line, not a silent "error": null
                    shown["failed"] = (run["failed"].strip().splitlines() or ["no output"])[-1][:300]
                print(json.dumps(shown), flush=True)


# ---------------------------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# What chose the rules (single-seed runs of benchmarks/hard_data.py's sets with this tree, seed 0, one
# thread, on the shared 2-core machine; `--hard-runners new` with a Recipe field changed). Kept here so the
# regenerated table keeps its evidence.
EVIDENCE = """\
## The rules and what chose them (seed 0, one run each: screening, not the 3-seed table)

- Plan in steps (`train/recipe/plan.py`): batch = largest power of two <= n/30 in [16, 64]; an epoch holds
  enough passes for >= 30 optimizer steps; 6 unfrozen epochs (fewer above 20,000 images). Today, 100 images
  at batch 64 are 2 steps an epoch: few10 0.705 error.
- More updates at 2,000 images (3 seeds each, the screening table below): the model trained at batch 64 was
  still learning when its schedule ended (seed 0 of noisy25: it gave the true class to 82% of the wrongly
  labelled training images and its given class to 5%, and 88% of the rest right; validation error 0.200,
  0.179, 0.167 over the last three epochs). Batch 32 at the recipe's LR: clean 0.152 -> 0.143, noisy25
  0.166 -> 0.159, 1.13x the time; batch 32 at LR x (32/64)^0.5: 0.149 / 0.157; 8 epochs at batch 64: 0.142
  / 0.160 for 1.22x; 9 epochs: noisy25 0.156 for 1.4x; batch 32 with 5 epochs: 0.158 / 0.171; batch 16:
  0.151 / (0.171, 0.157); LR 0.008 at batch 64: 0.152 / 0.165. The plan now takes batch 64 only when an
  epoch at 64 holds 60 steps (3,840 images) and 32 at the recipe's LR below that (down to the n/30 rule's
  own 32 and 16 for smaller sets, which keep their scaled LR): noisy10 0.147 -> 0.147, noisy40 0.185 -> 0.175.
  Relabelling (or leaving out) the training images whose label the model contradicts at p > 0.9 after two
  unfrozen epochs made it worse: noisy25 0.170 (0.165 left out), clean 0.168 (0.166). A second fit on a
  copy of noisy25 where the first fit's model relabelled the images it contradicts at p > 0.9 and left
  out those at 0.5-0.9 (27-29% of the labels contradicted) gave 0.157 / 0.165 against the first fit's
  0.158 / 0.160 (seeds 0 and 1; /tmp script, not kept): the wrong labels' cost is not undone by cleaning them.
- LR of smaller batches: the plan's batch of 16 at the recipe's LR diverged on few20 after the probe
  (0.356, the probe's own epoch kept); x (bs/64)^0.5 gave 0.267, x (bs/64) 0.311: square-root scaling.
- Linear probe (LP-FT, `train/recipe/probe.py`): 4 augmentation passes of cached features, then the
  fine-tuning with the best epoch kept (KeepBest), so the result is never worse on validation than the
  probe. It was the default under 1,000 images, with label smoothing, until a rerun with the plan's
  batches and passes (3 seeds each, the screening table below): without the probe and the smoothing the
  error was lower on every small set, few5 0.365 -> 0.340, few10 0.312 -> 0.276, few20 0.261 -> 0.249,
  tail100 0.345 -> 0.269, smalltail10 (164 images, 40 down to 4) 0.360 -> 0.308; on tail100 the probe
  without smoothing gave 0.288 and smoothing without the probe 0.278. It is `--probe` (probe=True) now.
- Wrong labels (`train/recipe/noise.py`; the screening table below has every run): against the plain loss
  with the best epoch kept, nothing lowered the error on 10-40% wrong labels. noisy25, 3 seeds: plain
  0.158, label smoothing 0.1 + leaving out the images a cross-validated probe doubts (the previous
  default) 0.162, trimming each batch's largest losses at the share the probe estimates wrong 0.178 (2
  seeds), mixup 0.4 0.181 (1 seed); noisy40: plain 0.184, smoothing + filter 0.196, trimming 0.181 (2
  seeds); clean: plain 0.146, smoothing 0.150. Label smoothing alone on seed 0 gave 0.148 / 0.164 / 0.173
  on noisy10/25/40 against the plain 0.154 / 0.167 / 0.187: a hint, not taken, because a smoothed model
  cannot be calibrated by a temperature (trust_label_smoothing.md: test ECE 0.028 at the best temperature,
  0.011 without smoothing). With the probe (then the few-image regime) smoothing lowered the error
  (few5 0.356 / 0.357 vs 0.385 / 0.390 on seeds 0-1, few10 0.317 / 0.294 vs 0.317 / 0.322, few20 0.246 vs
  0.326 on seed 0): noise="auto" smooths with `--probe` and not otherwise. The probe flags 9% of the clean set, 9-12%
  of the long tails, 19% of noisy10, 30% of noisy25, 39% of noisy40 (p(label) < 0.02); the check runs
  only for --noise filter|trim.
- Long tails (`train/recipe/imbalance.py`): logit adjustment (tau=1) when the largest class has 3x the
  images of the smallest; tail50: 0.192 with it, 0.235 without (`imbalance="none"`), same code and seed.
- Hard labels get 2 more unfrozen epochs (`plan.with_hard_labels`): the flip check's cross-validated probe
  (500 training images, balanced) errs on 0.28-0.31 of the clean set's images over seeds 0-2, 0.34-0.37 of
  tail10's, 0.19-0.25 of the digits' (upscaled), 0.45-0.70 with 10-40% wrong labels and 0.45 on tail50 (203
  images sampled); the threshold 0.4 lies between. 8 epochs at batch 32, 3 seeds: noisy25 0.159 -> 0.150
  (screened first as `new:epochs=8`: 0.157 / 0.145 / 0.147), noisy10 0.147 -> 0.144, noisy40 0.175 -> 0.163,
  tail50 0.206 -> 0.189, for 1.3x their time; on the clean set, where the rule does not fire, 8 epochs
  would have given 0.135 for 1.3x (beyond fastai's time). The few-image regime (its probe fits the head)
  and multi-label data are left out; given epochs and a time budget are taken as they are.
- Against the issue's targets (table above, 3 seeds each, every set rerun at 873e46b, where the shifted
  depthwise weight gradients went on natively; the rows `new until 873e46b` below are the same rules with
  oneDNN's gradients): 10/class 0.289 (<= 0.33 met); 5/class 0.356 vs the probe's 0.485 (met); 25% wrong
  labels 0.147 (<= 0.15 met: 0.142 / 0.146 / 0.154); long tail 50 0.188 (<= 0.22 met); digits at 32 px
  0.011 error (>= 0.98 accuracy met); clean 0.148 (<= 0.15 met, at its edge; today 0.146) in 38 CPU s vs
  fastai's 55 (met). Better than fastai on every set, and than today's default on every set but clean,
  where the two are within the seed spread (tail100 0.262 vs today's 0.342). With oneDNN's gradients the
  clean set gave 0.143 on these seeds and 0.144 over seeds 0-9, but any change of rounding, even the LR
  changed by one part in a million, gives 0.148-0.151 over 10 seeds (profile.md): 0.148 is what to expect.
  The seed spread is real: the same default before batch-norm folding gave 0.141 / 0.144 / 0.153 on clean,
  after it 0.147 / 0.155 / 0.153 (folding changes the frozen steps' arithmetic by about 1e-5, and the
  trajectories part).
- Flip check: the probe's sample is balanced per class, classes under 20 images are left out, and with fewer
  than two such classes flips stay on (few5/10: undecidable; tail50: flips on, 0.453 vs 0.532 on mirrors).
"""


def write_report(out_dir: Path, runs: list[dict[str, Any]]) -> None:
    """hard_data.md: per set, each runner's mean error (± sd over seeds), balanced error, wall and CPU time."""
    lines = ["# Hard data: small, noisy, long-tailed and multi-label sets (issue 27)", "",
             "Command: `.venv/bin/python benchmarks/hard_data.py` (benchmarks/hard_data.py has the "
             "sets and runners). Error on a clean, balanced validation set (1 - macro F1 for multilabel, see "
             "hard_data.py); `n` is the seeds that finished; a `-` cell did not run (yet). Times are whole "
             "processes with one torch thread on a 2-core machine shared with other jobs and with the study's "
             "other runners (load average 10-12 for the first seeds of today's default and fastai, 2-4 for the "
             "rest): wall seconds carry that load, CPU seconds are the fairer cost.",
             "", "| set | today's default | new default | fastai fine_tune(2) | linear probe |",
             "|---|---|---|---|---|"]
    unique: dict[tuple[str, str, int], dict[str, Any]] = {}
    for run in runs:  # one run per (set, runner, seed): the first recorded, when parallel studies overlapped
        if "error" in run:
            unique.setdefault((run["set"], run["runner"], run["seed"]), run)
    runs = [*unique.values(), *(run for run in runs if "error" not in run)]
    for name in SETS:
        cells = []
        for runner in RUNNERS:
            group = [run for run in runs if run["set"] == name and run["runner"] == runner and "error" in run]
            failed = [run for run in runs if run["set"] == name and run["runner"] == runner and "failed" in run]
            if not group:
                cells.append("failed" if failed else "-")
                continue
            errors = [run["error"] for run in group]
            spread = f" ± {statistics.stdev(errors):.3f}" if len(errors) > 1 else ""
            wall = statistics.fmean(run["process_s"] for run in group)
            cpu = statistics.fmean(run["process_cpu_s"] for run in group)
            cells.append(f"{statistics.fmean(errors):.3f}{spread} (n={len(group)}; {wall:.0f} s wall, {cpu:.0f} s CPU)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out_dir / "hard_data.md").write_text("\n".join(lines) + "\n\n" + EVIDENCE + _variants(runs))


def _set_order(name: str) -> tuple[int, str]:
    """The study's sets in their order, then any screening set (e.g. smalltail10) by name."""
    return (SETS.index(name), "") if name in SETS else (len(SETS), name)


def _variants(runs: list[dict[str, Any]]) -> str:
    """The screened variants (runners beyond the four: `new:FIELD=VALUE` and earlier defaults), per set."""
    groups: dict[tuple[str, str], dict[int, float]] = {}
    for run in runs:
        if run["runner"] not in RUNNERS and "error" in run:
            groups.setdefault((run["set"], run["runner"]), {})[run["seed"]] = run["error"]
    if not groups:
        return ""
    lines = ["", "## Every variant screened (error by seed, mean)", "", "| set | runner | seeds 0 / 1 / 2 | mean |",
             "|---|---|---|---|"]
    for (name, runner), errors in sorted(groups.items(), key=lambda item: (_set_order(item[0][0]), item[0][1])):
        by_seed = " / ".join(_fmt(errors.get(seed)) for seed in range(max(errors) + 1))
        lines.append(f"| {name} | `{runner}` | {by_seed} | {statistics.fmean(errors.values()):.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """The study's command line (the runs are resumable: a run already in hard_data.json is not repeated)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated sets (default all)")
    parser.add_argument("--runners", default=",".join(RUNNERS), help="today,new,fastai,probe (default all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds FIRST..N-1 (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--out", default=str(common.RESULTS_DIR), help="results folder (default benchmarks/results)")
    parser.add_argument("--base-src", default=str(common.REPO_ROOT.parent / "wt-hard-base" / "src"),
                        help="src/ of a checkout of the commit whose default is 'today'")
    args = parser.parse_args()
    run_hard(args.sets.split(","), args.runners.split(","), list(range(args.first_seed, args.seeds)), Path(args.out),
             Path(args.base_src))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
