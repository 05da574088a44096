"""The state of a Learner: its sections, how they are captured and restored, and the resume check.

`Learner.state_dict()` and `Learner.load_state_dict()` are the one serialiser of a learner; they call
`capture` and `restore` here. Checkpoints (`train.checkpoint`) write a captured state to disk, the LR
finder restores one in memory, SaveBestModel keeps its model section. A state holds only tensors,
numbers, strings, lists and dicts, so a checkpoint loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unfreeze.train.checkpoint import CheckpointError

if TYPE_CHECKING:
    from unfreeze.train.learner import Learner

__all__ = ["STATE_KEYS", "capture", "check_same_fit", "restore"]

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


def capture(learner: Learner, keys: Collection[str] | None = None, grads: bool = False) -> dict[str, Any]:
    """The sections `keys` (default: all) of `learner`'s state, as copies; see `Learner.state_dict`."""
    wanted = set(STATE_KEYS if keys is None else keys)
    unknown = wanted - set(STATE_KEYS)
    if unknown:
        raise ValueError(f"Unknown state sections {sorted(unknown)}; the sections are {list(STATE_KEYS)}.")
    builders = {
        "model": lambda: {k: v.detach().clone() for k, v in learner.model.state_dict().items()},
        "optimizer": lambda: None if learner.optimizer is None else copy.deepcopy(learner.optimizer.state_dict()),
        "scaler": lambda: None if learner._scaler is None else learner._scaler.state_dict(),
        "freeze": lambda: {"frozen_to": learner.frozen_to, "train_bn": learner.train_bn,
                           "requires_grad": [p.requires_grad for p in learner._param_names.values()]},
        "modes": lambda: [m.training for m in learner.model.modules()],
        "position": lambda: {"epoch": learner.epoch, "step": learner.step, "loader_epoch": learner.dls.train.epoch},
        "progress": lambda: copy.deepcopy(learner.progress),
        "recorder": lambda: copy.deepcopy(learner.recorder.state_dict()),
        "rng": _rng_state,
    }
    state: dict[str, Any] = {"format": _STATE_FORMAT}
    state.update({key: build() for key, build in builders.items() if key in wanted})
    if grads:
        state["grads"] = [None if p.grad is None else p.grad.detach().clone() for p in learner._param_names.values()]
    return state


def restore(learner: Learner, state: dict[str, Any]) -> None:
    """Put the sections present in `state` back into `learner`; see `Learner.load_state_dict`."""
    params = list(learner._param_names.values())
    if "model" in state:
        # First: a state of another model fails here, before anything else has changed.
        learner.model.load_state_dict(state["model"])
    if "freeze" in state:
        learner.train_bn = bool(state["freeze"]["train_bn"])
        learner.freeze_to(int(state["freeze"]["frozen_to"]))  # also clears the optimizer, as fastai
        for param, flag in zip(params, state["freeze"]["requires_grad"], strict=True):
            param.requires_grad_(bool(flag))
    if "optimizer" in state:
        learner.optimizer = None
        if state["optimizer"] is not None:
            # A new optimizer over the restored trainable parameters, then the saved moments.
            learner.ensure_optimizer().load_state_dict(state["optimizer"])
    if state.get("scaler") is not None:
        learner._scaler = learner._scaler or torch.amp.GradScaler("cuda")
        learner._scaler.load_state_dict(state["scaler"])
    elif "scaler" in state:
        learner._scaler = None
    if "modes" in state:
        for module, training in zip(learner.model.modules(), state["modes"], strict=True):
            module.training = bool(training)
    if "position" in state:
        learner.epoch, learner.step = int(state["position"]["epoch"]), int(state["position"]["step"])
        learner.dls.train.set_epoch(int(state["position"]["loader_epoch"]))
    if "progress" in state:
        learner.progress = copy.deepcopy(state["progress"]) or {}
    if "recorder" in state:
        learner.recorder.load_state_dict(copy.deepcopy(state["recorder"]))
    if "rng" in state:
        _set_rng_state(state["rng"])
    if "grads" in state:
        for param, grad in zip(params, state["grads"], strict=True):
            param.grad = grad


def check_same_fit(saved: dict[str, Any], requested: dict[str, Any], path: Any) -> None:
    """Refuse to resume a checkpoint into a different fit, naming the first value that differs."""
    where = "the checkpoint" if isinstance(path, dict) else str(path)
    for key in requested:
        before, now = _plain(saved.get(key)), _plain(requested[key])
        if before == now:
            continue
        if isinstance(before, dict) and isinstance(now, dict):
            differing = [name for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]
            detail = "; ".join(f"{name}={before.get(name)!r} there, {now.get(name)!r} now" for name in differing)
        else:
            detail = f"{key}={before!r} there, {now!r} now"
        raise CheckpointError(
            f"Cannot resume from {where}: it was written by a different fit ({detail}). Resume with the "
            "arguments of the interrupted run, or start a new run without resume."
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, so that values compare equal after a round trip through a checkpoint."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
