"""The state of a learner: the sections its parts own, composed into one dict and restored in order.

`Learner.state_dict()` and `Learner.load_state_dict()` are the one serialiser of a learner; they
call `capture` and `restore` here. Each section belongs to one owner, which saves and restores it
itself: `model` (the model), `freeze` (`ParamGroups`), `optimizer` and `scaler` (`Stepper`), `modes`
(the model's modules), `position` (the loop's `Position` and the loader's epoch), `progress` (the
recipes' `FitProgress`), `recorder` (the `Recorder`), `rng` (the process's RNGs, kept here).
Checkpoints (`train.checkpoint`) write a captured state to disk, the LR finder restores one in
memory, SaveBestModel keeps its model section. A state holds only tensors, numbers, strings, lists
and dicts, so a checkpoint loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from unfreeze.train.protocols import StateTarget

__all__ = ["STATE_KEYS", "capture", "restore"]

# The sections of a state; `capture(keys=...)` builds only those asked for.
STATE_KEYS = ("model", "optimizer", "scaler", "freeze", "modes", "position", "progress", "recorder", "rng")
_STATE_FORMAT = 1


def _rng_state() -> dict[str, Any]:
    """Every RNG the loop may draw from, as tensors, numbers and lists (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # A checkpoint from a host with more GPUs: the devices this one has.
        for device, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))


def capture(learner: StateTarget, keys: Collection[str] | None = None, grads: bool = False) -> dict[str, Any]:
    """The sections `keys` (default: all) of `learner`'s state, as copies; see `Learner.state_dict`."""
    wanted = set(STATE_KEYS if keys is None else keys)
    unknown = wanted - set(STATE_KEYS)
    if unknown:
        raise ValueError(f"Unknown state sections {sorted(unknown)}; the sections are {list(STATE_KEYS)}.")
    builders = {
        "model": lambda: {k: v.detach().clone() for k, v in learner.model.state_dict().items()},
        "freeze": learner.groups.state_dict,
        "modes": lambda: [m.training for m in learner.model.modules()],
        "position": lambda: {"epoch": learner.position.epoch, "step": learner.position.step,
                             "loader_epoch": learner.dls.train.epoch},
        "progress": lambda: copy.deepcopy(learner.progress.state_dict()),
        "recorder": lambda: copy.deepcopy(learner.recorder.state_dict()),
        "rng": _rng_state,
    }
    state: dict[str, Any] = {"format": _STATE_FORMAT}
    for key in STATE_KEYS:
        if key in ("optimizer", "scaler"):
            if key in wanted:
                state.update(learner.stepper.state_dict(keys=[key]))
        elif key in wanted:
            state[key] = builders[key]()
    if grads:
        state["grads"] = [None if p.grad is None else p.grad.detach().clone()
                          for p in learner.groups.params.values()]
    return state


def restore(learner: StateTarget, state: dict[str, Any]) -> None:
    """Put the sections present in `state` back into `learner`; see `Learner.load_state_dict`.

    The order matters: the model first (a state of another model fails before anything changed), then
    the freezing, which clears the optimizer, then the optimizer built over the restored trainable
    parameters.
    """
    if "model" in state:
        learner.model.load_state_dict(state["model"])
    if "freeze" in state:
        learner.groups.load_state_dict(state["freeze"])
        learner.stepper.reset_optimizer()  # new trainable parameters: new moments, as fastai
    learner.stepper.load_state_dict({key: state[key] for key in ("optimizer", "scaler") if key in state})
    if "modes" in state:
        for module, training in zip(learner.model.modules(), state["modes"], strict=True):
            module.training = bool(training)
    if "position" in state:
        learner.position.epoch, learner.position.step = int(state["position"]["epoch"]), int(state["position"]["step"])
        learner.dls.train.set_epoch(int(state["position"]["loader_epoch"]))
    if "progress" in state:
        learner.progress.load_state_dict(copy.deepcopy(state["progress"]) or {})
    if "recorder" in state:
        learner.recorder.load_state_dict(copy.deepcopy(state["recorder"]))
    if "rng" in state:
        _set_rng_state(state["rng"])
    if "grads" in state:
        for param, grad in zip(learner.groups.params.values(), state["grads"], strict=True):
            param.grad = grad
