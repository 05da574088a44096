"""Checkpoint and weights files: writing and reading them, nothing else.

A checkpoint is a learner's `state_dict()` plus the callbacks' states; a weights file is the state's
model section as safetensors (`save_weights`; fastai's `learn.save(name)` builds on it in
`train.fastai_idioms`). Whether a checkpoint may resume a fit is the recipes' question
(`train.recipes`), not this file's.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)`: no arbitrary unpickling. Shuffling and augmentation depend only on
(seed, epoch), so a resumed fit sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unfreeze import distributed
from unfreeze._io import atomic_path, save_safetensors, save_torch

if TYPE_CHECKING:
    from unfreeze.train.callbacks import Callback
    from unfreeze.train.protocols import Checkpointable

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "apply_checkpoint", "callback_key", "load_checkpoint",
           "load_weights", "read_checkpoint", "save_checkpoint", "save_weights", "weights_differences"]

CHECKPOINT_FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not match the learner or fit it is loaded into."""


def callback_key(index: int, callback: Callback) -> str:
    """How a callback's state is filed in a checkpoint: its position and class name."""
    return f"{index}:{type(callback).__name__}"


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def save_checkpoint(learner: Checkpointable, path: str | Path, callbacks: Sequence[Callback] = ()) -> Path:
    """Write `learner.state_dict()` and each callback's `state_dict()` to `path`, atomically.

    Example:
        >>> save_checkpoint(learn, "run/checkpoint.pt")  # doctest: +SKIP
    """
    state = learner.state_dict()
    state["format"] = CHECKPOINT_FORMAT
    state["callbacks"] = {callback_key(index, callback): callback.state_dict()
                          for index, callback in enumerate(callbacks)}
    with atomic_path(path) as tmp:
        save_torch(_to_cpu(state), tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint without loading it into a learner (weights_only: no code runs).

    Raises:
        CheckpointError: For a missing, unreadable or other-format file.

    Example:
        >>> read_checkpoint("run/checkpoint.pt")["recorder"]["history"][-1]["epoch"]  # doctest: +SKIP
        2
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
        raise CheckpointError(f"{path} has checkpoint format {found!r}; this version reads {CHECKPOINT_FORMAT}. "
                              "Start a new run.")
    return state


def apply_checkpoint(learner: Checkpointable, state: dict[str, Any], where: Any = "the checkpoint") -> None:
    """Load a state that `read_checkpoint` returned into `learner`.

    Raises:
        CheckpointError: The state does not fit the learner (another model or data).
    """
    try:
        learner.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{where} was saved from a different model or data: {error}") from None


def load_checkpoint(learner: Checkpointable, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint into `learner` and return it (its `progress` says where the fit stood).

    Raises:
        CheckpointError: For a missing, unreadable or mismatching file.

    Example:
        >>> state = load_checkpoint(learn, "run/checkpoint.pt")  # doctest: +SKIP
        >>> state["progress"]["epoch"]  # doctest: +SKIP
        2
    """
    state = read_checkpoint(path)
    apply_checkpoint(learner, state, path)
    return state


# ---------------------------------------------------------------------------- weights files


def save_weights(learner: Checkpointable, path: str | Path) -> Path:
    """The model section of `learner.state_dict()` as safetensors at `path`, atomically (rank 0 writes)."""
    if distributed.is_main_process():
        weights = learner.state_dict(keys=["model"])["model"]
        with atomic_path(path) as tmp:
            save_safetensors({name: tensor.cpu().contiguous() for name, tensor in weights.items()}, tmp)
    distributed.barrier()
    return Path(path)


def load_weights(learner: Checkpointable, path: str | Path, *, strict: bool = True) -> None:
    """Load a safetensors weights file written by `save_weights` into `learner`.

    With `strict=False` (torch's and fastai's), names that only the file or only the model holds are
    skipped, and those parameters keep their current values; a tensor of another shape still fails.

    Raises:
        CheckpointError: The file's tensors do not fit the learner's model (other names or shapes, as
            weights saved from another architecture or another number of classes); the message names them.
            The model is left as it was.

    Example:
        >>> load_weights(learn, "models/stage-1.safetensors")  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    saved = load_file(str(path), device=str(learner.device))
    current = learner.state_dict(keys=["model"])["model"]
    if not strict:
        saved = {**current, **{name: tensor for name, tensor in saved.items() if name in current}}
    differences = weights_differences(saved, current)
    if differences:
        raise CheckpointError(f"{path} does not fit this learner's model: {differences}. Load it into a learner "
                              "built as the saved one was (the same architecture, and data with the same classes).")
    learner.load_state_dict({"model": saved})


def weights_differences(saved: dict[str, torch.Tensor], current: dict[str, torch.Tensor], shown: int = 3) -> str:
    """What keeps `saved` from loading into a model whose state is `current`: tensors of other shapes, missing
    or extra names, and the output count when the last weight differs; "" when they fit.

    Example:
        >>> weights_differences({"w": torch.zeros(3, 4)}, {"w": torch.zeros(2, 4)})[-53:]
        'the file holds a model with 3 outputs, this one has 2'
    """
    reshaped = [name for name in current if name in saved and saved[name].shape != current[name].shape]
    missing = [name for name in current if name not in saved]
    extra = [name for name in saved if name not in current]
    parts = []
    if reshaped:
        parts.append("tensors of other shapes: " + "; ".join(
            f"{name} (saved {list(saved[name].shape)}, this model {list(current[name].shape)})"
            for name in reshaped[-shown:]) + (f"; and {len(reshaped) - shown} more" if len(reshaped) > shown else ""))
    for names, what in ((missing, "missing from the file"), (extra, "in the file only")):
        if names:
            listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
            parts.append(f"{len(names)} tensor(s) {what} ({listed})")
    last = [name for name in current if current[name].ndim == 2]  # the last linear layer's weight: the outputs
    if last and last[-1] in reshaped and saved[last[-1]].shape[1:] == current[last[-1]].shape[1:]:
        parts.append(f"the file holds a model with {saved[last[-1]].shape[0]} outputs, this one has "
                     f"{current[last[-1]].shape[0]}")
    return "; ".join(parts)
