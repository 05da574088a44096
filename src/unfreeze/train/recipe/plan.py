"""`plan_training`: the batch size, epochs and passes of a fit, from the number of training images.

fastai's fine_tune and the first recipe counted epochs: at batch size 64 an epoch of 100 images is two
optimizer steps, so a run of 7 epochs is about a dozen steps and the head never learns, while 50,000
images get thousands. The plan counts optimizer steps instead (benchmarks/results/hard_data.md):

- the batch size is the largest power of two at most n/30, between 16 and 64: 100 images get 16 and
  three times the steps; 64 only once an epoch at 64 holds `FULL_BATCH_STEPS` steps (3,840 images):
  from 1,920 images (where n/30 reaches 64) up to that, 32 at the recipe's LR (not the smaller sets'
  scaled one), twice the updates of an epoch at 64: a model trained at 64 on
  2,000 images was still learning when its schedule ended, and 32 lowered the error of the clean and
  the noisy sets for less time than more epochs at 64 (hard_data.md);
- an epoch (one validation, one row of the history) holds enough passes over the training images for
  `MIN_EPOCH_STEPS` optimizer steps, so 6 unfrozen epochs are at least about 180 steps at any size;
- the unfrozen epochs are the recipe's 6, fewer above `LARGE` images (3 at 40,000) so a large set is
  not trained for hours;
- the frozen phase starts with a linear probe on cached features (probe.py) only when asked
  (probe=True, `--probe`): with the plan's batches and passes, fine-tuning without it had the lower
  error on every small set of hard_data.md (5, 10 and 20 images a class, long tails under 1,000
  images), and it was the default under 1,000 images until then;
- labels the frozen features separate poorly get `EXTRA_EPOCHS` more unfrozen epochs
  (`with_hard_labels`): when the flip check's cross-validated linear probe errs on `HARD_LABELS` of the
  training images or more (wrong labels, or a task far from ImageNet's), the body has further to move;
  the threshold lies between the probe errors of the study's clean and noisy sets (hard_data.md has
  them and the errors each choice gave).

Every value the caller gives (the Recipe's batch_size, epochs or freeze_epochs as numbers, or the
command line's --bs, --epochs, --freeze-epochs) is taken as it is: an epoch is then one pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["DEFAULT_EPOCHS", "EXTRA_EPOCHS", "FULL_BATCH_STEPS", "HARD_LABELS", "LARGE", "LR_POWER", "MIN_EPOCH_STEPS",
           "TrainingPlan", "plan_training", "with_hard_labels"]

HARD_LABELS = 0.4  # the flip check's probe error from which the labels count as hard for the frozen features
EXTRA_EPOCHS = 2  # the unfrozen epochs hard labels add
FULL_BATCH_STEPS = 60  # batch 64 once an epoch at 64 holds this many steps; fewer images get 32 (more updates)
DEFAULT_EPOCHS = 6  # the unfrozen epochs of the recipe study (recipe.md), for 2,000 images
MIN_EPOCH_STEPS = 30  # ~2,000 images / 64: the study's epoch, in steps
LARGE = 20_000  # above this, fewer unfrozen epochs (the same number of images seen as at 20,000, at least 3)
_MIN_BATCH, _MAX_BATCH = 16, 64
LR_POWER = 0.5  # the plan's smaller batches train at LR × (batch / 64) ** LR_POWER: square-root scaling, as for Adam


@dataclass(frozen=True)
class TrainingPlan:
    """What a fit will run, decided before it starts (`plan_training`).

    Attributes:
        n_images: Training images.
        batch_size: Training batch size.
        passes: Passes over the training images in one epoch (1 unless the set is small).
        freeze_epochs: Epochs of the head alone (after the probe when `probe`).
        epochs: Epochs with the body training (None: a time budget plans them while running).
        probe: The frozen phase starts with a linear probe on cached features.
        steps_per_epoch: Optimizer steps in one epoch.
        hard_labels: The probe error that added `EXTRA_EPOCHS` to `epochs` (`with_hard_labels`), or None.
        lr_scale: The recipe's LRs are multiplied by this: (batch size / 64) ** `LR_POWER` when the plan
            chose a batch smaller than the study's 64 for a small set (smaller batches, noisier steps: a
            lower LR); 1 for the 32 that gives a mid-sized set more updates (`FULL_BATCH_STEPS`).
    """

    n_images: int
    batch_size: int
    passes: int
    freeze_epochs: int
    epochs: int | None
    probe: bool
    steps_per_epoch: int
    lr_scale: float = 1.0
    hard_labels: float | None = None

    def line(self) -> str:
        """The one line `unfreeze train` and fit_recipe print.

        Example:
            >>> print(plan_training(100).line())  # doctest: +NORMALIZE_WHITESPACE
            plan: 100 images, batch size 16, 5 passes an epoch (31 steps): 1 frozen epoch, 6 unfrozen
            epochs, 217 steps
        """
        passes = f", {self.passes} passes an epoch" if self.passes > 1 else ""
        frozen = f"{'linear probe + ' if self.probe else ''}{self.freeze_epochs} frozen epoch" \
                 f"{'s' if self.freeze_epochs != 1 else ''}"
        unfrozen = "unfrozen epochs planned from the time budget" if self.epochs is None else \
            f"{self.epochs} unfrozen epoch{'s' if self.epochs != 1 else ''}, {self.steps()} steps"
        if self.hard_labels is not None:
            unfrozen += (f" ({EXTRA_EPOCHS} more unfrozen epochs: a linear probe on the frozen features errs on "
                         f"{self.hard_labels:.0%} of the training images; --epochs sets them)")
        return (f"plan: {self.n_images} images, batch size {self.batch_size}{passes} ({self.steps_per_epoch} steps): "
                f"{frozen}, {unfrozen}")

    def steps(self) -> int:
        """Optimizer steps of the whole fit (frozen and unfrozen epochs)."""
        return (self.freeze_epochs + (self.epochs or 0)) * self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        """Plain values (summary.json, the checkpoint's recipe)."""
        return {**asdict(self), "steps": self.steps()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingPlan:
        """The plan `to_dict` wrote (a checkpoint's): its fields, the derived `steps` left out.

        Example:
            >>> TrainingPlan.from_dict(plan_training(2000).to_dict()) == plan_training(2000)
            True
        """
        return cls(**{field: values[field] for field in cls.__dataclass_fields__ if field in values})


def plan_training(n_images: int, batch_size: int | str | None = "auto", epochs: int | str | None = "auto",
                  freeze_epochs: int | str = "auto", probe: bool | str = "auto", drop_last: bool = True,
                  loader_batch_size: int = 64) -> TrainingPlan:
    """The plan for `n_images` training images (see the module docstring); given numbers win.

    Args:
        n_images: Training images (labelled).
        batch_size: "auto", a number, or None (the loader's own, `loader_batch_size`).
        epochs: Unfrozen epochs: "auto", a number, or None (a time budget plans them).
        freeze_epochs: Epochs of the head alone: "auto" or a number.
        probe: "auto" (no probe: see the module docstring), True (when the phase has a frozen epoch) or
            False.
        drop_last: The training loader drops an incomplete last batch.
        loader_batch_size: The loader's batch size, for `batch_size=None`.

    Example:
        >>> plan = plan_training(2000)
        >>> plan.batch_size, plan.passes, plan.epochs, plan.probe, plan.lr_scale
        (32, 1, 6, False, 1.0)
        >>> plan_training(5000).batch_size
        64
        >>> plan_training(50_000).epochs, plan_training(100, epochs=2).passes
        (3, 1)
    """
    n_images = max(1, int(n_images))
    more_updates = False
    if batch_size == "auto":
        bs = _MIN_BATCH
        while bs * 2 <= min(_MAX_BATCH, n_images / 30):
            bs *= 2
        if bs == _MAX_BATCH and n_images < _MAX_BATCH * FULL_BATCH_STEPS:
            bs, more_updates = _MAX_BATCH // 2, True
    else:
        bs = loader_batch_size if batch_size is None else int(batch_size)
    def steps_of(passes: int) -> int:  # as the loader counts them: the passes' items, then whole batches
        items = n_images * passes
        return max(1, items // bs if drop_last and items > bs else math.ceil(items / bs))

    auto_epochs = epochs == "auto"
    # An epoch of a small set holds several passes, so that the unfrozen phase gets its steps.
    passes = max(1, math.ceil(MIN_EPOCH_STEPS / steps_of(1))) if auto_epochs else 1
    if auto_epochs:
        unfrozen: int | None = DEFAULT_EPOCHS if n_images <= LARGE else \
            max(3, round(DEFAULT_EPOCHS * LARGE / n_images))
    else:
        unfrozen = None if epochs is None else int(epochs)
    frozen = 1 if freeze_epochs == "auto" else int(freeze_epochs)
    use_probe = probe != "auto" and bool(probe)
    lr_scale = (bs / _MAX_BATCH) ** LR_POWER if batch_size == "auto" and not more_updates else 1.0
    return TrainingPlan(n_images=n_images, batch_size=bs, passes=passes, freeze_epochs=frozen, epochs=unfrozen,
                        probe=use_probe and frozen > 0, steps_per_epoch=steps_of(passes), lr_scale=lr_scale)


def with_hard_labels(plan: TrainingPlan, probe_error: float | None, exempt: bool = False) -> TrainingPlan:
    """`plan` with `EXTRA_EPOCHS` more unfrozen epochs when the probe error reaches `HARD_LABELS`.

    Args:
        plan: A plan whose epochs were planned ("auto"), not given.
        probe_error: The held-out error of the flip check's linear probe on the training labels, or None
            (no check ran): the plan as it is.
        exempt: Leave the plan as it is (a linear probe asked for, which fits the head itself, and
            multi-label data, where the probe's error is not a share of images).

    Example:
        >>> plan = plan_training(2000)
        >>> with_hard_labels(plan, 0.62).epochs, with_hard_labels(plan, 0.28).epochs
        (8, 6)
    """
    if exempt or probe_error is None or plan.epochs is None or probe_error < HARD_LABELS:
        return plan
    return replace(plan, epochs=plan.epochs + EXTRA_EPOCHS, hard_labels=float(probe_error))
