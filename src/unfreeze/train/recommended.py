"""`fit_recipe`: the recommended recipe, fine_tune's phases with the recipe's settings around them.

What `unfreeze train` and `learn.fit_recipe()` run (settings: `recipe_settings.Recipe`, chosen by
benchmarks/recipe_study.py). Before the fit it upscales small images (`input_size.upscale_loaders`) and,
with `flip="auto"`, decides the flips from the images (`flip_check.check_flips`); during it, it holds
the recipe's loss (label smoothing), augmentation preset, sizes and callbacks (mixup/cutmix, EMA, early
stopping, time budget) and puts the learner's own back after it. The phases, checkpoints and resume
are `recipes.run_phases`'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unfreeze import distributed
from unfreeze.data.augment import augment_preset
from unfreeze.models.feature_map import feature_map_size
from unfreeze.tasks import MultiLabel
from unfreeze.train.callbacks import Callback, EarlyStopping, SaveBestModel
from unfreeze.train.ema import EMA
from unfreeze.train.flip_check import MIN_PER_CLASS, check_flips
from unfreeze.train.input_size import upscale_loaders
from unfreeze.train.keep_best import KeepBest
from unfreeze.train.mixup import MixupCutmix
from unfreeze.train.recipe.imbalance import ImbalanceCheck, LogitAdjustedLoss, check_imbalance
from unfreeze.train.recipe.noise import GeneralizedCrossEntropy, TrimmedCrossEntropy, check_noise, unchecked_note
from unfreeze.train.recipe.plan import TrainingPlan, plan_training, with_hard_labels
from unfreeze.train.recipe.probe import fit_linear_probe, probe_head
from unfreeze.train.recipe_settings import Recipe, RecipeError
from unfreeze.train.recipes import Resume, fine_tune_phases, read_resume, run_phases
from unfreeze.train.time_budget import TimeBudget, estimate_epoch_seconds

if TYPE_CHECKING:
    from unfreeze.train.protocols import RecipeTarget

__all__ = ["NOISE_SMOOTHING", "PROGRESSIVE_SCALE", "check_time_budget", "fit_recipe"]


def fit_recipe(learner: RecipeTarget, epochs: int | None = None, recipe: Recipe | None = None,
               callbacks: Sequence[Callback] = (), checkpoint: str | Path | None = None,
               resume: str | Path | Resume | None = None, **settings: Any) -> list[dict[str, Any]]:
    """The recommended recipe (`Recipe`'s defaults, changed by `epochs` and `settings`); the arguments
    are `Learner.fit_recipe`'s.

    fine_tune's two phases, with the recipe's weight decay, label smoothing, augmentation preset,
    mixup/cutmix, EMA, early stopping, progressive resizing and time budget around them. Before them,
    the data decides what "auto" leaves open (each printed as one line and kept in the fit's recipe,
    which a resume reuses): the plan (batch size, epochs, passes, probe: `train.recipe.plan`), the
    flips, the remedy against a long tail and the guard against wrong labels. With the probe, the
    head is first fitted on the frozen body's cached features, and the best epoch (by the first
    metric) is the model kept, so fine-tuning the body never ends worse on validation than the probe.
    The loss and the loaders' augmentation, batch size and size are the recipe's during the fit and
    put back after it.
    """
    # `epochs=None` is "not given" (the recipe's own); any other setting given, None included, is a change.
    recipe = (recipe if recipe is not None else Recipe()).replace(**({} if epochs is None else {"epochs": epochs}),
                                                                  **settings)
    recipe.check(multi_label=isinstance(learner.task, MultiLabel))
    _check_input_size(learner, recipe.upscale)
    saved = read_resume(resume)
    before = dict((saved.progress.get("recipe") or {}) if saved is not None else {})
    train = learner.dls.train
    # Decoded now, not in the first epoch: a class whose every training file is corrupt stops here, by name,
    # and the imbalance check counts the images that decode.
    train.check_decodable(every_class=True)
    plan = plan_training(len(train.dataset), recipe.batch_size,
                         None if recipe.epochs is None and recipe.time_budget is not None else recipe.epochs,
                         recipe.freeze_epochs, recipe.probe, drop_last=train.drop_last,
                         loader_batch_size=train.batch_size)
    probed = plan.probe  # the linear probe was asked for, whatever head fits it (a resume keeps its noise decision)
    saved_plan = before.get("plan")
    if isinstance(saved_plan, dict) and saved_plan.get("n_images") == plan.n_images:
        # A resume keeps the plan its fit started with, also where a later version of the rule plans differently.
        plan = TrainingPlan.from_dict(saved_plan)
    if plan.probe and probe_head(learner.model) is None:  # another head: its frozen epochs train it
        plan = dataclasses.replace(plan, probe=False)
    flip, flip_note = recipe.flip, None
    if flip == "auto":  # decided once; a resume takes the decision the checkpoint recorded
        chosen = before.get("flip_chosen")
        if isinstance(chosen, bool):
            flip = chosen
        else:
            flip, flip_note, probe_error = _check_flips(learner, recipe)
            if recipe.epochs == "auto" and not isinstance(saved_plan, dict):
                plan = with_hard_labels(plan, probe_error, probed or isinstance(learner.task, MultiLabel))
    _say(learner, plan.line())
    if flip_note is not None:
        _say(learner, flip_note)
    extras: list[Callback] = []
    if recipe.mixup or recipe.cutmix:
        extras.append(MixupCutmix(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix))
    if recipe.ema:
        extras.append(EMA())
    if recipe.patience is not None:
        extras.append(EarlyStopping("valid_loss", patience=recipe.patience))
    if plan.probe and not any(isinstance(callback, SaveBestModel) for callback in [*callbacks, *learner.callbacks]):
        extras.append(KeepBest())  # the probe's epoch competes with the fine-tuned ones (LP-FT)
    unfrozen_epochs: int | Callable[[], int] = plan.epochs or 0
    if recipe.time_budget is not None:
        deadline = time.monotonic() + recipe.time_budget
        epoch_seconds = check_time_budget(learner, recipe.time_budget) * plan.passes
        extras.append(TimeBudget(deadline))
        most = plan.epochs or _MAX_PLANNED_EPOCHS
        unfrozen_epochs = lambda: max(1, min(most, int((deadline - time.monotonic()) // epoch_seconds)))  # noqa: E731
    small = _progressive_size(learner.model, learner.dls.train.size) if recipe.progressive else None
    phases = fine_tune_phases(learner, plan.freeze_epochs, unfrozen_epochs, recipe.lr_mult, recipe.pct_start,
                               recipe.div, sizes=(small, None), frozen_groups=recipe.frozen_groups)
    if plan.probe:  # the head starts from the probe: its frozen epoch refines it gently and validates it
        phases[0] = dataclasses.replace(phases[0], lr_max=lambda lr: slice(lr * _AFTER_PROBE_LR))
    settings = {"name": "fit_recipe", **recipe.to_dict(), "plan": plan.to_dict()}
    if plan.lr_scale != 1.0 and recipe.base_lr != "auto":  # the plan's smaller batches: a lower LR
        settings["base_lr"] = float(recipe.base_lr) * plan.lr_scale
    if recipe.flip == "auto":
        settings["flip_chosen"] = flip
    evened_by = ("balanced sampler" if train.sample_weights is not None else
                 "class weights" if learner.class_weights is not None else None)
    imbalance = check_imbalance(train.dataset.decoded_targets(), learner.dls.n_classes, recipe.imbalance, evened_by)
    if imbalance is not None:
        settings["imbalance_chosen"] = imbalance.remedy
        if imbalance.imbalanced or imbalance.requested != "auto":
            _say(learner, imbalance.note())
    saved_noise = before.get("noise_chosen")
    # noise="auto" is decided once: a resume keeps it, also where a later version decides otherwise.
    noise = saved_noise if recipe.noise == "auto" and saved_noise in ("label_smoothing", "none") else \
        _noise_guard(learner, recipe, probed)
    left_out, trim = _noise_check(learner, recipe, before, settings)
    settings["noise_chosen"] = "trim" if trim else "filter" if left_out and noise != "gce" else noise
    smoothing = NOISE_SMOOTHING if noise in ("label_smoothing", "filter") and not recipe.label_smoothing else \
        recipe.label_smoothing
    # The trimmed share grows over the frozen and the first unfrozen epoch (TrimmedCrossEntropy).
    trimmed = TrimmedCrossEntropy(trim, plan.steps_per_epoch * (plan.freeze_epochs + 1), smoothing,
                                  learner.class_weights) if trim else None
    loss = _recipe_loss_func(learner, smoothing, imbalance, noise == "gce", trimmed)
    # An incomplete last batch is dropped only when the epoch holds more than one batch (the plan counts
    # steps so, and the loaders decide so when built): a set smaller than the plan's batch is one batch.
    drop_last = train.drop_last and len(train.dataset) * plan.passes > plan.batch_size
    with _held(learner, "loss_func", loss), _recipe_augment(train, recipe.augment, flip), \
            _held(train, "batch_size", plan.batch_size), _held(train, "passes", plan.passes), \
            _held(train, "drop_last", drop_last), \
            _held(train, "sample_weights", _without(train.sample_weights, left_out, len(train.dataset))):
        if plan.probe and saved is None:
            learner.freeze()
            fitted = fit_linear_probe(learner, seed=learner.seed or 0, loss_func=loss)
            if fitted is not None:
                learner.recorder.add_note(fitted.note())
        return run_phases(learner, settings, phases, [*extras, *callbacks], checkpoint, saved, recipe.weight_decay)


def _say(learner: RecipeTarget, line: str) -> None:
    """A decision of the recipe: in the recorder's notes, and printed unless quiet (main process)."""
    learner.recorder.add_note(line)
    if not learner.quiet and distributed.is_main_process():
        print(line)


def _noise_check(learner: RecipeTarget, recipe: Recipe, before: dict[str, Any],
                 settings: dict[str, Any]) -> tuple[list[int], float]:
    """What `noise.check_noise` decides for noise="filter" / "trim": the training images left out
    of the fit, and the share of each batch `TrimmedCrossEntropy` leaves out (0: none). Decided once: a
    resume takes the checkpoint's."""
    if recipe.noise not in ("filter", "trim") or isinstance(learner.task, MultiLabel):
        settings["noise_left_out"], settings["noise_trim"] = [], 0.0
        return [], 0.0
    if isinstance(before.get("noise_left_out"), list):
        settings["noise_left_out"] = before["noise_left_out"]
        settings["noise_trim"] = float(before.get("noise_trim") or 0.0)
        return settings["noise_left_out"], settings["noise_trim"]
    filter_from = 0.0 if recipe.noise == "filter" else math.inf
    check = check_noise(learner, seed=learner.seed or 0, filter_from=filter_from) \
        if distributed.is_main_process() else None
    left_out = distributed.broadcast_object(list(check.flagged) if check is not None and check.filtered else [])
    trim = distributed.broadcast_object(check.estimated_noise if check is not None and recipe.noise == "trim"
                                        else 0.0)
    if check is not None:
        _say(learner, check.note() + (f"; each batch's {trim:.0%} largest losses are left out (--noise trim)"
                                      if trim else ""))
    elif distributed.is_main_process():  # asked for, yet nothing is checked: said, not a silent plain loss
        _say(learner, unchecked_note(recipe.noise, len(learner.dls.train.dataset), learner.dls.n_classes))
    settings["noise_left_out"], settings["noise_trim"] = left_out, trim
    return left_out, trim


def _without(weights: Any, left_out: list[int], n_items: int) -> Any:
    """The training loader's sample weights (None: a plain shuffle) with `left_out` items at 0; unchanged
    when nothing is left out."""
    if not left_out:
        return weights
    array = np.ones(n_items) if weights is None else np.array(weights, dtype=np.float64)
    array[left_out] = 0.0
    return array / array.sum()


def _noise_guard(learner: RecipeTarget, recipe: Recipe, probed: bool) -> str:
    """noise="auto", said in one line for single-label data: label smoothing 0.1 when the plan fits a
    linear probe first (`probe=True`), the plain loss otherwise (benchmarks/results/hard_data.md:
    smoothing lowered the few-image sets' error and no guard lowered the wrong labels' error; trust.md:
    after smoothing no temperature calibrates the probabilities)."""
    if recipe.noise != "auto":
        return recipe.noise
    if isinstance(learner.task, MultiLabel) or recipe.label_smoothing:
        return "none"
    if probed:
        _say(learner, f"noise='auto': label smoothing {NOISE_SMOOTHING} (with the linear probe: it lowered the "
                      "error of the few-image sets it was measured on); "
                      "--noise none|filter|trim|gce chooses another")
        return "label_smoothing"
    _say(learner, "noise='auto': plain cross-entropy (label smoothing, filtering, trimming and GCE did not lower the "
                  "error on wrong labels, and smoothing spoils the calibration); --noise chooses one")
    return "none"


def _recipe_loss_func(learner: RecipeTarget, smoothing: float, imbalance: ImbalanceCheck | None,
                      robust: bool = False, trimmed: TrimmedCrossEntropy | None = None) -> Any:
    """The fit's loss: the task's with label smoothing (or the generalised or trimmed cross-entropy),
    its logits adjusted for a long tail; or the learner's own."""
    if trimmed is not None:
        base: Any = trimmed
    elif robust:
        base = GeneralizedCrossEntropy()
    elif imbalance is not None and imbalance.remedy == "logit_adjust":
        base = learner.task.loss(learner.class_weights, label_smoothing=smoothing)
    else:
        base = None
    if imbalance is not None and imbalance.remedy == "logit_adjust":
        return LogitAdjustedLoss(list(imbalance.counts), base=base).to(learner.device)
    if base is not None:
        return base.to(learner.device)
    if smoothing:
        return learner.task.loss(learner.class_weights, label_smoothing=smoothing)
    return learner.loss_func


def _check_input_size(learner: RecipeTarget, upscale: bool) -> None:
    """Upscale small images to a size the body can use (`upscale_loaders`), saying so; warn when the
    final feature map stays under 2×2 although upscaling was allowed."""
    plan = upscale_loaders(learner.model, learner.dls, upscale)
    message = "" if plan is None or not upscale else plan.message("the backbone", "upscale=False", "loaders of size=")
    if message:
        warnings.warn(message, stacklevel=3)
        learner.recorder.add_note(message)


def _check_flips(learner: RecipeTarget, recipe: Recipe) -> tuple[bool, str | None, float | None]:
    """flip='auto': `check_flips` decides; returns the decision, its line (None off the main process) and
    the probe's held-out error on the training labels (None where the check did not run); flips are moot
    without a preset."""
    if recipe.augment in (None, "none"):
        return True, None, None
    check = check_flips(learner, seed=learner.seed or 0) if distributed.is_main_process() else None
    flips = bool(distributed.broadcast_object(True if check is None else check.flips))
    error = distributed.broadcast_object(None if check is None else check.error)
    if not distributed.is_main_process():
        return flips, None, error
    note = check.note() if check is not None else \
        (f"flip='auto': flips on (fewer than two classes have {MIN_PER_CLASS} training images: too few to "
         "tell handed images from chance); --no-flip turns them off")
    return flips, note, error


# With a time budget and no epochs given, the most unfrozen epochs a plan may hold.
_MAX_PLANNED_EPOCHS = 100
# After the probe, the frozen epoch's peak LR is the recipe's times this: it refines the probe's head
# rather than undoing it (and validates it, so that KeepBest can keep it).
_AFTER_PROBE_LR = 0.1
# noise="auto" (few images) / "label_smoothing" / "filter": label smoothing's ε.
NOISE_SMOOTHING = 0.1
# Progressive resizing trains the frozen phase at this fraction of the size (the study's candidate).
PROGRESSIVE_SCALE = 0.75


def check_time_budget(learner: RecipeTarget, seconds: float) -> float:
    """The estimated seconds of one unfrozen epoch; a RecipeError when `seconds` is shorter than that.

    Example:
        >>> check_time_budget(learn, 600)  # doctest: +SKIP
        41.7
    """
    epoch_seconds = estimate_epoch_seconds(learner.model, learner.loss_func, learner.dls)
    if seconds < epoch_seconds:
        # Under 10 s, two significant digits: a sub-second epoch read "about 0 s", shorter than the budget refused.
        shown = f"{epoch_seconds:.0f}" if epoch_seconds >= 10 else f"{epoch_seconds:.2g}"
        raise RecipeError(f"the time budget ({seconds:g} s) is shorter than one epoch, about {shown} s "
                          f"on this machine. Give at least {math.ceil(epoch_seconds)} s, or train on fewer images "
                          "or a smaller size.")
    return epoch_seconds


def _progressive_size(model: Any, size: int) -> int | None:
    """The frozen phase's smaller size, or None when the backbone's final feature map would drop below 2×2."""
    small = int(size * PROGRESSIVE_SCALE)
    body = getattr(model, "body", None)
    if small >= size or body is None:
        return None
    try:
        shape = feature_map_size(body, small)
    except RuntimeError:  # too small for the body's kernels at all
        return None
    return small if shape is None or min(shape) >= 2 else None


@contextlib.contextmanager
def _held(owner: Any, name: str, value: Any) -> Iterator[None]:
    """`owner.name = value` for the block, the value before it again after (the fit's loss, batch size, passes)."""
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


@contextlib.contextmanager
def _recipe_augment(loader: Any, augment: str | None, flip: bool) -> Iterator[None]:
    """The recipe's augmentation preset on the training loader for the block (None: the loader's own)."""
    if augment is None:
        yield
        return
    before = loader.augment
    loader.augment = augment_preset(augment, flip=flip)
    try:
        yield
    finally:
        loader.augment = before
