"""Resumable training checkpoints.

A checkpoint holds the weights, the optimizer state, the position in the schedule, the epoch, the
recorder's history, the freeze state and the RNG states. It contains only tensors, numbers, strings,
lists and dicts, so it loads with `torch.load(weights_only=True)`: no arbitrary unpickling.
Shuffling and augmentation depend only on (seed, epoch), so a resumed fit sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unfreeze._io import atomic_path, cpu_state_dict

if TYPE_CHECKING:
    from unfreeze.train.learner import Learner

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not match the learner it is loaded into."""


def save_checkpoint(learner: Learner, path: str | Path, *, epoch: int, total_steps: int | None) -> Path:
    """Write a resumable checkpoint of `learner` after `epoch` (atomically).

    Example:
        >>> save_checkpoint(learn, "run/ckpt.pt", epoch=0, total_steps=300)  # doctest: +SKIP
    """
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "model": cpu_state_dict(learner.model),
        "optimizer": None if learner.optimizer is None else learner.optimizer.state_dict(),
        "epoch": epoch,
        "step": learner.step,
        "total_steps": -1 if total_steps is None else total_steps,
        "frozen_to": learner.frozen_to,
        "train_bn": learner.train_bn,
        "recorder": learner.recorder.state_dict(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(learner: Learner, path: str | Path) -> int:
    """Load a checkpoint into `learner` and return the epoch it was saved after.

    Raises:
        CheckpointError: For a missing, unreadable or mismatching file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Pass the path given as checkpoint= to the fit.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, pickle with code, anything not a plain checkpoint
        raise CheckpointError(
            f"{path} is not a readable unfreeze checkpoint ({type(error).__name__}: {error}). "
            "It may be truncated or not a checkpoint at all."
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} has checkpoint format {found!r}; this version reads {CHECKPOINT_FORMAT}.")
    learner.train_bn = bool(state["train_bn"])
    learner.freeze_to(int(state["frozen_to"]))
    try:
        learner.model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} was saved from a different model: {error}") from None
    if state["optimizer"] is not None:
        learner.ensure_optimizer().load_state_dict(state["optimizer"])
    learner.recorder.load_state_dict(state["recorder"])
    learner.step = int(state["step"])
    learner.epoch = int(state["epoch"])
    torch.set_rng_state(state["cpu_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["epoch"])
