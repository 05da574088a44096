"""The decoded-image cache: uint8 CHW images by item index, within a byte budget."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from unfreeze.data.sources import DataWarning

__all__ = ["DecodedCache", "default_cache_bytes"]


def available_memory() -> int | None:
    """Bytes this process could still allocate: Linux's MemAvailable (free plus reclaimable page
    cache), capped by the container's cgroup limit; None where neither can be read."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError):
        pass
    try:  # cgroup v2: a container's limit can be far below the host's memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            room = max(0, int(limit) - used)
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def default_cache_bytes() -> int:
    """The decoded-image cache's default budget: a quarter of the available memory, at least 256 MiB
    (2 GiB where the available memory cannot be read)."""
    available = available_memory()
    return 2**31 if available is None else max(2**28, available // 4)


class DecodedCache:
    """uint8 CHW images by item index, kept while their total size fits `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.used_bytes = max_bytes, 0
        self.images: dict[int, torch.Tensor] = {}
        self.full = False  # set, with one warning, the first time an image did not fit

    def __contains__(self, index: int) -> bool:
        return index in self.images

    def __len__(self) -> int:
        return len(self.images)

    def put(self, index: int, image: torch.Tensor) -> None:
        if index in self.images:
            return
        if self.used_bytes + image.numel() <= self.max_bytes:
            self.images[index] = image
            self.used_bytes += image.numel()
        elif not self.full:
            self.full = True
            warnings.warn(
                f"The decoded-image cache is full ({self.used_bytes / 2**20:.0f} MiB, cache_bytes={self.max_bytes}): "
                "images beyond it are decoded again every epoch (and, on a GPU, the data cannot be kept there). "
                "Pass a larger cache_bytes to ImageDataLoaders if memory allows.",
                DataWarning, stacklevel=2,
            )
