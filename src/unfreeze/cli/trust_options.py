"""The command line's side of calibrated probabilities and the unknown flag (unfreeze.trust).

train: `--no-calibrate` (raw softmax) and `--unknown-rate` (the share of validation images flagged),
stored in config.json and passed to `fit_recipe`; the summary.json section "calibration". evaluate:
the JSON key "calibration" (ECE / NLL / Brier before and after the temperature on the test set) and,
with `--ood FOLDER`, how well the unknown score tells that folder's images from the test set.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from unfreeze.cli.options import UsageError

__all__ = ["add_evaluate_trust_options", "add_train_trust_options", "calibration_line", "evaluate_trust",
           "train_summary", "trust_options"]

_DEFAULT_RATE = 0.05


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 0.5):
        raise argparse.ArgumentTypeError(f"--unknown-rate takes the share of validation images to flag, from 0 "
                                         f"(no unknown flag) to 0.5, e.g. 0.05; got {text!r}")
    return value


def add_train_trust_options(parser: argparse.ArgumentParser) -> None:
    """train's `--no-calibrate` and `--unknown-rate`."""
    group = parser.add_argument_group("trust (calibrated probabilities and the unknown flag)")
    group.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                       help="keep the raw softmax probabilities (default: fit a temperature on the validation "
                            "predictions so that a probability of 0.8 is right about 80%% of the time)")
    group.add_argument("--unknown-rate", type=_rate, default=_DEFAULT_RATE, metavar="RATE",
                       help="the share of validation images that the unknown threshold flags as unlike the "
                            f"training images (default: {_DEFAULT_RATE}; 0: no unknown flag)")


def trust_options(args: argparse.Namespace) -> dict[str, Any]:
    """config.json's values of the trust options (a resumed run takes them from there)."""
    rate = getattr(args, "unknown_rate", _DEFAULT_RATE)
    return {"calibrate": getattr(args, "calibrate", True), "unknown_rate": rate or None}


def train_summary(learn: Any) -> dict[str, Any] | None:
    """summary.json's "calibration": temperature, ECE / NLL / Brier before and after (with the reliability
    bins) on the validation images, and the unknown threshold with the share it flags."""
    trust = getattr(learn, "trust", None)
    return None if trust is None or trust.calibration is None else dict(trust.calibration)


def calibration_line(calibration: dict[str, Any] | None) -> str | None:
    """train's line on the calibration it ended with: the temperature and its standard error, the validation
    images' ECE before and after, the unknown flag's share; None without a calibration.

    Example:
        >>> calibration_line({"temperature": 1.18, "temperature_se": 0.13, "before": {"ece": 0.07, "items": 200},
        ...                   "after": {"ece": 0.06, "items": 200}})[:49]
        'Calibration: temperature 1.180 ± 0.130 (a rough f'
    """
    from unfreeze.trust.calibration import rough_fit

    if not calibration or "after" not in calibration:
        return None
    temperature, error = calibration.get("temperature", 1.0), calibration.get("temperature_se")
    after = calibration["after"]
    if temperature == 1.0 and error is None:
        line = "Calibration: raw probabilities (no temperature fitted)"
    else:
        line = f"Calibration: temperature {temperature:.3f}"
        if error is not None:
            line += f" ± {error:.3f}" + (" (a rough fit: more validation images narrow it)"
                                         if rough_fit(temperature, error) else "")
        line += (f"; ECE on the {after.get('items', 0):,} validation images {calibration['before']['ece']:.3f} → "
                 f"{after['ece']:.3f}")
    unknown = calibration.get("unknown")
    if unknown:
        line += f"; the unknown flag ({unknown['method']}) flags {100 * unknown['flagged_valid']:.1f}% of them"
    return line + "."


def add_evaluate_trust_options(parser: argparse.ArgumentParser) -> None:
    """evaluate's `--ood FOLDER`."""
    parser.add_argument("--ood", type=Path, metavar="FOLDER",
                        help="images that are none of the model's classes: report how well the unknown score "
                             "tells them from DATA's images (AUROC, FPR at 95%% TPR, the shares flagged)")


def check_ood_folder(learn: Any, ood_folder: Path | None) -> list[Path]:
    """evaluate --ood's folder checked before any image is scored: its image files (none without --ood).

    Raises:
        UsageError: The model has no unknown score, or the folder is missing or holds no images.
    """
    from unfreeze.inference import iter_image_files

    if ood_folder is None:
        return []
    if not learn.trust.has_score:
        raise UsageError("--ood needs a model with an unknown score; this export has none (it was written before "
                         "unfreeze had one, or trained with --unknown-rate 0). Retrain it")
    if not ood_folder.is_dir():
        raise UsageError(f"--ood {ood_folder} is not a folder. Pass a folder of images that are none of the classes")
    files = list(iter_image_files(ood_folder))
    if not files:
        raise UsageError(f"--ood {ood_folder} holds no image files (.jpg, .png, ...)")
    return files


def evaluate_trust(learn: Any, loader: Any, ood_folder: Path | None) -> dict[str, Any]:
    """evaluate's "calibration" (and "ood" with a folder) for the labelled test `loader`; prints a summary."""
    from unfreeze.inference.predict import collect_outputs
    from unfreeze.tasks import MultiLabel
    from unfreeze.trust import calibration_report, ood_metrics

    multi_label = isinstance(learn.task, MultiLabel)
    logits, targets, scores = collect_outputs(learn, loader)
    trust = learn.trust
    report: dict[str, Any] = {"calibration": calibration_report(logits, targets, trust.temperature, multi_label)}
    before, after = report["calibration"]["before"], report["calibration"]["after"]
    print(f"Calibration (temperature {trust.temperature:.3f}): ECE {before['ece']:.4f} → {after['ece']:.4f}, "
          f"NLL {before['nll']:.4f} → {after['nll']:.4f}, Brier {before['brier']:.4f} → {after['brier']:.4f}")
    if scores is not None:
        flagged = float(trust.unknown(scores).double().mean())
        report["unknown"] = {"threshold": trust.threshold, "flagged": flagged}
        print(f"Unknown: {100 * flagged:.1f}% of these images are above the threshold {trust.threshold:.4g}")
    if ood_folder is None:
        return report
    files = check_ood_folder(learn, ood_folder)
    _, _, ood_scores = collect_outputs(learn, learn.dls.test_dl(files))
    if ood_scores is None or len(ood_scores) == 0:  # every file was skipped: AUROC and the shares would be NaN
        raise UsageError(f"--ood {ood_folder}: none of its {len(files)} image files could be read (see the warning "
                         "above). Pass a folder of readable images that are none of the classes")
    report["ood"] = {"folder": str(ood_folder), **ood_metrics(scores, ood_scores, trust.threshold)}
    found = report["ood"]
    images = "1 image" if found["n_out"] == 1 else f"{found['n_out']} images"
    print(f"Out-of-distribution ({images} in {ood_folder}): AUROC {found['auroc']:.4f}, FPR95 "
          f"{found['fpr95']:.4f}, flagged {100 * found['flagged_out']:.1f}% (test images: "
          f"{100 * found['flagged_in']:.1f}%)")
    return report
