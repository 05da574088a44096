"""torchrun / DDP helpers: rank queries and reductions that are no-ops in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["gather_ordered", "is_distributed", "is_main_process", "rank", "world_size"]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 without torchrun)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 prints, plots and writes files."""
    return rank() == 0


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
