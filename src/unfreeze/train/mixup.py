"""Mixup and cutmix as a callback, on timm's `Mixup`.

During a fit the callback registers a batch transform on the training loader: each training batch
becomes a blend of itself and its reverse (mixup), or gets a box pasted from it (cutmix), and its
targets become the matching class probabilities (mixed multi-hot rows for multi-label data).
Cross-entropy takes such probability targets as they are, label smoothing included, and binary
cross-entropy takes mixed multi-hot rows, so the learner's loss needs no change.
Validation batches are never mixed.

timm draws the mixing weights from numpy's global RNG; the callback seeds that draw from (seed,
epoch of the learner's life, batch) and puts the global state back, so runs repeat, a resumed fit
replays the same mixes and the caller's RNG is untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target

from unfreeze.train.callbacks import Callback

__all__ = ["MixupCutmix"]


def _check_alpha(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0 (0 turns it off; 0.2-1.0 is usual), got {value!r}.")
    return float(value)


class MixupCutmix(Callback):
    """Mix training batches with mixup and/or cutmix (timm's `Mixup`); single- or multi-label data.

    Args:
        mixup_alpha: Beta(α, α) parameter of the mixup weight; 0 turns mixup off.
        cutmix_alpha: Beta(α, α) parameter of the cutmix box area; 0 turns cutmix off.
        prob: Probability that a batch is mixed at all.
        switch_prob: With both on, the probability of cutmix instead of mixup for a batch.

    Raises:
        ValueError: Both alphas are 0, or a value is out of range.

    Example:
        >>> learn.fine_tune(4, callbacks=[MixupCutmix(mixup_alpha=0.4)])  # doctest: +SKIP
        >>> learn.fit_one_cycle(5, 1e-3, callbacks=[MixupCutmix(cutmix_alpha=1.0)])  # doctest: +SKIP
    """

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5) -> None:
        self.mixup_alpha = _check_alpha(mixup_alpha, "mixup_alpha")
        self.cutmix_alpha = _check_alpha(cutmix_alpha, "cutmix_alpha")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("MixupCutmix needs mixup_alpha > 0 or cutmix_alpha > 0 (e.g. mixup_alpha=0.4).")
        for value, name in ((prob, "prob"), (switch_prob, "switch_prob")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self._mixup: Mixup | None = None
        self._loader: Any = None
        self._seed, self._epoch, self._batch = 0, 0, 0
        self._epochs_done: Any = None
        self._multi_label = False
        self.n_classes = 0

    def before_fit(self, learner: Any) -> None:
        if getattr(learner.task, "name", "single_label") == "regression":
            raise ValueError("MixUp and CutMix mix class labels; this learner's data is regression (numbers or "
                             "points). Leave them out of cbs= (and mixup=0, cutmix=0 in a Recipe).")
        self.n_classes = int(learner.dls.n_classes)
        # Multi-hot targets mix the same way (timm's multi_label); binary cross-entropy takes the result.
        self._multi_label = getattr(learner.task, "name", "single_label") == "multi_label"
        # timm's own label smoothing stays off: the learner's loss smooths (its label_smoothing).
        self._mixup = Mixup(mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha, prob=self.prob,
                            switch_prob=self.switch_prob, label_smoothing=0.0, num_classes=self.n_classes,
                            multi_label=self._multi_label)
        self._seed = learner.seed if learner.seed is not None else int(getattr(learner.dls, "seed", 0) or 0)
        self._epochs_done = lambda: learner.epochs_done
        self._loader = learner.dls.train
        self._loader.add_batch_transform(self.mix)

    def before_epoch(self, epoch: int) -> None:
        self._epoch = int(self._epochs_done()) if self._epochs_done is not None else epoch
        self._batch = 0

    def after_fit(self, logs: dict[str, float]) -> None:
        if self._loader is not None:
            self._loader.remove_batch_transform(self.mix)
        self._loader = None

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix one training batch: images blended or box-pasted, targets as class probabilities [B, C]."""
        if self._mixup is None:
            raise RuntimeError("MixupCutmix.mix runs inside a fit; pass the callback to fit/fine_tune.")
        self._batch += 1
        state = np.random.get_state()
        np.random.seed(np.random.SeedSequence([self._seed, self._epoch, self._batch]).generate_state(1)[0])
        try:
            # timm mixes each item with its mirror in the batch, so it needs an even count: an odd last
            # item keeps its image and gets its own one-hot target.
            even = len(images) - len(images) % 2
            if even == 0:
                return images, self._unmixed(targets)
            mixed, soft = self._mixup(images[:even], targets[:even])
            if even == len(images):
                return mixed, soft
            rest = self._unmixed(targets[even:])
            return torch.cat([mixed, images[even:]]), torch.cat([soft, rest])
        finally:
            np.random.set_state(state)

    def _unmixed(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets of items left unmixed, in the shape and dtype mixed ones have."""
        return mixup_target(targets, self.n_classes, multi_label=self._multi_label)
