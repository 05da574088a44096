"""torchrun / DDP support: process-group setup, rank queries and reductions.

Everything here is a no-op in a single process, so the learner calls it unconditionally. Under
`torchrun` the learner initialises the process group from the environment (NCCL on CUDA, gloo on the
CPU), shards the loaders (training like DistributedSampler, validation in contiguous unpadded
slices), wraps the model in DistributedDataParallel and gathers validation outputs in order.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "barrier",
    "broadcast_object",
    "gather_ordered",
    "init_from_env",
    "is_distributed",
    "is_main_process",
    "local_rank",
    "mean",
    "rank",
    "sync_buffers",
    "world_size",
    "wrap",
]


def init_from_env() -> bool:
    """Join the process group that `torchrun` describes in the environment, once.

    Returns:
        True when running with more than one process.

    Example:
        >>> init_from_env()  # False outside torchrun
        False
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return is_distributed()
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    # A process group left alive at interpreter exit can abort the process (gloo's threads call
    # std::terminate), turning a finished run into a failed one; close it first.
    atexit.register(_destroy)
    return is_distributed()


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    """This process's rank on its node, which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    """The number of processes (1 without torchrun)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 prints, plots and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (e.g. the LR finder's suggestion)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap `model` in DistributedDataParallel, registering only the parameters that train now.

    DDP records which parameters require gradients when it is built, so the learner rebuilds the
    wrapper whenever freezing changes: a frozen body then never triggers unused-parameter errors and
    costs no gradient all-reduce.
    """
    if not is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    device_ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over ranks (the tensor itself in one process)."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def sync_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BN running statistics) over ranks; copy the rest from rank 0.

    Each rank updates its running statistics on its own images, so before validation (which every
    rank runs on its own shard) the ranks must agree on one model.
    """
    if not is_distributed():
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer.data)
            buffer.data /= world_size()
        else:
            dist.broadcast(buffer.data, src=0)


def gather_ordered(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's tensor in rank order; shards may have different lengths.

    Validation shards are contiguous blocks of the dataset, so the concatenation is in dataset order
    and holds every item exactly once.
    """
    if not is_distributed():
        return tensor
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)])
