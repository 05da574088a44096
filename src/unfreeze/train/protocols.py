"""The public members of a learner that the training helpers use, as small `typing.Protocol`s.

The loop, the state serialiser, the LR finder, the callbacks, the summary and the recipes are typed
against these, never against `Learner`: they do not import learner.py (only the builders do), so the
training package imports one way, and a test double or another trainer that offers these members can
drive them. Each protocol lists only what its user reads or calls; `Learner` satisfies all of them. This module
imports nothing of the package: the recorder and callbacks are typed `Any` here (callbacks.py is typed
against these protocols and cannot be imported back).

    LearnerView      what callbacks, loggers and the summary read (never write)
    Stateful         an owner of one state section: state_dict / load_state_dict
    Checkpointable   what checkpoint and weights files are written from and loaded into
    PositionView     epoch, step, interrupted (train.loop.Position)
    GroupsView       the parameter groups and freezing (train.groups.ParamGroups)
    StepperView      optimizer, AMP and the training step (train.stepper.Stepper)
    StateTarget      what train.state captures and restores, section by section
    FitTarget        what train.loop.run_fit drives
    RangeTestTarget  what train.lr_find.lr_find drives
    RecipeTarget     what train.recipes runs fits on
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["Checkpointable", "FitTarget", "GroupsView", "LearnerView", "PositionView", "RangeTestTarget",
           "RecipeTarget", "StateTarget", "Stateful", "StepperView"]


class Stateful(Protocol):
    """An owner of a state section: it saves and restores its own part (plain values and tensors)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Checkpointable(Protocol):
    """What checkpoint and weights files are written from and loaded into."""

    device: torch.device

    def state_dict(self, keys: Collection[str] | None = None, *, grads: bool = False) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class PositionView(Protocol):
    """Where training stands (train.loop.Position): written by the loop, saved in the "position" section."""

    epoch: int
    step: int
    interrupted: bool


class GroupsView(Protocol):
    """Parameter groups and freezing: the name → parameter map, the groups and the "freeze" section."""

    @property
    def params(self) -> dict[str, nn.Parameter]: ...

    @property
    def groups(self) -> list[list[str]]: ...

    @property
    def n_groups(self) -> int: ...

    @property
    def frozen_to(self) -> int: ...

    @property
    def train_bn(self) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StepperView(Protocol):
    """The optimizer, AMP and one training step; its sections are "optimizer" and "scaler"."""

    overlap_steps: bool
    optimizer_name: str
    weight_decay: float
    grad_accum: int
    compile_model: bool | str

    @property
    def amp_dtype(self) -> torch.dtype | None: ...

    def set_mixed_precision(self, enabled: bool) -> bool: ...

    def weight_decay_for_fit(self, wd: float | None) -> AbstractContextManager[None]: ...

    @property
    def optimizer(self) -> torch.optim.Optimizer | None: ...

    def ensure_optimizer(self) -> torch.optim.Optimizer: ...

    def reset_optimizer(self) -> None: ...

    def set_hyper(self, lrs: Sequence[float], mom: float) -> None: ...

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, *, skip_non_finite: bool = True
                   ) -> torch.Tensor: ...

    def state_dict(self, keys: Collection[str] = ("optimizer", "scaler")) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class LearnerView(Protocol):
    """What a callback, a logger or the summary may read of the learner it is given (read only)."""

    model: nn.Module
    dls: Any
    device: torch.device
    recorder: Any  # train.callbacks.Recorder
    loss_func: nn.Module
    seed: int | None
    quiet: bool
    callbacks: list[Any]  # train.callbacks.Callback
    path: Path
    model_dir: Path

    @property
    def groups(self) -> GroupsView: ...

    @property
    def stepper(self) -> StepperView: ...

    @property
    def n_groups(self) -> int: ...

    @property
    def frozen_to(self) -> int: ...

    @property
    def train_bn(self) -> bool: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def amp_dtype(self) -> torch.dtype | None: ...

    @property
    def metric_names(self) -> list[str]: ...

    @property
    def interrupted(self) -> bool: ...

    def save_weights(self, path: str | Path) -> Path: ...

    def load_weights(self, path: str | Path, *, strict: bool = True) -> None: ...


class StateTarget(Protocol):
    """The owners whose sections `train.state` composes into one learner state."""

    model: nn.Module
    dls: Any
    recorder: Any  # train.callbacks.Recorder
    position: PositionView
    progress: Stateful  # train.recipes.FitProgress

    @property
    def groups(self) -> GroupsView: ...

    @property
    def stepper(self) -> StepperView: ...


class FitTarget(Protocol):
    """What the training loop drives: the model and data, the step, the record and the position."""

    model: nn.Module
    dls: Any
    task: Any  # unfreeze.tasks.Task: the loop checks the model's outputs against it
    device: torch.device
    recorder: Any  # train.callbacks.Recorder
    seed: int | None
    quiet: bool
    position: PositionView  # the loop writes it while a fit runs

    @property
    def stepper(self) -> StepperView: ...

    @property
    def epochs_done(self) -> int: ...

    @property
    def frozen_to(self) -> int: ...

    @property
    def n_groups(self) -> int: ...

    def set_train_mode(self) -> None: ...

    def validate(self) -> dict[str, float]: ...

    def state_dict(self, keys: Collection[str] | None = None, *, grads: bool = False) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RangeTestTarget(Protocol):
    """What the LR range test drives; it restores the learner's whole state afterwards."""

    dls: Any
    task: Any  # unfreeze.tasks.Task: the test checks the model's outputs against it, as fit does
    model: nn.Module
    recorder: Any  # train.callbacks.Recorder
    seed: int | None
    quiet: bool

    def set_hyper(self, lrs: Sequence[float], mom: float) -> None: ...

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, *, skip_non_finite: bool = True
                   ) -> torch.Tensor: ...

    @property
    def n_groups(self) -> int: ...

    @property
    def epochs_done(self) -> int: ...

    def set_train_mode(self) -> None: ...

    def state_dict(self, keys: Collection[str] | None = None, *, grads: bool = False) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RecipeTarget(FitTarget, Protocol):
    """What the recipes (fit, one-cycle, fine_tune, resume, auto LR) use on top of the loop's members."""

    callbacks: list[Any]  # train.callbacks.Callback
    progress: Any  # train.recipes.FitProgress, which the recipes own
    task: Any  # tasks.SingleLabel | tasks.MultiLabel: fit_recipe builds its loss (label smoothing)
    class_weights: torch.Tensor | None
    loss_func: nn.Module  # fit_recipe swaps in the label-smoothed loss for its fit only
    recipe: Any  # train.recipe_settings.Recipe: what fit_recipe runs when given none

    @property
    def n_groups(self) -> int: ...

    def freeze(self) -> None: ...

    def freeze_to(self, n: int) -> None: ...

    def unfreeze(self) -> None: ...

    def lr_find(self, *, plot: str | Path | None = None) -> Any: ...
