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
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unfreeze import distributed
from unfreeze.data.augment import augment_preset
from unfreeze.models.feature_map import feature_map_size
from unfreeze.tasks import MultiLabel
from unfreeze.train.callbacks import Callback, EarlyStopping
from unfreeze.train.ema import EMA
from unfreeze.train.flip_check import check_flips
from unfreeze.train.input_size import upscale_loaders
from unfreeze.train.mixup import MixupCutmix
from unfreeze.train.recipe_settings import Recipe, RecipeError
from unfreeze.train.recipes import Resume, fine_tune_phases, read_resume, run_phases
from unfreeze.train.time_budget import TimeBudget, estimate_epoch_seconds

if TYPE_CHECKING:
    from unfreeze.train.protocols import RecipeTarget

__all__ = ["PROGRESSIVE_SCALE", "check_time_budget", "fit_recipe"]


def fit_recipe(learner: RecipeTarget, epochs: int | None = None, recipe: Recipe | None = None,
               callbacks: Sequence[Callback] = (), checkpoint: str | Path | None = None,
               resume: str | Path | Resume | None = None, **settings: Any) -> list[dict[str, Any]]:
    """The recommended recipe (`Recipe`'s defaults, changed by `epochs` and `settings`); the arguments
    are `Learner.fit_recipe`'s.

    fine_tune's two phases, with the recipe's weight decay, label smoothing, augmentation preset,
    mixup/cutmix, EMA, early stopping, progressive resizing and time budget around them. The loss and
    the loaders' augmentation and size are the recipe's during the fit and put back after it.
    """
    # `epochs=None` is "not given" (the recipe's own); any other setting given, None included, is a change.
    recipe = (recipe if recipe is not None else Recipe()).replace(**({} if epochs is None else {"epochs": epochs}),
                                                                  **settings)
    recipe.check(multi_label=isinstance(learner.task, MultiLabel))
    _check_input_size(learner, recipe.upscale)
    extras: list[Callback] = []
    if recipe.mixup or recipe.cutmix:
        extras.append(MixupCutmix(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix))
    if recipe.ema:
        extras.append(EMA())
    if recipe.patience is not None:
        extras.append(EarlyStopping("valid_loss", patience=recipe.patience))
    unfrozen_epochs: int | Callable[[], int] = recipe.epochs or 0
    if recipe.time_budget is not None:
        deadline = time.monotonic() + recipe.time_budget
        epoch_seconds = check_time_budget(learner, recipe.time_budget)
        extras.append(TimeBudget(deadline))
        most = recipe.epochs or _MAX_PLANNED_EPOCHS
        unfrozen_epochs = lambda: max(1, min(most, int((deadline - time.monotonic()) // epoch_seconds)))  # noqa: E731
    small = _progressive_size(learner.model, learner.dls.train.size) if recipe.progressive else None
    phases = fine_tune_phases(learner, recipe.freeze_epochs, unfrozen_epochs, recipe.lr_mult, recipe.pct_start,
                               recipe.div, sizes=(small, None), frozen_groups=recipe.frozen_groups)
    saved = read_resume(resume)
    settings = {"name": "fit_recipe", **recipe.to_dict()}
    flip = recipe.flip
    if flip == "auto":  # decided once; a resume takes the decision the checkpoint recorded
        chosen = ((saved.progress.get("recipe") or {}) if saved is not None else {}).get("flip_chosen")
        settings["flip_chosen"] = flip = chosen if isinstance(chosen, bool) else _check_flips(learner, recipe)
    with _recipe_loss(learner, recipe.label_smoothing), _recipe_augment(learner.dls.train, recipe.augment, flip):
        return run_phases(learner, settings, phases, [*extras, *callbacks], checkpoint, saved, recipe.weight_decay)


def _check_input_size(learner: RecipeTarget, upscale: bool) -> None:
    """Upscale small images to a size the body can use (`upscale_loaders`), saying so; warn when the
    final feature map stays under 2×2 although upscaling was allowed."""
    plan = upscale_loaders(learner.model, learner.dls, upscale)
    message = "" if plan is None or not upscale else plan.message("the backbone", "upscale=False", "loaders of size=")
    if message:
        warnings.warn(message, stacklevel=3)
        learner.recorder.add_note(message)


def _check_flips(learner: RecipeTarget, recipe: Recipe) -> bool:
    """flip='auto': `check_flips` decides (noted, and printed unless quiet); flips are moot without a preset."""
    if recipe.augment in (None, "none"):
        return True
    check = check_flips(learner, seed=learner.seed or 0) if distributed.is_main_process() else None
    flips = bool(distributed.broadcast_object(True if check is None else check.flips))
    if check is not None:
        learner.recorder.add_note(check.note())
        if not learner.quiet:
            print(check.note())
    return flips


# With a time budget and no epochs given, the most unfrozen epochs a plan may hold.
_MAX_PLANNED_EPOCHS = 100
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
        raise RecipeError(f"the time budget ({seconds:g} s) is shorter than one epoch, about {epoch_seconds:.0f} s "
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
def _recipe_loss(learner: RecipeTarget, label_smoothing: float) -> Iterator[None]:
    """The task's loss with label smoothing for the block; the learner's own loss again after it."""
    if not label_smoothing:
        yield
        return
    before = learner.loss_func
    learner.loss_func = learner.task.loss(learner.class_weights, label_smoothing=label_smoothing)
    try:
        yield
    finally:
        learner.loss_func = before


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
