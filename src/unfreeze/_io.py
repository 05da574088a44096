"""Small file-system helpers shared by exports, checkpoints and run directories."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = ["atomic_path", "cpu_state_dict"]


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only if the block succeeds.

    The temporary file lives in the same folder, so the final `os.replace` is atomic: an interrupted
    write never leaves a half-written file at `target`, and an existing file stays intact.

    Example:
        >>> with atomic_path("model.unfreeze") as tmp:  # doctest: +SKIP
        ...     tmp.write_bytes(data)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of `module`'s state for writing to disk.

    `clone()` gives every tensor its own storage: safetensors refuses tensors that share storage, and
    a file must never alias the live model.
    """
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in module.state_dict().items()}
