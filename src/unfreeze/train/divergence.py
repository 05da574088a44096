"""Divergence: notice a fit that blew up, roll back and retry once at a lower LR, never keep a NaN model.

Two signs, at any batch size: a non-finite training loss (the loop raises `NonFiniteLossError`), and a
validation loss that is not finite or exceeds `factor` times the best one seen (`DivergenceGuard`). The
second matters when an epoch has one step: the step that breaks the weights is the epoch's last, its
loss is still finite, and only the validation pass that follows sees NaN (issue 17: `--lr 1e10` on a
tiny set exited 0 and exported a model whose every probability was NaN).

`retry_on_divergence` runs a training function, and on divergence puts the learner back as it was
before (weights, optimizer, freeze state, history: the whole `state_dict`) and runs it once more at
`lr * lr_factor`, saying so; a second divergence raises `TrainingDivergedError` with one line.
`check_finite_predictions` is the last gate before an export.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch

from unfreeze import distributed
from unfreeze.train.callbacks import Callback
from unfreeze.train.loop import NonFiniteLossError

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView

__all__ = ["DivergenceGuard", "GuardedFit", "TrainingDivergedError", "check_finite_predictions",
           "retry_on_divergence"]

T = TypeVar("T")


class TrainingDivergedError(NonFiniteLossError):
    """Training diverged even after the retry at a lower LR, or the model predicts NaN or infinity."""


class DivergenceGuard(Callback):
    """Stop a fit whose validation loss is not finite or has exploded past `factor` × its best.

    Below the loss of a model that knows nothing (`task.chance_loss`: ln C for C classes), that loss
    counts instead of the best: a model that gets every validation image right has a tiny loss, and
    ten times it is still a good model, not a diverged one.

    After the stop, `reason` says what happened (None while the fit is sound). The best is kept across
    the fits the guard is given (fine_tune's two phases), so an unfrozen phase that wrecks what the
    frozen one learned is caught.

    Args:
        factor: How many times the best validation loss counts as exploded (default 10).

    Example:
        >>> guard = DivergenceGuard(factor=10)
        >>> learn.fit_one_cycle(3, 1e-3, callbacks=[guard]); guard.reason  # doctest: +SKIP
    """

    def __init__(self, factor: float = 10.0) -> None:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
            raise ValueError(f"factor must be a number > 1 (how many times the best validation loss counts as "
                             f"diverged), got {factor!r}.")
        self.factor = float(factor)
        self.best: float | None = None
        self.floor = 0.0  # the task's chance-level loss (before_fit)
        self.reason: str | None = None
        self._learner: LearnerView | None = None

    def before_fit(self, learner: LearnerView) -> None:
        self._learner = learner
        chance = getattr(getattr(learner, "task", None), "chance_loss", None)
        self.floor = float(chance(int(getattr(learner.dls, "n_classes", 0) or 0))) if callable(chance) else 0.0

    def after_validate(self, epoch: int, logs: dict[str, float]) -> bool:
        loss = float(logs.get("valid_loss", math.nan))
        # The epoch as the results table numbers it (continuous across fine_tune's phases).
        row = len(self._learner.recorder.history) if self._learner is not None else epoch
        if not math.isfinite(loss):
            self.reason = f"the validation loss became {loss} at epoch {row}"
        elif self.best is not None and loss > self.factor * max(self.best, self.floor):
            than = f"its best {self.best:.4g}" if self.best >= self.floor else (
                f"the {self.floor:.4g} of a model that knows nothing")
            self.reason = f"the validation loss exploded to {loss:.4g} at epoch {row}, more than {self.factor:g}x "
            self.reason += than
        else:
            self.best = loss if self.best is None else min(self.best, loss)
        return self.reason is not None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")


@dataclass(frozen=True)
class GuardedFit(Generic[T]):
    """What `retry_on_divergence` ran: the training function's result, the LR that trained, and the retry.

    Attributes:
        result: What the training function returned on the attempt that held.
        lr: The LR of that attempt.
        retried_because: Why the first attempt was rolled back (None when it held).
    """

    result: T
    lr: float
    retried_because: str | None = None


def retry_on_divergence(learner: Any, train: Callable[[float, DivergenceGuard], T], lr: float, *,
                        lr_factor: float = 0.1, factor: float = 10.0) -> GuardedFit[T]:
    """Run `train(lr, guard)`; if it diverges, restore the learner and run it once more at `lr * lr_factor`.

    `train` must pass the guard to its fit's callbacks (a fresh `DivergenceGuard` each attempt). The
    learner is restored through its `state_dict()` (weights, optimizer, freeze state, history), so the
    retry starts from exactly where the first attempt did; the recorder notes the retry.

    Args:
        learner: The learner `train` fits (its `state_dict`, `load_state_dict`, `recorder`, `quiet`).
        train: Trains the learner at the given LR with the guard among its callbacks.
        lr: The first attempt's LR.
        lr_factor: The retry's LR is `lr * lr_factor` (default: ten times lower).
        factor: The guard's explosion factor for the validation loss.

    Raises:
        TrainingDivergedError: The retry diverged too (the learner holds the weights from before it).

    Example:
        >>> fitted = retry_on_divergence(learn, lambda lr, guard: learn.fine_tune(3, lr,  # doctest: +SKIP
        ...                                  callbacks=[guard]), 2e-3)
        >>> fitted.lr, fitted.retried_because  # doctest: +SKIP
        (0.002, None)
    """
    if not 0 < lr_factor < 1:
        raise ValueError(f"lr_factor must be between 0 and 1 (the retry's LR is lr * lr_factor), got {lr_factor!r}.")
    before = learner.state_dict()
    first_reason = None
    for attempt, attempt_lr in enumerate((lr, lr * lr_factor)):
        guard = DivergenceGuard(factor)
        try:
            result = train(attempt_lr, guard)
            reason = guard.reason
        except NonFiniteLossError as error:
            result, reason = None, f"the training loss became non-finite ({str(error).split(';')[0]})"
        if reason is None:
            return GuardedFit(result, attempt_lr, first_reason)  # type: ignore[arg-type]
        learner.load_state_dict(before)
        if attempt == 0:
            first_reason = reason
            note = (f"training diverged at LR {attempt_lr:.2e}: {reason}; rolled back, retrying once at "
                    f"{lr * lr_factor:.2e}")
            learner.recorder.add_note(note)
            if not learner.quiet and distributed.is_main_process():
                print(f"unfreeze: {note}", flush=True)
    raise TrainingDivergedError(
        f"Training diverged at LR {lr:.2e} ({first_reason}) and again at {lr * lr_factor:.2e} ({reason}); the "
        "weights from before training were restored and nothing was kept. Lower the LR further (try lr_find) "
        "or check the data and labels."
    )


def check_finite_predictions(learner: LearnerView, what: str = "export") -> None:
    """Refuse a model that predicts NaN or infinity on a validation batch (the last gate before `what`).

    Raises:
        TrainingDivergedError: Some output on the first validation batch is not finite.

    Example:
        >>> check_finite_predictions(learn); learn.export("model.unfreeze")  # doctest: +SKIP
    """
    model = learner.model
    modes = [(module, module.training) for module in model.modules()]  # frozen norm layers stay in eval
    model.eval()
    try:
        with torch.no_grad():
            for images, _ in learner.dls.valid:
                outputs = model(images.to(learner.device))
                break
            else:
                return  # no validation batch to check
    finally:
        for module, training in modes:
            module.training = training
    bad = int((~torch.isfinite(outputs)).sum())
    if bad:
        raise TrainingDivergedError(
            f"The trained model predicts NaN or infinity ({bad} of {outputs.numel()} outputs on a validation batch), "
            f"so no {what} was written. Train again with a lower LR (try lr_find) or check the data."
        )
