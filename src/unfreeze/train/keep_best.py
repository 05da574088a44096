"""KeepBest: the model at the end of training is the best epoch's, by the monitored value, and says so.

The last epoch is often not the best (an unfrozen phase that overshoots, a noisy validation set), and
a user who exports what training left behind gets that epoch by luck. `KeepBest` watches one value
of every epoch's row (the learner's first metric, or the validation loss without metrics), keeps a
copy of the best epoch's weights and puts them back at the end of the fit, like fastai's
`SaveModelCallback`, and `describe()` says which epoch was kept and why (summary.json, the final line).

Unlike `SaveBestModel`, whose best restarts with every fit, KeepBest keeps the best over every fit it
is given, so the frozen and the unfrozen phases of `fine_tune` compete: make one per training run.
Epochs are counted as the history's rows (`logs["epoch"]`), continuous across phases.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unfreeze.train.callbacks import SaveBestModel, _mode_for

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView

__all__ = ["KEEP_CHOICES", "KeepBest", "default_monitor"]

KEEP_CHOICES = ("best", "last")


def default_monitor(metric_names: list[str]) -> str:
    """The value a run is judged by: its first metric, or `valid_loss` when it has none.

    Example:
        >>> default_monitor(["error_rate", "accuracy"]), default_monitor([])
        ('error_rate', 'valid_loss')
    """
    return metric_names[0] if metric_names else "valid_loss"


class KeepBest(SaveBestModel):
    """Keep the best epoch's weights (by `monitor`) and end every fit with them; `keep="last"` only watches.

    Args:
        monitor: A column of the epoch rows (`error_rate`, `accuracy`, `valid_loss`, ...); None takes
            the learner's first metric, or `valid_loss` when it has none.
        keep: "best" (default) restores the best epoch at the end of each fit; "last" leaves the last
            epoch's weights and still reports which epoch was best.
        path: Keep the best weights in this safetensors file (a resumed run finds them there); None
            keeps a copy in memory.
        mode: "min", "max" or "auto" (max for accuracy, F1 and scores; min otherwise).

    Example:
        >>> best = KeepBest()
        >>> learn.fine_tune(3, callbacks=[best])  # doctest: +SKIP
        >>> best.describe()  # doctest: +SKIP
        {'kept': 'best', 'monitor': 'error_rate', 'best_epoch': 2, 'best_value': 0.08, 'last_epoch': 3, ...}
    """

    def __init__(self, monitor: str | None = None, keep: str = "best", path: str | Path | None = None,
                 mode: str = "auto") -> None:
        if keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_CHOICES)}, got {keep!r}: 'best' ends training "
                             "with the best epoch's weights, 'last' with the last epoch's.")
        super().__init__(monitor or "valid_loss", path or "best.safetensors", mode, restore_best=keep == "best")
        self._monitor_given = monitor is not None
        self._mode_given = mode
        self._in_memory = path is None
        self._weights: dict[str, torch.Tensor] | None = None
        self.keep = keep
        self.last_epoch: int | None = None
        self.last_value: float | None = None

    def before_fit(self, learner: LearnerView) -> None:
        # No reset here: the best competes across fits (fine_tune's phases), see the module docstring.
        self._learner = learner
        if not self._monitor_given:
            self.monitor = default_monitor(list(learner.metric_names))
            self.mode = _mode_for(self.monitor, self._mode_given)

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        row = int(logs.get("epoch", epoch))
        value = self._read(logs)
        self.last_epoch, self.last_value = row, value
        if self._learner is not None and math.isfinite(value) and self._better(value):
            self.best, self.best_epoch = value, row
            if self.restore_best:  # keep="last" only reports the best: no copy to restore
                self._save(self._learner)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def _save(self, learner: LearnerView) -> None:
        if self._in_memory:
            # A CPU copy: the weights keep training on their device while this one stays.
            self._weights = {name: tensor.detach().to("cpu", copy=True)
                             for name, tensor in learner.model.state_dict().items()}
        else:
            super()._save(learner)

    def after_fit(self, logs: dict[str, float]) -> None:
        if not (self.restore_best and self._learner is not None and self.best_epoch is not None):
            return
        if self.best_epoch == self.last_epoch:
            return  # the model already holds the best epoch's weights
        if self._in_memory:
            if self._weights is not None:
                self._learner.model.load_state_dict(self._weights)
        else:
            self._learner.load_weights(self.path)
        self.last_epoch = self.best_epoch  # what the model holds now

    @property
    def kept(self) -> str:
        """"best" when the model holds the best epoch's weights, "last" when it holds the last epoch's."""
        return "best" if self.keep == "best" else "last"

    def describe(self) -> dict[str, Any]:
        """Which epoch the model holds and why, as plain values for summary.json.

        Keys: kept ("best" or "last"), monitor, mode, best_epoch, best_value, and with `keep="last"`
        the last epoch and its value.
        """
        described: dict[str, Any] = {"kept": self.kept, "monitor": self.monitor, "mode": self.mode,
                                     "best_epoch": self.best_epoch, "best_value": self.best}
        if self.keep == "last":
            described.update(last_epoch=self.last_epoch, last_value=self.last_value)
        return described

    def sentence(self) -> str:
        """One line for the end of a run, e.g. "kept epoch 2 (best error_rate 0.0800)"."""
        if self.best_epoch is None:
            return f"no epoch had a finite {self.monitor}"
        if self.keep == "last":
            return (f"kept the last epoch {self.last_epoch} ({self.monitor} {self.last_value:.4f}; --keep last); "
                    f"the best was epoch {self.best_epoch} ({self.best:.4f})")
        return f"kept epoch {self.best_epoch}, the best by {self.monitor} ({self.best:.4f})"

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "monitor": self.monitor, "last_epoch": self.last_epoch,
                "last_value": self.last_value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.monitor = state.get("monitor", self.monitor)
        self.last_epoch, self.last_value = state.get("last_epoch"), state.get("last_value")
