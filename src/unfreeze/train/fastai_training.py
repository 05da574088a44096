"""fastai's training names beyond the seed workflow, translated into unfreeze's own.

- `opt_func=Adam | SGD | ranger` (and `partial(Adam, ...)` without arguments) → `optimizer="adamw" |
  "sgd" | "ranger"` (`optimizer_or_opt_func`);
- `learn.fit_flat_cos`, `learn.fit_sgdr`, `learn.no_bar()` (`FastaiTrainingMethods`, mixed into
  `Learner`), on `schedules.FlatCosSchedule` / `SGDRSchedule` and `recipes.run_schedule`;
- `ShowGraphCallback` (the loss plot after each fit), `set_seed`;
- `GradientAccumulation`, which unfreeze does not copy: its one-line error names `grad_accum=`.

The core never sees these spellings; each resolves to the keywords and schedules above.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from unfreeze import distributed
from unfreeze.train import recipes
from unfreeze.train.callbacks import Callback
from unfreeze.train.fastai_idioms import callbacks_and_cbs
from unfreeze.train.schedules import FlatCosSchedule, LRSpec, SGDRSchedule, resolve_lrs, sgdr_epochs

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView, RecipeTarget

__all__ = ["SGD", "Adam", "FastaiTrainingMethods", "GradientAccumulation", "ShowGraphCallback", "optimizer_or_opt_func",
           "ranger", "set_seed"]


# ---------------------------------------------------------------------------- opt_func


class _OptimizerName:
    """fastai's optimizer function (`Adam`, `SGD`, `ranger`) as the name of unfreeze's optimizer."""

    def __init__(self, fastai_name: str, optimizer: str) -> None:
        self.__name__, self.optimizer = fastai_name, optimizer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"unfreeze builds the optimizer itself: pass opt_func={self.__name__} (not "
                        f"{self.__name__}(...)) to Learner or vision_learner, or optimizer={self.optimizer!r}.")

    def __repr__(self) -> str:
        return self.__name__


Adam = _OptimizerName("Adam", "adamw")  # fastai's Adam: decoupled weight decay, as torch's AdamW
SGD = _OptimizerName("SGD", "sgd")
ranger = _OptimizerName("ranger", "ranger")  # RAdam + Lookahead


def optimizer_or_opt_func(optimizer: str | None, opt_func: Any) -> str:
    """unfreeze's `optimizer=` or fastai's `opt_func=` (Adam, SGD, ranger) as one optimizer name.

    Example:
        >>> optimizer_or_opt_func(None, SGD)
        'sgd'
    """
    if opt_func is None:
        return optimizer or "adamw"
    chosen = opt_func
    if isinstance(chosen, functools.partial) and not chosen.args and not chosen.keywords:
        chosen = chosen.func
    if not isinstance(chosen, _OptimizerName):
        raise ValueError(f"opt_func={opt_func!r} is not supported: unfreeze's opt_func takes Adam, SGD or ranger "
                         "(with fastai's defaults), the same as optimizer='adamw', 'sgd' or 'ranger'.")
    if optimizer is not None and optimizer != chosen.optimizer:
        raise ValueError(f"optimizer={optimizer!r} and opt_func={chosen!r} disagree; pass one of them "
                         "(opt_func= is fastai's spelling).")
    return chosen.optimizer


# ---------------------------------------------------------------------------- callbacks and seeds


class ShowGraphCallback(Callback):
    """fastai's `ShowGraphCallback`: the training and validation losses drawn when a fit ends (inline in
    a notebook; in a script saved as loss.png, its location printed).

    Example:
        >>> learn.fit_one_cycle(3, cbs=ShowGraphCallback())  # doctest: +SKIP
    """

    _watches_batches_only = True

    def __init__(self) -> None:
        self._recorder: Any = None

    def before_fit(self, learner: LearnerView) -> None:
        self._recorder = learner.recorder

    def after_fit(self, logs: dict[str, float]) -> None:
        if self._recorder is not None and self._recorder.history and distributed.is_main_process():
            from unfreeze import plots

            plots.plot_loss(self._recorder, None, skip_start=0)


class GradientAccumulation:
    """fastai's `GradientAccumulation(n_acc)` is not copied: one line says what to use instead."""

    def __init__(self, n_acc: int = 32) -> None:
        raise TypeError(f"GradientAccumulation(n_acc={n_acc}) is not supported: unfreeze's grad_accum= splits each "
                        f"batch into micro-batches instead. For {n_acc} images per step pass bs={n_acc} and "
                        "grad_accum=k (each micro-batch bs/k images) to the learner.")


def set_seed(s: int, reproducible: bool = False) -> None:
    """fastai's `set_seed`: seed Python's, numpy's and torch's global RNGs (all devices).

    With `reproducible`, cuDNN also runs deterministically without autotuning. unfreeze's own seeds
    (`ImageDataLoaders(seed=...)`, `vision_learner(seed=...)`) leave the global RNGs alone.

    Example:
        >>> set_seed(42)
    """
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    if reproducible:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


# ---------------------------------------------------------------------------- fit_flat_cos, fit_sgdr, no_bar


class _Host(Protocol):
    quiet: bool

    @property
    def n_groups(self) -> int: ...

    @property
    def dls(self) -> Any: ...


class FastaiTrainingMethods:
    """fastai's `fit_flat_cos`, `fit_sgdr` and `no_bar`, mixed into `Learner` (public members only)."""

    def fit_flat_cos(self, n_epoch: int, lr: LRSpec | None = None, div_final: float = 1e5, pct_start: float = 0.75,
                     wd: float | None = None, cbs: Callback | Sequence[Callback] | None = None, *,
                     callbacks: Callback | Sequence[Callback] = (),
                     checkpoint: str | Path | None = None) -> list[dict[str, Any]]:
        """fastai's `fit_flat_cos`: each group's LR held flat for `pct_start` of the steps, then a cosine
        down to `lr / div_final` (`schedules.FlatCosSchedule`); the momentum stays 0.9.

        Args:
            n_epoch: Epochs.
            lr: A float, slice or one LR per group; None is fastai's default 1e-3.
            div_final, pct_start: As in fastai.
            wd, cbs, callbacks, checkpoint: As in `fit`.

        Example:
            >>> learn.fit_flat_cos(5, 1e-3)  # doctest: +SKIP
        """
        host: RecipeTarget = self  # type: ignore[assignment]
        n_epoch = recipes.check_epochs(n_epoch)
        lrs = resolve_lrs(1e-3 if lr is None else lr, host.n_groups)
        schedule = FlatCosSchedule(lrs, n_epoch * len(host.dls.train), div_final=div_final, pct_start=pct_start)
        return recipes.run_schedule(host, n_epoch, schedule, callbacks_and_cbs(callbacks, cbs), checkpoint, None,
                                    None, wd)

    def fit_sgdr(self, n_cycles: int, cycle_len: int, lr_max: LRSpec | None = None, cycle_mult: int = 2,
                 cbs: Callback | Sequence[Callback] | None = None, wd: float | None = None, *,
                 callbacks: Callback | Sequence[Callback] = (),
                 checkpoint: str | Path | None = None) -> list[dict[str, Any]]:
        """fastai's `fit_sgdr`: `n_cycles` cosine cycles from `lr_max` to 0, cycle i lasting
        `cycle_len * cycle_mult**i` epochs (`schedules.SGDRSchedule`); the momentum stays 0.9.

        Example:
            >>> learn.fit_sgdr(3, 1, lr_max=3e-3)  # 1 + 2 + 4 = 7 epochs  # doctest: +SKIP
        """
        host: RecipeTarget = self  # type: ignore[assignment]
        for name, value in (("n_cycles", n_cycles), ("cycle_len", cycle_len), ("cycle_mult", cycle_mult)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"fit_sgdr: {name} must be a whole number >= 1, got {value!r}.")
        n_epoch = sgdr_epochs(n_cycles, cycle_len, cycle_mult)
        lrs = resolve_lrs(1e-3 if lr_max is None else lr_max, host.n_groups)
        schedule = SGDRSchedule(lrs, n_epoch * len(host.dls.train), n_cycles, cycle_len, cycle_mult)
        return recipes.run_schedule(host, n_epoch, schedule, callbacks_and_cbs(callbacks, cbs), checkpoint, None,
                                    None, wd)

    @contextlib.contextmanager
    def no_bar(self) -> Iterator[None]:
        """fastai's `with learn.no_bar():` no progress bar or table inside the block (`quiet=True` there).

        Example:
            >>> with learn.no_bar():  # doctest: +SKIP
            ...     learn.fit(1)
        """
        host: _Host = self  # type: ignore[assignment]
        before, host.quiet = host.quiet, True
        try:
            yield
        finally:
            host.quiet = before
