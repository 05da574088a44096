"""The decoded-image cache: uint8 CHW images by item index, within a byte budget."""

from __future__ import annotations

import os
import warnings

import torch

from unfreeze.data.sources import DataWarning

__all__ = ["DecodedCache", "default_cache_bytes"]


def default_cache_bytes() -> int:
    """The decoded-image cache's default budget: a quarter of the memory free now, at least 256 MiB."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name (macOS)
        return 2**31
    return max(2**28, free // 4)


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
                "images beyond it are decoded again every epoch, and the data cannot move to the GPU. "
                "Pass a larger cache_bytes to ImageDataLoaders if memory allows.",
                DataWarning, stacklevel=2,
            )
