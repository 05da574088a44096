"""`Recipe`: the recommended recipe's settings as one typed, flat dataclass, checked all at once.

The defaults are the recipe that `learn.fit_recipe()` and `unfreeze train` run, chosen by the study in
benchmarks/results/recipe.md (held-out error on Fashion-MNIST 2,000/1,000 at 64 px, 32 px digits, a
multi-label and an imbalanced set, on a 2-core CPU): fine_tune's shape (the head alone with the body
frozen, then the body with discriminative LRs) with a linear head, 6 unfrozen epochs and a longer,
gentler warmup at unfreezing (pct_start 0.5 from peak/25 instead of 0.3 from peak/5), which keeps
the first unfrozen epoch from undoing the frozen one; the body's first group stays frozen (it would
train at a tiny LR; leaving it saves a quarter of each unfrozen epoch at the same error), and
horizontal flips are decided from the images (off for handed ones such as digits). The study
measured label smoothing, mixup, cutmix and EMA no better on Fashion-MNIST, so they are off by
default. `Recipe(pct_start=0.3, div=5.0, augment=None, frozen_groups=0, flip=True, epochs=4,
lr_mult=100, base_lr=2e-3)` on a learner with fastai's head is exactly `fine_tune(4)`
(tests/train/test_recipe.py proves it).

What each field turns on is a building block that exists on its own: `augment_preset` (data/augment.py),
`MixupCutmix` (mixup.py), `EMA` (ema.py), `EarlyStopping` (callbacks.py), `TimeBudget` (time_budget.py),
the task's loss with label smoothing (tasks.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

IMBALANCE_CHOICES = ("auto", "logit_adjust", "none")
NOISE_CHOICES = ("auto", "label_smoothing", "filter", "trim", "gce", "none")

__all__ = ["Recipe", "RecipeError"]


class RecipeError(ValueError):
    """A recipe setting out of range, or settings that conflict with each other or with the data."""


@dataclass(frozen=True)
class Recipe:
    """The recommended way to fine-tune a pretrained classifier; every field has the study's default.

    Attributes:
        epochs: Epochs with the body training (after `freeze_epochs`), or "auto": the plan
            (`train.recipe.plan`) chooses them and the passes over the images an epoch holds from the
            number of training images (6 epochs of at least 30 optimizer steps each; 2 more when
            the flip check's probe errs on many training labels). With `time_budget`, the most
            epochs to plan; None plans as many as fit.
        freeze_epochs: Epochs training the head alone first ("auto": 1).
        batch_size: The training batch size for the fit: "auto" (the plan: 16 to 64 by the number of
            images), a number, or None (the loader's own).
        probe: Start the frozen phase with a linear probe on the frozen body's cached features
            (`train.recipe.probe`; LP-FT), with label smoothing unless `noise` says otherwise: "auto"
            (none: fine-tuning without it measured better on every small set, hard_data.md), True
            or False.
        imbalance: The remedy against a long tail of classes: "auto" (logit adjustment when the
            largest class has 3x the images of the smallest), "logit_adjust" or "none".
        noise: The guard against wrong labels: "auto" (for single-label data, label smoothing 0.1
            when the images are few enough for the linear probe, the plain loss otherwise: with the
            best epoch kept, as `unfreeze train` does, no guard lowered the error on 10-40% wrong
            labels, smoothing lowered the few-image sets' error, and after smoothing no temperature
            calibrates the probabilities), "filter" (leave
            out the training images whose label a cross-validated linear probe finds unlikely:
            `train.recipe.noise.check_noise`), "trim" (leave each batch's largest losses out, as
            many as the same check estimates wrong), "label_smoothing" (ε 0.1), "gce" (generalised
            cross-entropy, q=0.7) or "none". Multi-label data takes "auto" or "none" ("trim" runs there
            but leaves nothing out).
        head: The head a learner built for this recipe gets (`vision_learner(..., recipe=...)` and
            `unfreeze train`): "linear" (average pooling and one linear layer) or "fastai" (concat
            pooling, BatchNorm, dropout, two linear layers). `fit_recipe` trains whatever head the
            learner has.
        frozen_groups: Body groups (from the input) that stay frozen when the body trains: fastai's
            `freeze_to(frozen_groups)` instead of `unfreeze()`. The first group's LR would be the head's
            / lr_mult, so it barely moves, and skipping its backward pass saves about a quarter of an
            unfrozen epoch. At least one body group always trains; 0 trains them all (fine_tune).
        base_lr: The head's LR of the frozen phase (the unfrozen phase peaks at half of it), or "auto"
            (lr_find's valley on the frozen model).
        lr_mult: Ratio between the head's LR and the first body group's in the unfrozen phase.
        pct_start: Fraction of the unfrozen phase spent warming up.
        div: The unfrozen phase's LR starts at its peak / div.
        weight_decay: Decoupled weight decay for the fit; None keeps the learner's.
        label_smoothing: ε of label-smoothed cross-entropy (single-label data only); 0 is off.
        mixup: Beta(α, α) of mixup (timm's Mixup); 0 is off.
        cutmix: Beta(α, α) of cutmix; 0 is off. With both on, each batch gets one of them.
        ema: Validate and keep an exponential moving average of the weights.
        augment: Augmentation preset of the training loader during the fit ("none", "light", "default",
            "strong"); None keeps the loader's own.
        flip: Horizontal flips in the preset: True, False (digits, text, anything whose mirror is no
            member of its class) or "auto", which decides from the training images before the fit
            (`train.flip_check.check_flips`: off for handed images).
        upscale: Before the fit, measure the body's final feature map at the loaders' size; under 2×2
            with images no larger than that size (8×8 digits at 32 px), train at the smallest usable
            size instead (both loaders keep it, so predictions and the export match). False keeps the
            size. (`unfreeze train` plans this when it builds the loaders: `--no-upscale`.)
        patience: Stop after this many epochs without a better validation loss; None never stops early.
        progressive: Progressive resizing: the frozen phase at 3/4 of the size (never below the
            backbone's smallest usable size), the unfrozen phase at the full size.
        time_budget: Wall-clock seconds for the whole fit: the unfrozen epochs are planned from the
            measured step time, and training stops before an epoch would overrun. A resumed fit keeps
            the epochs planned then (from the checkpoint) and gets the whole budget again for what is left.

    Example:
        >>> Recipe().epochs, Recipe().pct_start, Recipe(mixup=0.2).mixup
        ('auto', 0.5, 0.2)
        >>> learn.fit_recipe(recipe=Recipe(augment="strong", flip=False))  # doctest: +SKIP
    """

    epochs: int | str | None = "auto"
    freeze_epochs: int | str = "auto"
    batch_size: int | str | None = "auto"
    probe: bool | str = "auto"
    imbalance: str = "auto"
    noise: str = "auto"
    frozen_groups: int = 1
    head: str = "linear"
    upscale: bool = True
    base_lr: float | str = 4e-3
    lr_mult: float = 10.0
    pct_start: float = 0.5
    div: float = 25.0
    weight_decay: float | None = 0.01
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: bool = False
    augment: str | None = "default"
    flip: bool | str = "auto"
    patience: int | None = None
    progressive: bool = False
    time_budget: float | None = None

    def replace(self, **changes: Any) -> Recipe:
        """A copy with `changes`; None is a value too (`augment=None` keeps the loader's own augmentation,
        `patience=None` never stops early), checked with the rest by `check`.

        Example:
            >>> Recipe().replace(epochs=6, augment=None).augment is None
            True
        """
        unknown = sorted(set(changes) - {item.name for item in dataclasses.fields(self)})
        if unknown:
            raise RecipeError(f"Recipe has no field {', '.join(unknown)}; its fields are "
                              f"{', '.join(item.name for item in dataclasses.fields(self))}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (config.json, checkpoints, the resume check)."""
        return dataclasses.asdict(self)

    def check(self, multi_label: bool = False) -> Recipe:
        """Every problem with these settings at once, as one RecipeError; else the recipe itself.

        Args:
            multi_label: The data is multi-label (label smoothing applies to single-label data only).

        Example:
            >>> Recipe(mixup=-1).check()  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            RecipeError: mixup must be a number >= 0 (0 is off, 0.2-0.4 is usual), got -1.
        """
        problems = [problem for problem in self._problems(multi_label) if problem]
        if problems:
            raise RecipeError(" ".join(problems))
        return self

    def _problems(self, multi_label: bool) -> list[str]:
        # Imported here: the command line builds its parser from a Recipe(), and data.augment loads torch.
        from unfreeze.data.augment import AUGMENT_PRESETS

        return [
            "" if self.epochs == "auto" else _whole(self.epochs, "epochs", 1, none_ok=self.time_budget is not None,
                                                    hint="(or 'auto'; None only with a time_budget)"),
            "" if self.freeze_epochs == "auto" else _whole(self.freeze_epochs, "freeze_epochs", 0, hint="(or 'auto')"),
            "" if self.batch_size == "auto" else _whole(self.batch_size, "batch_size", 1, none_ok=True,
                                                        hint="(or 'auto', or None for the loader's own)"),
            "" if isinstance(self.probe, bool) or self.probe == "auto" else
            f"probe must be True, False or 'auto', got {self.probe!r}.",
            "" if self.imbalance in IMBALANCE_CHOICES else
            f"imbalance must be one of {', '.join(IMBALANCE_CHOICES)}, got {self.imbalance!r}.",
            "" if self.noise in NOISE_CHOICES else
            f"noise must be one of {', '.join(NOISE_CHOICES)}, got {self.noise!r}.",
            "imbalance applies to single-label data; this data is multi-label. Set it to 'none' or 'auto'."
            if multi_label and self.imbalance == "logit_adjust" else "",
            # label_smoothing and filter smooth the targets, gce reweighs the classes' probabilities, trim ranks
            # cross-entropy losses (its share comes from a single-label probe): one label each.
            f"noise={self.noise!r} applies to single-label data; this data is multi-label. Set it to 'none' or 'auto'."
            if multi_label and self.noise in ("label_smoothing", "filter", "trim", "gce") else "",
            _whole(self.frozen_groups, "frozen_groups", 0),
            "" if self.head in ("linear", "fastai") else f"head must be 'linear' or 'fastai', got {self.head!r}.",
            "" if self.base_lr == "auto" or (_number(self.base_lr) and self.base_lr > 0) else
            f"base_lr must be a positive number (e.g. 2e-3) or 'auto', got {self.base_lr!r}.",
            "" if _number(self.lr_mult) and self.lr_mult >= 1 else
            f"lr_mult must be a number >= 1 (1 trains every group at the head's LR), got {self.lr_mult!r}.",
            "" if _number(self.pct_start) and 0 <= self.pct_start < 1 else
            f"pct_start must be in [0, 1), got {self.pct_start!r}.",
            "" if _number(self.div) and self.div >= 1 else f"div must be a number >= 1, got {self.div!r}.",
            "" if self.weight_decay is None or (_number(self.weight_decay) and self.weight_decay >= 0) else
            f"weight_decay must be a number >= 0 or None, got {self.weight_decay!r}.",
            "" if _number(self.label_smoothing) and 0 <= self.label_smoothing < 1 else
            f"label_smoothing must be in [0, 1) (0.1 is usual), got {self.label_smoothing!r}.",
            "label_smoothing applies to single-label data; this data is multi-label. Set it to 0."
            if multi_label and _number(self.label_smoothing) and self.label_smoothing > 0 else "",
            *(("" if _number(value) and value >= 0 else
               f"{name} must be a number >= 0 (0 is off, 0.2-0.4 is usual), got {value!r}.")
              for name, value in (("mixup", self.mixup), ("cutmix", self.cutmix))),
            "" if isinstance(self.ema, bool) else f"ema must be True or False, got {self.ema!r}.",
            "" if self.augment is None or self.augment in AUGMENT_PRESETS else
            f"augment must be one of {', '.join(AUGMENT_PRESETS)} (or None for the loader's own), "
            f"got {self.augment!r}.",
            "" if isinstance(self.upscale, bool) else f"upscale must be True or False, got {self.upscale!r}.",
            "" if isinstance(self.flip, bool) or self.flip == "auto" else
            f"flip must be True, False or 'auto', got {self.flip!r}.",
            _whole(self.patience, "patience", 1, none_ok=True),
            "" if isinstance(self.progressive, bool) else
            f"progressive must be True or False, got {self.progressive!r}.",
            "" if self.time_budget is None or (_number(self.time_budget) and self.time_budget > 0) else
            f"time_budget must be a positive number of seconds, got {self.time_budget!r}.",
        ]


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _whole(value: Any, name: str, minimum: int, none_ok: bool = False, hint: str = "") -> str:
    if value is None and none_ok:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"{name} must be a whole number >= {minimum}{' ' + hint if hint else ''}, got {value!r}."
    return ""
