"""Where tensors run: the default device, and cuDNN autotuning during training.

Both are process-wide questions, not a learner's: `default_device` is what a learner, `load_learner`
and the CLI fall back to, and cuDNN's `benchmark` flag is one global switch that training turns on
and evaluation leaves as the user set it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

from unfreeze import distributed

__all__ = ["cudnn_autotune", "default_device"]

# cudnn.benchmark as the user set it, while the outermost autotune block runs (None outside one). A
# ContextVar, not a field on a learner: a validation nested inside a fit must see the user's value,
# not the one the fit switched on, whichever object opened the outer block.
_USER_BENCHMARK: ContextVar[bool | None] = ContextVar("unfreeze_cudnn_user_benchmark", default=None)


def default_device() -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU.

    Example:
        >>> default_device().type in ("cuda", "mps", "cpu")
        True
    """
    if torch.cuda.is_available():
        # Under torchrun each process drives the GPU of its local rank.
        return torch.device("cuda", distributed.local_rank()) if distributed.is_distributed() else torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def cudnn_autotune(device: torch.device, training: bool = True) -> Iterator[None]:
    """Let cuDNN time its algorithms during training on CUDA; the global setting is always restored.

    Training batches repeat one shape every step, so timing the algorithms once per shape pays
    (benchmarks/results/gpu.md). Evaluation shapes recur far less often, so evaluation keeps the
    user's own setting, also inside a fit. Skipped when the user asked for deterministic algorithms.

    Example:
        >>> with cudnn_autotune(torch.device("cpu")):
        ...     pass
    """
    previous = torch.backends.cudnn.benchmark
    token = _USER_BENCHMARK.set(previous) if _USER_BENCHMARK.get() is None else None
    user = bool(_USER_BENCHMARK.get())
    deterministic = torch.backends.cudnn.deterministic or torch.are_deterministic_algorithms_enabled()
    autotune = training and device.type == "cuda" and not deterministic
    torch.backends.cudnn.benchmark = user or autotune
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
        if token is not None:
            _USER_BENCHMARK.reset(token)
