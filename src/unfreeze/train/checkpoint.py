"""What a learner writes to disk besides exports: resumable checkpoints and weights files.

A checkpoint is `Learner.state_dict()` plus the callbacks' states; a weights file is the state's
model section as safetensors (`save_weights`, and fastai's `learn.save(name)` under `models/`).

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
from unfreeze._io import atomic_path, save_torch

if TYPE_CHECKING:
    from unfreeze.train.callbacks import Callback
    from unfreeze.train.learner import Learner

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "apply_checkpoint", "callback_key", "load_checkpoint", "load_named",
           "load_weights", "model_file", "read_checkpoint", "save_checkpoint", "save_named", "save_weights"]

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


def save_checkpoint(learner: Learner, path: str | Path, callbacks: Sequence[Callback] = ()) -> Path:
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


def apply_checkpoint(learner: Learner, state: dict[str, Any], where: Any = "the checkpoint") -> None:
    """Load a state that `read_checkpoint` returned into `learner`.

    Raises:
        CheckpointError: The state does not fit the learner (another model or data).
    """
    try:
        learner.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{where} was saved from a different model or data: {error}") from None


def load_checkpoint(learner: Learner, path: str | Path) -> dict[str, Any]:
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


def save_weights(learner: Learner, path: str | Path) -> Path:
    """The model section of `learner.state_dict()` as safetensors at `path`, atomically (rank 0 writes)."""
    from safetensors.torch import save_file

    if distributed.is_main_process():
        weights = learner.state_dict(keys=["model"])["model"]
        with atomic_path(path) as tmp:
            save_file({name: tensor.cpu().contiguous() for name, tensor in weights.items()}, str(tmp))
    distributed.barrier()
    return Path(path)


def load_weights(learner: Learner, path: str | Path) -> None:
    """Load a safetensors weights file written by `save_weights` into `learner`."""
    from safetensors.torch import load_file

    learner.load_state_dict({"model": load_file(str(path), device=str(learner.device))})


def model_file(learner: Learner, name: str | Path) -> Path:
    """Where `learn.save(name)` writes: `learner.path / learner.model_dir / "<name>.safetensors"`."""
    file = learner.path / learner.model_dir / name
    return file if file.suffix == ".safetensors" else file.with_name(f"{file.name}.safetensors")


def _optimizer_file(weights: Path) -> Path:
    """The optimizer side file of `save(name, with_opt=True)`: "<name>.opt.pt" next to the weights."""
    return weights.with_suffix(".opt.pt")


def save_named(learner: Learner, name: str | Path, with_opt: bool = False) -> Path:
    """fastai's `learn.save(name)`: weights to `model_file(name)`, the optimizer state beside them if asked.

    Without `with_opt`, an older optimizer file of that name is removed, so that `load_named` cannot
    pair the new weights with stale moments.
    """
    weights = save_weights(learner, model_file(learner, name))
    optimizer_file = _optimizer_file(weights)
    if distributed.is_main_process():
        if with_opt:
            with atomic_path(optimizer_file) as tmp:
                save_torch(learner.state_dict(keys=["optimizer"]), tmp)
        elif optimizer_file.exists():
            optimizer_file.unlink()
    distributed.barrier()
    return weights


def load_named(learner: Learner, name: str | Path, with_opt: bool | None = None) -> None:
    """fastai's `learn.load(name)`: the weights `save_named` wrote, and the optimizer state if saved.

    Raises:
        FileNotFoundError: No such saved model (the message lists the saved names), or `with_opt=True`
            without a saved optimizer state.
    """
    weights = model_file(learner, name)
    if not weights.is_file():
        folder = weights.parent
        saved = sorted(file.name.removesuffix(".safetensors") for file in folder.glob("*.safetensors"))
        raise FileNotFoundError(f"No saved model {weights}. Saved names in {folder}: {saved or 'none'}. "
                                "Use a name given to learn.save(name), or set learn.path to where it was saved.")
    optimizer_file = _optimizer_file(weights)
    if with_opt and not optimizer_file.is_file():
        raise FileNotFoundError(f"No optimizer state at {optimizer_file}: save with learn.save({str(name)!r}, "
                                "with_opt=True), or load with with_opt=False.")
    load_weights(learner, weights)
    if with_opt is not False and optimizer_file.is_file():
        learner.load_state_dict(torch.load(optimizer_file, map_location=learner.device, weights_only=True))
