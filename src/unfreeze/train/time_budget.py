"""A wall-clock budget for a fit: estimate an epoch's cost before training, plan the epochs that fit,
and stop before an epoch would overrun (`TimeBudget`).

The estimate times a few forward + backward passes of a copy of the model with every parameter
trainable (an unfrozen epoch, the expensive kind), so nothing of the learner changes; the plan then
uses the wall time actually left when the unfrozen phase starts. Measured epochs correct the plan:
`TimeBudget` stops after an epoch when the next one, as long as the slowest so far, would end past the
deadline. Ultralytics' `time=` argument does the same for detection.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import torch

from unfreeze.train.callbacks import Callback

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView

__all__ = ["TimeBudget", "estimate_epoch_seconds"]

# Validation is a forward pass without the backward one: about a third of a training step per image.
_VALID_COST = 1 / 3


def estimate_epoch_seconds(model: torch.nn.Module, loss_func: torch.nn.Module, loaders: Any,
                           n_steps: int = 2) -> float:
    """Seconds for one unfrozen epoch (training + validation), from `n_steps` timed training steps.

    Works on a copy of `model` in eval mode (no norm statistics change) and reads its first training
    batches from `loaders.train` (decoding them, which the fit would do anyway).

    Example:
        >>> estimate_epoch_seconds(learn.model, learn.loss_func, learn.dls)  # doctest: +SKIP
        41.7
    """
    probe = copy.deepcopy(model).eval()
    for parameter in probe.parameters():
        parameter.requires_grad_(True)
    batches = iter(loaders.train)
    timings = []
    for _ in range(n_steps + 1):  # the first step warms up the kernels and allocator; not timed
        batch = next(batches, None)
        if batch is None:
            break
        images, targets = batch
        started = time.perf_counter()
        loss_func(probe(images), targets).backward()
        probe.zero_grad(set_to_none=True)
        timings.append((time.perf_counter() - started) / max(len(images), 1))
    per_image = min(timings[1:] or timings)
    n_train, n_valid = len(loaders.train.dataset), len(loaders.valid.dataset)
    return per_image * (n_train + _VALID_COST * n_valid)


class TimeBudget(Callback):
    """Stop training after the epoch whose successor would end past `deadline` (a `time.monotonic()`).

    Args:
        deadline: When the fit must be over, on `time.monotonic()`'s clock.

    Example:
        >>> learn.fit_one_cycle(50, 1e-3, callbacks=[TimeBudget(time.monotonic() + 600)])  # doctest: +SKIP
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.slowest = 0.0
        self._epoch_started = 0.0
        self.stopped_early = False

    def before_fit(self, learner: LearnerView) -> None:
        self.stop_training = False

    def before_epoch(self, epoch: int) -> None:
        self._epoch_started = time.monotonic()

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> bool:
        now = time.monotonic()
        self.slowest = max(self.slowest, now - self._epoch_started)
        self.stopped_early = now + self.slowest > self.deadline
        return self.stopped_early
