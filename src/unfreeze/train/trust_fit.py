"""`learn.calibrate()`: fit a learner's `Trust` (temperature and unknown score) on its own data.

The end of `fit_recipe` (and so of `unfreeze train`) calls it. The temperature is fitted on the
validation predictions (`trust.calibration.fit_temperature`); the out-of-distribution score on the
features of a seeded subsample of the training images, seen without augmentation
(`trust.ood.fit_score`); its threshold on the validation images' scores, so that `unknown_rate` of them
are flagged. The numbers (ECE / NLL / Brier before and after, the flagged share) stay on the Trust for
summary.json and the report.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from unfreeze import distributed
from unfreeze.data import ImageDataLoader
from unfreeze.inference import collect_logits
from unfreeze.progress import AROUND_TRAINING_DELAY, StepProgress
from unfreeze.tasks import MultiLabel, Regression
from unfreeze.trust import (
    DEFAULT_METHOD,
    FeatureTap,
    NoFeatureLayerError,
    Trust,
    calibration_report,
    fit_score,
    fit_temperature,
    temperature_standard_error,
)
from unfreeze.trust import threshold_for as _threshold_for
from unfreeze.trust.calibration import MIN_TEMPERATURE, rough_fit
from unfreeze.trust.ood import DEFAULT_BANK_SIZE, DEFAULT_K, copies_of_training

__all__ = ["DEFAULT_UNKNOWN_RATE", "calibrate", "calibrate_after_fit", "check_unknown_rate",
           "drop_before_training", "lower_bound_temperature_note", "rough_temperature_note"]

DEFAULT_UNKNOWN_RATE = 0.05
# The fewest validation images (copies of training images left out) the unknown threshold is set on.
MIN_THRESHOLD_IMAGES = 20


def check_unknown_rate(unknown_rate: Any) -> float | None:
    """`unknown_rate` as a float in (0, 0.5], or None (no unknown flag); a ValueError saying what is expected.

    Example:
        >>> check_unknown_rate(0.05)
        0.05
    """
    if unknown_rate is None:
        return None
    if isinstance(unknown_rate, bool) or not isinstance(unknown_rate, (int, float)) or not 0 < unknown_rate <= 0.5:
        raise ValueError(f"unknown_rate must be a share of validation images from 0 (excluded) to 0.5, e.g. 0.05 "
                         f"for 5%, or None for no unknown flag; got {unknown_rate!r}.")
    return float(unknown_rate)


def rough_temperature_note(report: dict[str, Any]) -> str:
    """A note when a calibration report's temperature is a rough fit (its standard error over
    `trust.calibration.ROUGH_TEMPERATURE` of it): what it is, from how many images, and what narrows it;
    "" otherwise.

    Example:
        >>> rough_temperature_note({"temperature": 1.2, "temperature_se": 0.13, "after": {"items": 200}})[:40]
        'calibration: the temperature 1.200 ± 0.1'
    """
    temperature, error = report.get("temperature"), report.get("temperature_se")
    if not rough_fit(temperature, error):
        return ""
    items = (report.get("after") or {}).get("items")
    source = f"{items:,} validation images" if isinstance(items, int) else "the validation images"
    return (f"calibration: the temperature {temperature:.3f} ± {error:.3f} (one standard error) comes from {source}, "
            f"a rough fit ({100 * error / temperature:.0f}% of it): the calibrated probabilities can still be off by "
            "a few points; more validation images narrow it")


def lower_bound_temperature_note(items: int) -> str:
    """The note for a temperature fit that ran into `trust.calibration.MIN_TEMPERATURE` on `items` images.

    The validation images are then all predicted right with room to spare: the likelihood keeps rising as
    the temperature falls, so they cannot pin one down, and the raw probabilities are kept.

    Example:
        >>> lower_bound_temperature_note(3)[:45]
        'calibration: no temperature could be fitted o'
    """
    source = "the 1 validation image, which is" if items == 1 else f"the {items:,} validation images, which are all"
    return (f"calibration: no temperature could be fitted on {source} predicted right with room to spare (the fit "
            f"ran into its lower bound {MIN_TEMPERATURE}, {1 / MIN_TEMPERATURE:.0f} times sharper than the raw "
            "probabilities): the raw probabilities are kept. Calibrate on more validation images, with some the "
            "model gets wrong")


def _features_and_logits(learner: Any, loader: Any, tap: FeatureTap | None,
                         description: str) -> tuple[torch.Tensor, ...]:
    """Logits, targets and (with a tap) the features of every image of `loader`, in order, on the CPU.

    Raises:
        NoFeatureLayerError: The tap's layer did not give one feature row per image.
    """
    progress = StepProgress(description, len(loader.dataset), unit="images", delay=AROUND_TRAINING_DELAY,
                            quiet=learner.quiet or not distributed.is_main_process())
    if tap is None:
        with progress:
            logits, targets = collect_logits(learner.model, loader, learner.amp_dtype, progress)
        return logits.cpu(), targets.cpu(), torch.zeros(0)
    tap.clear()
    with tap.open(), progress:
        logits, targets = collect_logits(learner.model, loader, learner.amp_dtype, progress)
    features = distributed.gather_ordered(tap.features()).cpu()
    tap.check_rows(features, len(logits))
    return logits.cpu(), targets.cpu(), features


def _training_sample(learner: Any, size: int, seed: int) -> ImageDataLoader:
    """An ordered, unaugmented loader over a seeded subsample of at most `size` training images."""
    train, valid = learner.dls.train, learner.dls.valid
    dataset = train.dataset
    chosen = torch.arange(len(dataset))
    if len(dataset) > size:
        chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size].sort().values
    subset = dataset.subset(chosen.tolist())  # the images training decoded, not decoded again
    loader = ImageDataLoader(subset, valid.batch_size, size=valid.size, seed=seed, device=valid.device,
                             num_workers=valid.num_workers, mean=valid.mean, std=valid.std)
    if distributed.is_distributed():  # each rank its slice; collect_logits gathers them in order
        loader.shard(distributed.rank(), distributed.world_size())
    return loader


def calibrate(learner: Any, *, temperature: bool = True, unknown_rate: float | None = DEFAULT_UNKNOWN_RATE,
              method: str = DEFAULT_METHOD, k: int = DEFAULT_K, bank_size: int = DEFAULT_BANK_SIZE) -> Trust:
    """Fit the learner's temperature and unknown score on its data; sets and returns `learner.trust`.

    Args:
        learner: A learner with training and validation images.
        temperature: Fit a temperature (False: probabilities stay the raw softmax / sigmoid).
        unknown_rate: The share of validation images the unknown threshold flags; None: no unknown flag.
        method: The out-of-distribution score (`trust.METHODS`; default: the study's choice).
        k: The neighbour of the knn score.
        bank_size: At most this many training features are kept (they travel in the export).

    Raises:
        ValueError: No validation images, a bad `unknown_rate`, or a model without a final linear layer
            (`NoFeatureLayerError`) while `unknown_rate` is set.

    For multi-label data, tune the decision thresholds after calibrating (`unfreeze train` does): they
    apply to the calibrated probabilities.

    Example:
        >>> trust = learn.calibrate()  # doctest: +SKIP
        >>> trust.temperature, trust.threshold  # doctest: +SKIP
        (1.27, 0.81)
    """
    if isinstance(learner.task, Regression):
        raise ValueError("calibrate() fits a classifier's temperature and unknown score; this learner predicts "
                         "numbers (a regression task), whose outputs are not probabilities. Leave it out")
    unknown_rate = check_unknown_rate(unknown_rate)
    multi_label = isinstance(learner.task, MultiLabel)
    tap = FeatureTap(learner.model) if unknown_rate is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undecodable files were reported when the loaders were built
        valid_logits, valid_targets, valid_features = _features_and_logits(learner, learner.dls.valid, tap,
                                                                           "calibration")
    if len(valid_logits) == 0:
        raise ValueError("calibrate() needs validation images; this learner's validation set is empty.")
    fitted = fit_temperature(valid_logits, valid_targets, multi_label) if temperature else 1.0
    at_bound = fitted <= MIN_TEMPERATURE
    if at_bound:
        # No finite optimum: shipping the bound would make every probability 20 times sharper on new images.
        note = lower_bound_temperature_note(len(valid_logits))
        if note not in learner.recorder.notes:  # calibrate() again on the same images: said once
            warnings.warn(note, stacklevel=3)
            learner.recorder.add_note(note)
        fitted = 1.0
    error = (temperature_standard_error(valid_logits, valid_targets, fitted, multi_label)
             if temperature and not at_bound else None)  # 1.0 is no fit there: it has no standard error
    report = calibration_report(valid_logits, valid_targets, fitted, multi_label) | {"temperature_se": error}
    note = rough_temperature_note(report)
    if note and note not in learner.recorder.notes:  # calibrate() again on the same images: said once
        learner.recorder.add_note(note)
    trust = Trust(temperature=fitted, temperature_se=error, calibration=report)
    if tap is not None:
        seed = learner.seed or 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, train_targets, train_features = _features_and_logits(
                learner, _training_sample(learner, bank_size, seed), tap, "unknown score")
        used = _without_training_copies(learner, train_features, valid_features, tap.parts)
        score = fit_score(method, train_features, train_targets, len(learner.dls.vocab), multi_label=multi_label,
                          valid=(valid_features[used], valid_logits[used]), k=k, bank_size=bank_size, seed=seed,
                          parts=tap.parts).eval()
        with torch.no_grad():
            valid_scores = score(valid_features, valid_logits)
        threshold = _threshold_for(valid_scores[used], unknown_rate)
        trust = Trust(temperature=fitted, temperature_se=error, score=score, threshold=threshold,
                      unknown_rate=unknown_rate, calibration=report)
        report["unknown"] = _unknown_report(trust, valid_scores, valid_logits, valid_targets, multi_label)
    learner.trust = trust
    return trust


def _without_training_copies(learner: Any, train_features: torch.Tensor, valid_features: torch.Tensor,
                             parts: tuple[int, ...]) -> torch.Tensor:
    """bool [N]: the validation images the unknown score's scales and threshold are set on: all of them but
    copies of training images (`copies_of_training`), as long as `MIN_THRESHOLD_IMAGES` others remain.

    Copies are said once in a warning and in the recorder's notes: they also make the validation error
    look better than the error on new images.
    """
    copies = copies_of_training(train_features, valid_features, parts)
    n_copies, n_valid = int(copies.sum()), len(copies)
    if n_copies == 0:
        return torch.ones(n_valid, dtype=torch.bool)
    usable = n_valid - n_copies >= MIN_THRESHOLD_IMAGES
    treated = ("They are left out of the unknown flag's threshold, which is meant for images the model has not "
               "seen (with knn they score about 0 and would pull it down)." if usable else
               f"Fewer than {MIN_THRESHOLD_IMAGES} other validation images remain, so the unknown flag's threshold is "
               "set on all of them and may flag many new images.")
    note = (f"{n_copies} of the {n_valid} validation images are copies of training images (the same features as "
            f"one of {len(train_features)} training images compared), so the validation error looks better than "
            f"the error on new images will be. {treated} Remove the copies from the validation folder (or from "
            "training).")
    if note not in learner.recorder.notes:  # calibrate() again on the same images: said once
        warnings.warn(note, stacklevel=4)
        learner.recorder.add_note(note)
    return ~copies if usable else torch.ones(n_valid, dtype=torch.bool)


def _unknown_report(trust: Trust, scores: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
                    multi_label: bool) -> dict[str, Any]:
    """The method, threshold, flagged share and accuracy on all vs unflagged validation images."""
    flagged = trust.unknown(scores)
    report: dict[str, Any] = {"method": trust.score.method, "threshold": trust.threshold,
                              "unknown_rate": trust.unknown_rate, "flagged_valid": float(flagged.double().mean())}
    if not multi_label:
        labelled = targets >= 0
        correct = (logits.argmax(dim=1) == targets).double()
        kept = labelled & ~flagged
        report["accuracy_all"] = float(correct[labelled].mean()) if labelled.any() else None
        report["accuracy_unflagged"] = float(correct[kept].mean()) if kept.any() else None
    return report


def calibrate_after_fit(learner: Any, temperature: bool, unknown_rate: float | None) -> Trust | None:
    """What the end of `fit_recipe` runs: `calibrate`, or only the temperature for a model without a final
    linear layer (said in a warning and in the recorder's notes); nothing without validation images."""
    unknown_rate = check_unknown_rate(unknown_rate)
    if len(learner.dls.valid.dataset) == 0 or isinstance(learner.task, Regression):
        return None
    try:
        return calibrate(learner, temperature=temperature, unknown_rate=unknown_rate)
    except NoFeatureLayerError as error:
        note = f"no unknown flag: {error}"
        warnings.warn(note, stacklevel=3)
        learner.recorder.add_note(note)
        return calibrate(learner, temperature=temperature, unknown_rate=None)


def drop_before_training(learner: Any) -> None:
    """Forget a fitted `learner.trust` as a fit starts, said in a warning and once in the recorder's notes.

    The temperature was fitted on the old weights' logits and the unknown score's bank and threshold on
    their features: after training they describe another model, and would be exported with this one.

    Example:
        >>> drop_before_training(learn)  # doctest: +SKIP
    """
    trust = getattr(learner, "trust", None)
    if not isinstance(trust, Trust) or (trust.temperature == 1.0 and not trust.has_score and not trust.calibration):
        return
    note = ("calibrate() fitted the temperature and the unknown score on the weights before this training; they no "
            "longer describe the model, so they are dropped (raw probabilities, no unknown flag): call "
            "learn.calibrate() again after training (fit_recipe does at its end)")
    learner.trust = Trust()
    warnings.warn(note, stacklevel=4)
    if note not in learner.recorder.notes:
        learner.recorder.add_note(note)
